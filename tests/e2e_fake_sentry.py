"""A stand-in for Sentry 9.1.2's web tier, on 127.0.0.1, for the offline tests of tools/e2e_http.py.

It answers with the recorded responses in tests/fixtures/e2e/ (see the README there for
where each shape comes from) and checks each request the way Sentry 9.1.2 does, so a
client that sends the wrong thing fails here as it would on a cluster:

- the login POST must carry the `sc` cookie and the same token in `csrfmiddlewaretoken`
  (Django's CsrfViewMiddleware, else 403), `op=login`, the right credentials and the
  session cookie the page set as a test cookie (else the page again, status 200);
  success is a 302 to /auth/login/ with a new session cookie;
- the API wants that session cookie (else 401), and on POST an X-CSRFToken header equal
  to the `sc` cookie (REST framework's SessionAuthentication, else 403);
- the store API wants an X-Sentry-Auth header with the project's key and secret
  (parsed as sentry/utils/auth.py does: after "Sentry ", comma-separated key=value);
- a stored event shows up in the events list only after `event_delay_polls` more
  polls, the way the worker processes it some time after the store API answered.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "e2e"
CSRF_TOKEN = "hT4qPz8WnK2vLc6RyB0dXm5GjF9sUe3A"  # the token in login.html
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "p&ss=w0rd +%x"  # characters that break a body that is not urlencoded


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def parse_sentry_auth(header: str) -> dict[str, str]:
    """The header's key=value pairs, split as Sentry 9.1.2 splits them."""
    if header[:7].lower() != "sentry ":
        return {}
    pairs = [part.strip().split("=", 1) for part in header.split(" ", 1)[1].split(",")]
    return {p[0]: p[1] for p in pairs if len(p) == 2}


@dataclass
class FakeSentry:
    """State and switches of one server; the tests read what it received."""

    base_url: str = ""
    event_delay_polls: int = 2
    keys_fixture: str = "project_keys.json"
    # Zero-downtime tests: answer these request numbers (1-based, any path) badly.
    fail_requests: dict[int, str] = field(default_factory=dict)  # number -> "503" or "drop"
    stop_file: Path | None = None
    stop_after_requests: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    test_sessions: set[str] = field(default_factory=set)
    projects: list[dict[str, Any]] = field(default_factory=lambda: fixture_json("organization_projects.json"))
    stored: list[dict[str, Any]] = field(default_factory=list)
    store_auth: list[dict[str, str]] = field(default_factory=list)
    events_polls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    # -- plumbing -----------------------------------------------------------

    def _cookies(self) -> dict[str, str]:
        jar = SimpleCookie(self.headers.get("Cookie", ""))
        return {k: m.value for k, m in jar.items()}

    def _send(self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _count(self) -> str | None:
        """Record the request; return the failure to inject for it, if any."""
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, self.path))
            number = len(state.requests)
            if state.stop_file and state.stop_after_requests and number >= state.stop_after_requests:
                state.stop_file.touch()
            return state.fail_requests.get(number)

    # -- verbs ----------------------------------------------------------------

    def do_GET(self) -> None:
        failure = self._count()
        if failure == "drop":
            # No status line: the server closes the connection after this handler, and the
            # client sees a dropped connection, as when a pod goes away mid-request.
            self.close_connection = True
            return
        if failure:
            self._send(int(failure), b"<h1>Service Unavailable</h1>", "text/html")
            return
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_health/":
            self._send(200, b"ok", "text/plain")
        elif path == "/auth/login/sentry/":
            self._login_page()
        elif path.startswith("/api/0/"):
            self._api_get(path[len("/api/0") :])
        else:
            self._send(404, b"not found", "text/html")

    def do_POST(self) -> None:
        self._count()
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if path == "/auth/login/sentry/":
            self._login_post(body)
        elif path.startswith("/api/0/"):
            self._api_post(path[len("/api/0") :], body)
        elif path.startswith("/api/") and path.endswith("/store/"):
            self._store(path, body)
        else:
            self._send(404, b"not found", "text/html")

    # -- the login form ---------------------------------------------------------

    def _login_page(self, status: int = 200) -> None:
        # Django sets the CSRF cookie with the page; AuthOrganizationLoginView also calls
        # session.set_test_cookie(), so a signed-out browser gets a session cookie too, and
        # AuthenticationForm.check_for_test_cookie() refuses a login POST without it.
        test_session = secrets.token_hex(16)
        self.server.state.test_sessions.add(test_session)
        self._send(
            status,
            fixture_text("login.html").encode(),
            "text/html; charset=utf-8",
            [
                ("Set-Cookie", f"sc={CSRF_TOKEN}; expires=Mon, 29-Nov-2027 07:52:00 GMT; Max-Age=31449600; Path=/"),
                ("Set-Cookie", f"sentrysid={test_session}; httponly; Path=/"),
            ],
        )

    def _login_post(self, body: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
        cookie = self._cookies().get("sc")
        if not cookie or form.get("csrfmiddlewaretoken") != cookie:
            self._send(403, b"<h1>CSRF Verification Failed</h1>", "text/html")
            return
        if form.get("op") != "login" or (form.get("username"), form.get("password")) != (ADMIN_EMAIL, ADMIN_PASSWORD):
            self._login_page(200)  # the form again, with its error
            return
        if self._cookies().get("sentrysid") not in self.server.state.test_sessions:
            self._login_page(200)  # "Your Web browser doesn't appear to have cookies enabled."
            return
        session = secrets.token_hex(16)
        self.server.state.sessions.add(session)
        self._send(
            302,
            b"",
            "text/html; charset=utf-8",
            # auth.get_login_redirect() falls back to the login URL; Django 1.6 makes it absolute.
            [
                ("Location", self.server.state.base_url + "/auth/login/"),
                ("Set-Cookie", f"sentrysid={session}; httponly; Path=/"),
            ],
        )

    # -- the API ----------------------------------------------------------------

    def _authenticated(self) -> bool:
        if self._cookies().get("sentrysid") in self.server.state.sessions:
            return True
        self._json(401, {"detail": "Authentication credentials were not provided."})
        return False

    def _api_get(self, path: str) -> None:
        if not self._authenticated():
            return
        state = self.server.state
        if path == "/organizations/":
            self._json(200, fixture_json("organizations.json"))
        elif path == "/organizations/sentry/projects/":
            self._json(200, state.projects)
        elif path == "/organizations/sentry/teams/":
            self._json(200, fixture_json("organization_teams.json"))
        elif path == "/projects/sentry/e2e/keys/" and any(p["slug"] == "e2e" for p in state.projects):
            self._json(200, fixture_json(state.keys_fixture))
        elif path == "/projects/sentry/e2e/events/":
            with state.lock:
                state.events_polls += 1
                # Events stored by then, once the worker "processed" them.
                visible = state.stored if state.events_polls > state.event_delay_polls else []
            self._json(200, [self._as_listed(e) for e in reversed(visible)])
        else:
            self._json(404, {"detail": "The requested resource does not exist"})

    def _api_post(self, path: str, body: bytes) -> None:
        if not self._authenticated():
            return
        if self.headers.get("X-CSRFToken") != self._cookies().get("sc"):
            self._json(403, {"detail": "CSRF Failed: CSRF token missing or incorrect."})
            return
        if path == "/teams/sentry/sentry/projects/":
            data = json.loads(body)
            if not data.get("name"):
                self._json(400, {"name": ["This field is required."]})
                return
            project = fixture_json("team_project_created.json")
            project.update(name=data["name"], slug=data.get("slug") or data["name"])
            self.server.state.projects.append(project)
            self._json(201, project)
        else:
            self._json(404, {"detail": "The requested resource does not exist"})

    # -- the store API ------------------------------------------------------------

    def _store(self, path: str, body: bytes) -> None:
        key = fixture_json(self.server.state.keys_fixture)[0]
        auth = parse_sentry_auth(self.headers.get("X-Sentry-Auth", ""))
        self.server.state.store_auth.append(auth)
        if path != f"/api/{key['projectId']}/store/":
            self._json(400, {"error": "Invalid project_id"})
        elif auth.get("sentry_key") != key["public"] or auth.get("sentry_secret", key["secret"]) != key["secret"]:
            self._send(401, b'{"error":"Invalid api key"}', "application/json", [("X-Sentry-Error", "Invalid api key")])
        else:
            event = json.loads(body)
            self.server.state.stored.append(event)
            self._json(200, {"id": event["event_id"]})

    @staticmethod
    def _as_listed(event: dict[str, Any]) -> dict[str, Any]:
        """A stored event as EventSerializer lists it: the recorded entry, with this event's values."""
        listed = copy.deepcopy(fixture_json("project_events.json")[0])
        listed.update(eventID=event["event_id"], message=event["message"], title=event["message"])
        listed["metadata"]["title"] = event["message"]
        return listed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeSentry


@contextmanager
def fake_sentry(state: FakeSentry | None = None) -> Iterator[FakeSentry]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state or FakeSentry()
    server.state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()

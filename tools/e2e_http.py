"""The HTTP steps of `make e2e` (tools/e2e.sh), against a running Sentry 9.1.2.

Standard library only, so that it runs with any python3 >= 3.8, without the project's
venv. tools/e2e.sh calls the subcommands at the bottom; tests/test_e2e_offline.py runs
the same code against recorded Sentry 9.1.2 responses (tests/fixtures/e2e/).

What the steps rely on in Sentry 9.1.2 (read in its source, tag 9.1.2):
- The login page /auth/login/<org>/ (AuthOrganizationLoginView, template
  sentry/organization-login.html) holds several forms; the password login is the one
  with a hidden `op=login`, fields `username` and `password`, and Django 1.6's
  `csrfmiddlewaretoken`. The same token is in the cookie `sc` (CSRF_COOKIE_NAME), the
  session is a signed cookie `sentrysid`. A good login answers with a redirect (to
  /auth/login/ itself, which forwards a signed-in user), a bad one renders the page again
  with status 200.
- The API under /api/0/ accepts the session cookie; for POST it also wants the CSRF
  token in the X-CSRFToken header (Django REST framework's SessionAuthentication).
- The store endpoint /api/<project_id>/store/ takes a JSON event and the key in the
  X-Sentry-Auth header (`Sentry sentry_version=7, sentry_key=..., ...`) and answers
  {"id": "<event id>"}; the worker processes the event later, through Redis, and only
  then does it appear in /api/0/projects/<org>/<project>/events/.

The admin password never goes through argv: the subcommands read it from the
environment variable E2E_ADMIN_PASSWORD, and nothing here prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

LOGIN_PATH = "/auth/login/sentry/"  # `sentry` is the default organization's slug
HEALTH_PATH = "/_health/"
CSRF_COOKIE = "sc"  # sentry/conf/server.py: CSRF_COOKIE_NAME
CSRF_FIELD = "csrfmiddlewaretoken"
PASSWORD_ENV = "E2E_ADMIN_PASSWORD"
CLIENT = "sentry-k8s-e2e/1.0"
# datetime.UTC is Python 3.11+; this module runs with whatever python3 the machine has.
UTC = dt.timezone.utc  # noqa: UP017


class E2EError(Exception):
    """A step failed; the message says what was expected and what came back."""


# ---------------------------------------------------------------------------
# Pure steps: parse and build what goes over the wire. Unit-tested offline.
# ---------------------------------------------------------------------------


class _FormParser(HTMLParser):
    """Collects every <form> of a page with the name/value of its <input> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, str]] = []
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self._current = {}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None:
            values = dict(attrs)
            if values.get("name"):
                self._current[values["name"] or ""] = values.get("value") or ""

    # Django renders <input ... />; HTMLParser reports those here instead.
    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def login_form_fields(html: str) -> dict[str, str]:
    """The hidden fields of the password-login form (op=login) on Sentry's login page.

    Picking the form by `op=login` matters: the page also has a register form and, with
    sign-up open, both carry a token; only the login form's fields make a login.
    """
    parser = _FormParser()
    parser.feed(html)
    for form in parser.forms:
        if form.get("op") == "login":
            if not form.get(CSRF_FIELD):
                raise E2EError(f"the login form has no {CSRF_FIELD}")
            if "username" not in form or "password" not in form:
                raise E2EError("the login form has no username/password fields")
            return {name: form[name] for name in ("op", CSRF_FIELD)}
    raise E2EError(f"no login form (op=login) in the page ({len(parser.forms)} forms found)")


def login_body(fields: dict[str, str], username: str, password: str) -> bytes:
    """The urlencoded POST body of a login: the form's hidden fields plus the credentials."""
    return urllib.parse.urlencode({**fields, "username": username, "password": password}).encode()


@dataclass(frozen=True)
class Dsn:
    """A Sentry 9.1 DSN: scheme://public[:secret]@host[/prefix]/project_id."""

    scheme: str
    public_key: str
    secret_key: str
    host: str
    path_prefix: str
    project_id: str

    @property
    def store_path(self) -> str:
        return f"{self.path_prefix}/api/{self.project_id}/store/"


def parse_dsn(dsn: str) -> Dsn:
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname:
        raise E2EError(f"not a DSN: {_redact_dsn(dsn)!r}")
    prefix, _, project_id = parts.path.rstrip("/").rpartition("/")
    if not project_id.isdigit():
        raise E2EError(f"the DSN names no project id: {_redact_dsn(dsn)!r}")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return Dsn(parts.scheme, parts.username, parts.password or "", host, prefix, project_id)


def _redact_dsn(dsn: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@", 1)
    return dsn


def dsn_of_key(key: dict[str, Any]) -> Dsn:
    """The DSN of one entry of /api/0/projects/<org>/<project>/keys/.

    Sentry 9.1 builds `dsn.secret` from system.url-prefix and leaves it empty while that
    option is unset (ProjectKey.get_dsn), which is this stack's default. The key's own
    fields are always there, so they are the source; a DSN that is present must agree.
    """
    fields = Dsn("http", str(key["public"]), str(key["secret"]), "", "", str(key["projectId"]))
    dsn = (key.get("dsn") or {}).get("secret") or ""
    if not dsn:
        return fields
    parsed = parse_dsn(dsn)
    if (parsed.public_key, parsed.secret_key, parsed.project_id) != (
        fields.public_key,
        fields.secret_key,
        fields.project_id,
    ):
        raise E2EError(f"the key's DSN {_redact_dsn(dsn)!r} disagrees with its public/secret/projectId fields")
    return parsed


def sentry_auth_header(dsn: Dsn, timestamp: float, client: str = CLIENT) -> str:
    """The X-Sentry-Auth header of protocol version 7 (what raven clients of 2019 sent)."""
    pairs = [
        ("sentry_version", "7"),
        ("sentry_client", client),
        ("sentry_timestamp", str(int(timestamp))),
        ("sentry_key", dsn.public_key),
    ]
    if dsn.secret_key:
        pairs.append(("sentry_secret", dsn.secret_key))
    return "Sentry " + ", ".join(f"{k}={v}" for k, v in pairs)


def new_event_id() -> str:
    """Sentry's event ids are 32 lower-case hex digits, without dashes."""
    return uuid.uuid4().hex


def event_payload(event_id: str, message: str, timestamp: dt.datetime) -> dict[str, Any]:
    """A minimal event in the JSON form the store API takes (no SDK needed)."""
    return {
        "event_id": event_id,
        "message": message,
        # Naive UTC without fractions: the form Sentry 9.1's own clients sent.
        "timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "level": "error",
        "platform": "python",
        "logger": "sentry-k8s.e2e",
        "tags": {"source": "make-e2e"},
    }


def find_event(events: Any, event_id: str) -> dict[str, Any] | None:
    """The event with this id in an events-list response, or None."""
    if not isinstance(events, list):
        raise E2EError(f"the events list is not a list: {str(events)[:200]}")
    for event in events:
        if isinstance(event, dict) and event.get("eventID") == event_id:
            return event
    return None


# ---------------------------------------------------------------------------
# The client: one logged-in browser session.
# ---------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check (a good login is a 302), not to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as exc:
            raise E2EError(f"expected JSON, got status {self.status}: {self.body[:200]!r}") from exc


class SentryClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """One request; HTTP error statuses come back as a Response, network errors raise."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        req.add_header("User-Agent", CLIENT)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, dict(err.headers.items()), err.read())

    def api(self, method: str, path: str, data: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        headers = {"Accept": "application/json"}
        body = None
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        if method not in ("GET", "HEAD"):
            # Django's CSRF check for session-authenticated writes: the header must
            # carry the same token as the `sc` cookie.
            headers["X-CSRFToken"] = self.cookie(CSRF_COOKIE) or ""
        resp = self.request(method, "/api/0" + path, body, headers)
        if resp.status not in expect:
            raise E2EError(f"{method} /api/0{path}: status {resp.status}, {resp.body[:300]!r}")
        return resp.json()

    def login(self, username: str, password: str, login_path: str = LOGIN_PATH) -> list[dict[str, Any]]:
        """Log in through the form like a browser; return the organizations the API then lists."""
        page = self.request("GET", login_path)
        if page.status != 200:
            raise E2EError(f"GET {login_path}: status {page.status}")
        fields = login_form_fields(page.body.decode("utf-8", "replace"))
        if self.cookie(CSRF_COOKIE) != fields[CSRF_FIELD]:
            raise E2EError(f"the form's CSRF token is not the one in the `{CSRF_COOKIE}` cookie")
        resp = self.request(
            "POST",
            login_path,
            login_body(fields, username, password),
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": self.base_url + login_path},
        )
        # Success is a redirect, and in 9.1.2 usually back to /auth/login/ (get_login_redirect
        # defaults to the login URL, which then sends a signed-in user on), so the target says
        # nothing; a wrong password renders the form again with 200. The API call below is
        # what proves the session.
        if resp.status != 302:
            raise E2EError(f"login as {username} failed: status {resp.status} (the form again: wrong credentials?)")
        orgs = self.api("GET", "/organizations/")
        if not isinstance(orgs, list) or not orgs:
            raise E2EError(f"logged in, but /api/0/organizations/ lists no organization: {orgs!r}")
        return orgs

    def find_or_create_project(self, org: str, slug: str) -> dict[str, Any]:
        projects = self.api("GET", f"/organizations/{org}/projects/")
        for project in projects:
            if project.get("slug") == slug:
                return project
        teams = self.api("GET", f"/organizations/{org}/teams/")
        if not teams:
            raise E2EError(f"organization {org} has no team to create project {slug} in")
        team = teams[0]["slug"]
        return self.api("POST", f"/teams/{org}/{team}/projects/", {"name": slug, "slug": slug}, expect=(201,))

    def dsn(self, org: str, project: str) -> Dsn:
        keys = [k for k in self.api("GET", f"/projects/{org}/{project}/keys/") if k.get("isActive", True)]
        if not keys:
            raise E2EError(f"project {org}/{project} has no active client key")
        return dsn_of_key(keys[0])

    def store_event(self, dsn: Dsn, payload: dict[str, Any]) -> str:
        """Send an event to the store API of *this* base URL (the DSN's host may be unset or
        unreachable from here; its key and project id are what count)."""
        resp = self.request(
            "POST",
            f"/api/{dsn.project_id}/store/",
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "X-Sentry-Auth": sentry_auth_header(dsn, time.time())},
        )
        if resp.status != 200:
            error = resp.headers.get("X-Sentry-Error", "")
            raise E2EError(f"store API: status {resp.status} {error} {resp.body[:200]!r}")
        stored = resp.json().get("id")
        if stored != payload["event_id"]:
            raise E2EError(f"store API accepted id {stored!r}, sent {payload['event_id']!r}")
        return stored

    def wait_for_event(
        self, org: str, project: str, event_id: str, timeout: float, interval: float = 3.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = find_event(self.api("GET", f"/projects/{org}/{project}/events/"), event_id)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                raise E2EError(f"event {event_id} not in {org}/{project}'s events after {timeout:.0f}s")
            time.sleep(interval)


# ---------------------------------------------------------------------------
# Zero downtime: a bounded loop of plain requests, each on a new connection.
# ---------------------------------------------------------------------------


def watch(
    base_url: str, stop_file: Path, max_seconds: float, paths: tuple[str, ...] = (HEALTH_PATH, LOGIN_PATH)
) -> dict[str, Any]:
    """Request each path in turn until `stop_file` exists (or max_seconds pass).

    Every answer but 200 counts as an error, and so does a refused or reset connection or
    a timeout: a rollout that drops a request is exactly what this is meant to catch.
    """
    counts = {path: {"requests": 0, "errors": 0} for path in paths}
    errors: list[str] = []
    client = SentryClient(base_url, timeout=10)
    deadline = time.monotonic() + max_seconds
    while not stop_file.exists() and time.monotonic() < deadline:
        for path in paths:
            counts[path]["requests"] += 1
            try:
                status = client.request("GET", path).status
                problem = None if status == 200 else f"status {status}"
            except OSError as exc:  # URLError, ConnectionError, timeouts
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if problem:
                counts[path]["errors"] += 1
                if len(errors) < 20:
                    errors.append(f"{dt.datetime.now(UTC):%H:%M:%S} {path}: {problem}")
        time.sleep(0.2)
    return {
        "requests": sum(c["requests"] for c in counts.values()),
        "errors": sum(c["errors"] for c in counts.values()),
        "by_path": counts,
        "first_errors": errors,
        "stopped_by": "stop file" if stop_file.exists() else "max seconds",
    }


# ---------------------------------------------------------------------------
# Command line, for tools/e2e.sh.
# ---------------------------------------------------------------------------


def _password() -> str:
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise E2EError(f"{PASSWORD_ENV} is not set (the admin password, read from the Secret)")
    return password


def _logged_in(args: argparse.Namespace) -> tuple[SentryClient, list[dict[str, Any]]]:
    client = SentryClient(args.url)
    return client, client.login(args.email, _password(), args.login_path)


def _cmd_login(args: argparse.Namespace) -> str:
    _, orgs = _logged_in(args)
    return "logged in; organizations: " + ", ".join(o["slug"] for o in orgs)


def _cmd_send_event(args: argparse.Namespace) -> str:
    client, orgs = _logged_in(args)
    org = orgs[0]["slug"]
    project = client.find_or_create_project(org, args.project)
    dsn = client.dsn(org, project["slug"])
    event_id = new_event_id()
    payload = event_payload(event_id, f"make e2e test event {event_id}", dt.datetime.now(UTC))
    client.store_event(dsn, payload)
    state = {"org": org, "project": project["slug"], "project_id": dsn.project_id, "event_id": event_id}
    Path(args.state).write_text(json.dumps(state) + "\n", encoding="utf-8")
    return f"stored event {event_id} in {org}/{project['slug']} (project id {dsn.project_id})"


def _cmd_wait_event(args: argparse.Namespace) -> str:
    state = json.loads(Path(args.state).read_text(encoding="utf-8"))
    client, _ = _logged_in(args)
    started = time.monotonic()
    event = client.wait_for_event(state["org"], state["project"], state["event_id"], args.timeout, args.interval)
    return (
        f"event {state['event_id']} listed in {state['org']}/{state['project']} after "
        f"{time.monotonic() - started:.0f}s (group {event.get('groupID')}, message {event.get('message')!r})"
    )


def _cmd_watch(args: argparse.Namespace) -> str:
    report = watch(args.url, Path(args.stop_file), args.max_seconds)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = f"{report['requests']} requests, {report['errors']} errors"
    if report["errors"] or not report["requests"]:
        raise E2EError(summary + "".join(f"\n  {e}" for e in report["first_errors"]))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_text: str, session: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", required=True, help="Sentry's base URL, e.g. from `minikube service --url`")
        if session:
            p.add_argument("--email", required=True, help=f"the admin's email; the password comes from ${PASSWORD_ENV}")
            p.add_argument("--login-path", default=LOGIN_PATH)
        p.set_defaults(func=func)
        return p

    command("login", _cmd_login, "log in through the form, then list organizations through the API")
    p = command("send-event", _cmd_send_event, "find or create a project and send one event to its store API")
    p.add_argument("--project", default="e2e", help="project slug (created when missing)")
    p.add_argument("--state", required=True, help="JSON file to write org, project and event id to")
    p = command("wait-event", _cmd_wait_event, "wait until the events API lists the event in --state")
    p.add_argument("--state", required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--interval", type=float, default=3, help="seconds between two looks at the events list")
    p = command("watch", _cmd_watch, "request /_health/ and the login page until --stop-file exists", session=False)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--report", required=True, help="JSON file for the counts")
    p.add_argument("--max-seconds", type=float, default=1800)

    args = parser.parse_args(argv)
    try:
        print(args.func(args))
    except E2EError as exc:
        print(f"e2e: {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"e2e: {args.command}: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

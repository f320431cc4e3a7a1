"""`make e2e` without a cluster: the script's shell, and its HTTP steps against recorded Sentry 9.1.2 answers.

The HTTP steps (tools/e2e_http.py) run against tests/e2e_fake_sentry.py, which serves the
recorded responses in tests/fixtures/e2e/ and checks the requests as Sentry 9.1.2 does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_DIR
from tests.e2e_fake_sentry import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    CSRF_TOKEN,
    FakeSentry,
    fake_sentry,
    fixture_json,
    fixture_text,
    parse_sentry_auth,
)
from tests.servers import free_port
from tools import e2e_http
from tools.e2e_http import E2EError, SentryClient

E2E_SH = PROJECT_DIR / "tools" / "e2e.sh"
SHELL_SCRIPTS = [E2E_SH, PROJECT_DIR / "tools" / "setup.sh", PROJECT_DIR / "tools" / "setup-test.sh"]
PUBLIC_KEY = "4f2c8a1e9b7d4c3e8a6f1b2d9c7e5a30"
SECRET_KEY = "b81e6d2f4a9c4e7b93d05f8a2c1e6b74"


# -- the shell script -----------------------------------------------------------------


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: `make test` installs it (tools/setup-test.sh, Debian package shellcheck)")
    result = subprocess.run(
        [shellcheck, "--severity=style", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_e2e_script_help_and_bad_option() -> None:
    shown = subprocess.run(["bash", str(E2E_SH), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    for option in ("--keep", "--profile", "--config", "--skip-image"):
        assert option in shown.stdout
    wrong = subprocess.run(["bash", str(E2E_SH), "--bogus"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2
    assert "--bogus" in wrong.stderr


def test_e2e_script_names_every_missing_tool_before_touching_anything(tmp_path: Path) -> None:
    # A PATH with only what bash needs to start: no minikube, kubectl, docker, python3, make.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = subprocess.run(
        ["/bin/bash", str(E2E_SH)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    for tool in ("minikube", "kubectl", "docker", "python3", "make"):
        assert tool in result.stderr
    assert not (tmp_path / ".minikube").exists()


def _stub_tools(tmp_path: Path, start: str = "exit 1") -> tuple[Path, Path]:
    """minikube, kubectl and docker stand-ins that log their arguments; `minikube start` runs `start`."""
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for tool, script in {
        "minikube": f'case "$1" in profile) echo \'{{"invalid":[],"valid":[]}}\' ;; start) {start} ;; esac',
        "kubectl": "exit 0",
        "docker": "exit 0",
    }.items():
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >>"{calls}"\n{script}\n')
        path.chmod(0o755)
    return bin_dir, calls


@pytest.mark.parametrize("keep", [False, True], ids=["teardown", "keep"])
def test_e2e_script_stops_at_a_failed_cluster_start_and_tears_down(tmp_path: Path, keep: bool) -> None:
    bin_dir, calls = _stub_tools(tmp_path)
    result = subprocess.run(
        ["bash", str(E2E_SH), "--profile", "e2e-test", *(["--keep"] if keep else [])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    log = calls.read_text()
    assert "minikube start -p e2e-test --memory=4000mb --cpus=2 --cni=calico" in log
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines() if line.split()[:1]}
    assert rows["cluster"] == "FAIL"
    for check in ("deploy", "login", "event", "zero-downtime", "backup-restore", "network-policies"):
        assert rows[check] == "SKIP", check
    assert ("minikube delete -p e2e-test" in log) is not keep
    assert rows["teardown"] == ("SKIP" if keep else "PASS")
    assert result.stdout.rstrip().endswith("e2e: FAILED")
    assert not list(tmp_path.glob("sentry-e2e.*")), "the work folder is removed"


def test_e2e_script_interrupted_still_tears_down_and_reports(tmp_path: Path) -> None:
    bin_dir, calls = _stub_tools(tmp_path, start="sleep 120")
    script = subprocess.Popen(
        ["bash", str(E2E_SH), "--profile", "e2e-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path)},
    )
    try:
        for _ in range(600):  # until the stub's `minikube start` is running (bounded)
            if calls.exists() and "minikube start" in calls.read_text():
                break
            if script.poll() is not None:
                break
            threading.Event().wait(0.1)
        assert script.poll() is None, "the script ended before minikube start"
        os.killpg(script.pid, signal.SIGINT)
        out, err = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
    assert script.returncode == 1, out + err
    assert "minikube delete -p e2e-test" in calls.read_text()
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()[:1]}
    assert rows["aborted"] == "FAIL"
    assert rows["teardown"] == "PASS"
    assert out.rstrip().endswith("e2e: FAILED")


def _project_copy(tmp_path: Path) -> Path:
    """What `make synth` and tools/e2e.sh use, in a scratch folder: the run rewrites dist/."""
    copy = tmp_path / "project"
    (copy / "tools").mkdir(parents=True)
    for name in ("main.py", "Makefile"):
        shutil.copy(PROJECT_DIR / name, copy / name)
    for name in ("app", "constructs", "imports", "config"):
        shutil.copytree(PROJECT_DIR / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("e2e.sh", "e2e_http.py", "e2e_values.py", "apply.py"):
        shutil.copy(PROJECT_DIR / "tools" / name, copy / "tools" / name)
    (copy / ".venv").symlink_to(PROJECT_DIR / ".venv")
    return copy


@pytest.mark.parametrize("cluster", ["minikube", "kind"])
def test_e2e_script_runs_its_whole_course_against_a_stub_cluster(tmp_path: Path, cluster: str) -> None:
    """Every check, in order, with kubectl and minikube answered by tests/e2e_stub_cluster.py
    and the HTTP steps by the fake Sentry: the script's course, its parsing of the backup and
    restore logs, its network probe (run for real on local ports) and its verdict."""
    stub_dir = tmp_path / "stub"
    bin_dir = tmp_path / "bin"
    stub_dir.mkdir()
    bin_dir.mkdir()
    stub = PROJECT_DIR / "tests" / "e2e_stub_cluster.py"
    for tool in ("minikube", "kind", "kubectl", "docker"):
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{stub}" {tool} "$@"\n')
    # python3 too, to see its command lines (the password must not be in them).
    log = stub_dir / "calls.log"
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "python3 $*" >>"{log}"\nexec "{sys.executable}" "$@"\n')
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    project = _project_copy(tmp_path)
    with fake_sentry(FakeSentry(event_delay_polls=1)) as sentry:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(tmp_path),
            "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
            "E2E_SETTLE_SECONDS": "1",
            "E2E_STUB_DIR": str(stub_dir),
            "E2E_STUB_URL": sentry.base_url,
            "E2E_STUB_PASSWORD": ADMIN_PASSWORD,
            "E2E_STUB_PORTS": f"web={sentry.base_url.rsplit(':', 1)[1]},postgresql={free_port()},redis={free_port()}",
        }
        result = subprocess.run(
            [
                "bash",
                str(project / "tools" / "e2e.sh"),
                "--profile",
                "e2e-test",
                *(["--kind"] if cluster == "kind" else []),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    table = result.stdout[result.stdout.rindex("CHECK ") :]
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in table.splitlines()[2:-1]}
    assert list(rows) == [
        "cluster",
        "image",
        "deploy",
        "login",
        "event",
        "zero-downtime",
        "backup-restore",
        "network-policies",
        "teardown",
    ]
    assert {state for state, *_ in rows.values()} == {"PASS"}, table
    assert re.match(r"[1-9][0-9]* requests, 0 errors", rows["zero-downtime"][1])
    assert rows["network-policies"][1].endswith("postgresql blocked redis blocked web open ")

    state = json.loads((stub_dir / "state.json").read_text())
    # make apply, the documented command, applied dist/ twice: at first, and after the restore.
    assert state["applied_dist"] == 2
    assert not (project / ".state").exists(), "the run's apply record stays with the run"
    # The restore Job that was applied names the dump the backup Job logged.
    assert "value: sentry-20261130T075300Z\n" in state["restore_manifest"]
    assert (stub_dir / "probe-targets.txt").read_text().split() == [
        "postgresql:sentry-postgresql.sentry.svc.cluster.local:5432",
        "redis:sentry-redis.sentry.svc.cluster.local:6379",
        "web:sentry-web.sentry.svc.cluster.local:9000",
    ]
    calls = (stub_dir / "calls.log").read_text()
    context = "e2e-test" if cluster == "minikube" else "kind-e2e-test"
    if cluster == "minikube":
        assert "minikube start -p e2e-test --memory=4000mb --cpus=2 --cni=calico" in calls
        assert "minikube -p e2e-test image build -t sentry-k8s/sentry-auth:9.1.2 images/sentry-auth" in calls
        assert "minikube delete -p e2e-test" in calls
    else:
        assert "kind create cluster --name e2e-test" in calls
        kind_config = yaml.safe_load(state["kind_config"])
        assert kind_config["networking"]["disableDefaultCNI"] is True
        assert kind_config["nodes"][0]["extraPortMappings"][0]["containerPort"] == 30000
        assert f"kubectl --context {context} apply -f https://raw.githubusercontent.com/projectcalico/" in calls
        assert "kind load docker-image sentry-k8s/sentry-auth:9.1.2 --name e2e-test" in calls
        assert "kind delete cluster --name e2e-test" in calls
        assert "minikube" not in calls
    assert f"kubectl --context {context} -n sentry rollout restart deployment/sentry-web deployment/sentry-" in calls
    assert f"kubectl --context {context} -n sentry create job --from=cronjob/sentry-backup" in calls
    assert ADMIN_PASSWORD not in calls
    assert ADMIN_PASSWORD not in output
    # Both the event sent before the backup and the login after the restore reached Sentry.
    assert len(sentry.stored) == 1
    assert len(sentry.sessions) >= 4


# -- pure steps, on the recorded login page and API answers ------------------------------


def test_login_form_fields_come_from_the_login_form() -> None:
    page = fixture_text("login.html")
    assert e2e_http.login_form_fields(page) == {"op": "login", "csrfmiddlewaretoken": CSRF_TOKEN}
    # The register form is rendered even with sign-up closed; with a token of its own, the
    # login form's token must still be the one chosen.
    register_first = page.replace(
        '<input type="hidden" name="op" value="register" />',
        '<input type="hidden" name="op" value="register" />'
        '<input type="hidden" name="csrfmiddlewaretoken" value="x" />',
    )
    assert e2e_http.login_form_fields(register_first)["csrfmiddlewaretoken"] == CSRF_TOKEN
    # And a token only in the register form is no token for the login.
    login_without_token = page.replace(f"value='{CSRF_TOKEN}'", "value=''", 1)
    with pytest.raises(E2EError, match="no csrfmiddlewaretoken"):
        e2e_http.login_form_fields(login_without_token)


@pytest.mark.parametrize(
    "html",
    [
        "<h1>CSRF Verification Failed</h1>",  # 403 page: no form at all
        fixture_text("login.html").replace("value='" + CSRF_TOKEN + "'", "value=''"),  # no token
        fixture_text("login.html").replace('name="password"', 'name="pass"'),  # not Sentry's form
    ],
    ids=["no-form", "no-token", "other-fields"],
)
def test_login_form_fields_refuse_a_page_that_is_not_the_login_form(html: str) -> None:
    with pytest.raises(E2EError):
        e2e_http.login_form_fields(html)


def test_login_body_is_the_form_plus_urlencoded_credentials() -> None:
    body = e2e_http.login_body({"op": "login", "csrfmiddlewaretoken": CSRF_TOKEN}, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert urllib.parse.parse_qs(body.decode(), keep_blank_values=True) == {
        "op": ["login"],
        "csrfmiddlewaretoken": [CSRF_TOKEN],
        "username": [ADMIN_EMAIL],
        "password": [ADMIN_PASSWORD],
    }


def test_parse_dsn_of_a_key_with_url_prefix() -> None:
    key = fixture_json("project_keys_url_prefix.json")[0]
    dsn = e2e_http.parse_dsn(key["dsn"]["secret"])
    assert dsn == e2e_http.Dsn("http", PUBLIC_KEY, SECRET_KEY, "sentry.example.com:30000", "", "2")
    assert dsn.store_path == "/api/2/store/"
    public = e2e_http.parse_dsn(key["dsn"]["public"])
    assert (public.public_key, public.secret_key, public.project_id) == (PUBLIC_KEY, "", "2")
    assert e2e_http.dsn_of_key(key) == dsn


def test_parse_dsn_keeps_a_path_prefix() -> None:
    dsn = e2e_http.parse_dsn(f"https://{PUBLIC_KEY}@example.com/sentry/7")
    assert (dsn.scheme, dsn.host, dsn.path_prefix, dsn.store_path) == (
        "https",
        "example.com",
        "/sentry",
        "/sentry/api/7/store/",
    )


@pytest.mark.parametrize("text", ["", "http://example.com/2", f"http://{PUBLIC_KEY}@example.com/", "ftp://k@h/2"])
def test_parse_dsn_refuses_what_is_not_a_dsn(text: str) -> None:
    with pytest.raises(E2EError):
        e2e_http.parse_dsn(text)


def test_dsn_of_a_key_without_url_prefix_comes_from_its_fields() -> None:
    # This stack's default: system.url-prefix unset, so Sentry serves "" as the DSN.
    key = fixture_json("project_keys.json")[0]
    assert key["dsn"]["secret"] == ""
    dsn = e2e_http.dsn_of_key(key)
    assert (dsn.public_key, dsn.secret_key, dsn.project_id) == (PUBLIC_KEY, SECRET_KEY, "2")


def test_dsn_of_a_key_refuses_a_dsn_that_disagrees_with_the_fields() -> None:
    key = fixture_json("project_keys_url_prefix.json")[0]
    key["projectId"] = 3
    with pytest.raises(E2EError, match="disagrees"):
        e2e_http.dsn_of_key(key)


def test_sentry_auth_header_parses_as_sentry_parses_it() -> None:
    dsn = e2e_http.dsn_of_key(fixture_json("project_keys.json")[0])
    header = e2e_http.sentry_auth_header(dsn, 1764489160.7, client="c/1")
    assert parse_sentry_auth(header) == {
        "sentry_version": "7",
        "sentry_client": "c/1",
        "sentry_timestamp": "1764489160",
        "sentry_key": PUBLIC_KEY,
        "sentry_secret": SECRET_KEY,
    }
    public_only = e2e_http.sentry_auth_header(e2e_http.Dsn("http", PUBLIC_KEY, "", "h", "", "2"), 0)
    assert "sentry_secret" not in parse_sentry_auth(public_only)


def test_event_payload() -> None:
    event_id = e2e_http.new_event_id()
    assert len(event_id) == 32 and int(event_id, 16) >= 0
    when = dt.datetime(2026, 11, 30, 8, 52, 41, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    payload = json.loads(json.dumps(e2e_http.event_payload(event_id, "hello", when)))
    assert payload["event_id"] == event_id
    assert payload["message"] == "hello"
    assert payload["timestamp"] == "2026-11-30T07:52:41"  # converted to UTC
    assert payload["level"] == "error"


def test_find_event_in_the_recorded_events_list() -> None:
    events = fixture_json("project_events.json")
    assert e2e_http.find_event(events, "0c9f3d2e61a84b57a7e1f4c2b8d90e15") is events[0]
    assert e2e_http.find_event(events, "f" * 32) is None
    with pytest.raises(E2EError):
        e2e_http.find_event({"detail": "The requested resource does not exist"}, "f" * 32)


# -- the client, end to end against the fake Sentry ---------------------------------------


def test_login_then_an_authenticated_api_call() -> None:
    with fake_sentry() as sentry:
        orgs = SentryClient(sentry.base_url).login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert [o["slug"] for o in orgs] == ["sentry"]
    assert ("GET", "/api/0/organizations/") in sentry.requests


def test_a_wrong_password_fails_the_login() -> None:
    with fake_sentry() as sentry, pytest.raises(E2EError, match=r"login as admin@example\.com failed: status 200"):
        SentryClient(sentry.base_url).login(ADMIN_EMAIL, "wrong")


def test_an_unauthenticated_api_call_fails() -> None:
    with fake_sentry() as sentry, pytest.raises(E2EError, match="status 401"):
        SentryClient(sentry.base_url).api("GET", "/organizations/")


def test_send_and_wait_for_an_event_through_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(e2e_http.PASSWORD_ENV, ADMIN_PASSWORD)
    state = tmp_path / "event.json"
    with fake_sentry(FakeSentry(event_delay_polls=2)) as sentry:
        common = ["--url", sentry.base_url, "--email", ADMIN_EMAIL]
        assert e2e_http.main(["send-event", *common, "--state", str(state)]) == 0
        # The project did not exist: it was created through the API (a POST with the CSRF header).
        assert ("POST", "/api/0/teams/sentry/sentry/projects/") in sentry.requests
        sent = json.loads(state.read_text())
        assert sent == {"org": "sentry", "project": "e2e", "project_id": "2", "event_id": sent["event_id"]}
        assert [e["event_id"] for e in sentry.stored] == [sent["event_id"]]
        assert sentry.store_auth[0]["sentry_key"] == PUBLIC_KEY
        waiting = ["wait-event", *common, "--state", str(state), "--timeout", "60", "--interval", "0.05"]
        assert e2e_http.main(waiting) == 0
        assert sentry.events_polls == 3  # listed on the first poll after the "worker" ran
        # A second run finds the project instead of creating it again.
        assert e2e_http.main(["send-event", *common, "--state", str(state)]) == 0
        assert sentry.requests.count(("POST", "/api/0/teams/sentry/sentry/projects/")) == 1
    output = capsys.readouterr()
    assert f"event {sent['event_id']} listed in sentry/e2e" in output.out
    assert ADMIN_PASSWORD not in output.out + output.err


def test_send_event_with_a_dsn_from_url_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The DSN names another host; the event still goes to the URL the check was given.
    monkeypatch.setenv(e2e_http.PASSWORD_ENV, ADMIN_PASSWORD)
    with fake_sentry(FakeSentry(keys_fixture="project_keys_url_prefix.json")) as sentry:
        args = ["send-event", "--url", sentry.base_url, "--email", ADMIN_EMAIL, "--state", str(tmp_path / "s.json")]
        assert e2e_http.main(args) == 0
    assert len(sentry.stored) == 1
    assert sentry.store_auth[0]["sentry_secret"] == SECRET_KEY


def test_an_event_that_never_appears_fails_the_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(e2e_http.PASSWORD_ENV, ADMIN_PASSWORD)
    state = tmp_path / "event.json"
    state.write_text(json.dumps({"org": "sentry", "project": "e2e", "project_id": "2", "event_id": "a" * 32}))
    with fake_sentry() as sentry:
        sentry.projects.append(fixture_json("team_project_created.json"))
        args = ["wait-event", "--url", sentry.base_url, "--email", ADMIN_EMAIL, "--state", str(state)]
        assert e2e_http.main([*args, "--timeout", "0"]) == 1


def test_the_password_comes_only_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(e2e_http.PASSWORD_ENV, raising=False)
    with fake_sentry() as sentry:
        assert e2e_http.main(["login", "--url", sentry.base_url, "--email", ADMIN_EMAIL]) == 1
        assert not any(method == "POST" for method, _ in sentry.requests)


# -- zero downtime: the request loop ------------------------------------------------------


def test_watch_counts_requests_until_the_stop_file(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    report = tmp_path / "report.json"
    with fake_sentry(FakeSentry(stop_file=stop, stop_after_requests=6)) as sentry:
        args = ["watch", "--url", sentry.base_url, "--stop-file", str(stop), "--report", str(report)]
        assert e2e_http.main(args) == 0
    counts = json.loads(report.read_text())
    assert counts["errors"] == 0
    assert counts["requests"] == len(sentry.requests) >= 6
    assert counts["stopped_by"] == "stop file"
    assert {path for _, path in sentry.requests} == {"/_health/", "/auth/login/sentry/"}


@pytest.mark.parametrize("failure", ["503", "drop"])
def test_watch_fails_on_an_error_answer_or_a_dropped_connection(tmp_path: Path, failure: str) -> None:
    stop = tmp_path / "stop"
    report = tmp_path / "report.json"
    state = FakeSentry(stop_file=stop, stop_after_requests=8, fail_requests={3: failure})
    with fake_sentry(state) as sentry:
        args = ["watch", "--url", sentry.base_url, "--stop-file", str(stop), "--report", str(report)]
        assert e2e_http.main(args) == 1
    counts = json.loads(report.read_text())
    assert counts["errors"] == 1
    assert counts["requests"] >= 8
    assert len(counts["first_errors"]) == 1


def test_the_module_runs_with_a_bare_python(tmp_path: Path) -> None:
    """No project packages: the script calls it with whatever python3 is on the PATH."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(PROJECT_DIR / "tools" / "e2e_http.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    assert "send-event" in result.stdout

"""The real Sentry tier: Sentry 9.1.2 started from what dist/ declares, checked end to end.

tests/real_sentry.py starts three configurations (default, production, external) in the
background as soon as these tests are collected; tests/pod_runner.py runs each container
as its manifest says. The tests run last in the session and wait for what they need.
Nothing here is a mock: the real Sentry (uWSGI, Celery, South), PostgreSQL, Redis 6.2.14,
an SMTP server, an S3 server. A missing piece fails the tier, it never skips.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_DIR, Dist
from tests.real_sentry import (
    CLIENT_ADDRESS,
    INGRESS_HEADERS,
    PUBLIC_HOST,
    RDS_HOST,
    S3_BUCKET,
    S3_HOST,
    Stack,
    Tier,
    environ_path,
    tier,
    write_json,
)
from tests.statsd_mapping import mapped_statsd_name
from tools.e2e_http import (
    CSRF_COOKIE,
    CSRF_FIELD,
    LOGIN_PATH,
    Dsn,
    E2EError,
    _FormParser,
    event_payload,
    new_event_id,
)

pytestmark = pytest.mark.real_sentry

# How long, after a pod is marked for deletion, new requests still reach it: until kube-proxy
# and the Ingress controller have dropped it from their endpoints (a few seconds). The web
# pod's preStop delay must outlast it.
ENDPOINT_PROPAGATION_SECONDS = 5
MIB = 1024


def _wait(future_name: str, timeout: float = 1500) -> Tier:
    """The tier, once its background step `future_name` is done (its failure fails the test)."""
    current = tier()
    getattr(current, future_name).result(timeout=timeout)
    return current


def _forms(html: str) -> list[dict[str, str]]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def _offers_sign_up(html: str) -> bool:
    """Whether Sentry 9.1.2's login page offers to register: its template always has the
    register form's frame (op=register), but the "Register" tab and the form's fields only
    when sign-up is allowed (CAN_REGISTER, register_form)."""
    register = [f for f in _forms(html) if f.get("op") == "register"]
    fields = any("username" in f and "password" in f for f in register)
    tab = 'href="#register"' in html
    assert fields == tab, "the Register tab and the form's fields disagree"
    return fields


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the default configuration: the migration Job --------------------------------------


def test_the_default_configuration_is_the_shipped_one(default_dist: Dist) -> None:
    # The tier adds the restore Job (postgres.backup.restore.enabled), which is a file of its
    # own; everything else is config/minikube.yaml's dist/ exactly.
    dist = tier().dists["default"]
    others = [o for o in dist.objects if not (o["kind"] == "Job" and "restore" in o["metadata"]["name"])]
    assert others == default_dist.objects


def test_the_migration_job_runs_its_containers_in_order_and_migrates() -> None:
    current = _wait("migrated")
    stack, run = current.default, current.migration
    (spec,) = [run.pod.spec]
    declared = [c["name"] for c in [*spec["initContainers"], *spec["containers"]]]
    assert declared == ["wait-for-postgres", "wait-for-redis", "migrate"]
    # Each ran, in that order, to exit 0 (Stack.run_job raises on anything else).
    assert list(run.seconds) == declared
    migrate = run.log("migrate")
    assert "migrations: holding the migration lock" in migrate
    applied = re.findall(r"^ > ([\w.]+):(\d{4}_\w+)", migrate, re.MULTILINE)
    assert len([a for a in applied if a[0] == "sentry"]) > 400, migrate[-3000:]
    assert int(stack.sql("SELECT count(*) FROM south_migrationhistory")) == len(applied)
    email, _ = stack.admin()
    assert f"migrations: creating superuser {email}" in migrate
    assert f"migrations: password of superuser {email} set from the Secret" in migrate
    assert "migrations: recording the admin bootstrap" in migrate
    assert stack.sql(f"SELECT is_superuser FROM auth_user WHERE email = '{email}'") == "t"
    image = stack.container_image("sentry-web")
    assert stack.sql("SELECT version FROM k8s_sentry_migrations") == image
    assert stack.sql("SELECT item FROM k8s_sentry_bootstrap") == "admin"


def test_the_migration_fits_its_memory_limit() -> None:
    current = _wait("migrated")
    (migrate,) = [c for c in current.migration.pod.spec["containers"] if c["name"] == "migrate"]
    limit_kib = _kib(migrate["resources"]["limits"]["memory"])
    assert current.migration.peak_pss_kib["migrate"] < limit_kib


def test_a_second_run_of_the_migration_job_changes_nothing() -> None:
    current = _wait("second_job")
    result: dict[str, Any] = current.second_job.result()
    run = result["run"]
    migrate = run.log("migrate")
    assert "admin bootstrap already done at" in migrate
    assert "creating superuser" not in migrate
    assert not re.search(r"^ > sentry:\d{4}_", migrate, re.MULTILINE), "the second run applied migrations"
    # The admin, its password, the migrations applied and the markers: all as before.
    assert result["after"] == result["before"]


# --- the default configuration: web, worker, cron ---------------------------------------


def test_web_and_cron_start_after_their_init_containers() -> None:
    stack = _wait("default_up").default
    for name in ("sentry-web", "sentry-cron"):
        pod = stack.pods[name]
        inits = [c["name"] for c in pod.spec["initContainers"]]
        assert inits == ["wait-for-postgres", "wait-for-migrations"]
        for init in inits:
            assert pod.containers[init].process.returncode == 0
            # The main container started only after the last init container had ended.
            assert pod.containers[init].started_at < stack.container(name).started_at
        assert "are complete" in pod.containers["wait-for-migrations"].log()
        assert stack.container(name).running(), stack.container(name).log()[-3000:]
    # celery beat runs, and keeps its schedule in /tmp, the pod's emptyDir (the root is
    # read-only). (Its banner is no sign: Python 2 buffers stdout into a pipe until exit.)
    tmp, _ = stack.pods["sentry-cron"].volume("tmp")
    assert _eventually(lambda: list(tmp.glob("sentry-celerybeat*")), 300)
    assert stack.container("sentry-cron").running()


def test_every_probe_the_workloads_declare_passes() -> None:
    stack = _wait("default_up").default
    checked = []
    for name in ("sentry-web", "redis"):
        pod = stack.pods[name]
        for container in [c for c in pod.spec["containers"] if c["name"] in pod.containers]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container:
                    assert pod.probe(container["name"], kind, timeout=10), f"{name}/{container['name']} {kind}"
                    checked.append((name, kind))
    web = stack.pods["sentry-web"].spec["containers"][0]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[kind]["httpGet"]["path"] == "/_health/"
        url = f"http://{stack.web_address[0]}:{web[kind]['httpGet']['port']}{web[kind]['httpGet']['path']}"
        assert stack.cluster.http_status(url, 10) == 200
    assert len(checked) == 6


@pytest.fixture(scope="module")
def default_project() -> dict[str, Any]:
    """The admin's session on the default stack and a project with its DSN."""
    stack = _wait("default_up").default
    client, org = stack.logged_in()
    project = client.find_or_create_project(org, "tier")
    return {"client": client, "org": org, "project": project["slug"], "dsn": client.dsn(org, project["slug"])}


def test_an_event_waits_for_the_worker_then_is_listed(default_project: dict[str, Any]) -> None:
    stack = tier().default
    client, org, project, dsn = (default_project[k] for k in ("client", "org", "project", "dsn"))
    assert "sentry-worker" not in stack.pods
    event_id = new_event_id()
    client.store_event(dsn, event_payload(event_id, f"tier event {event_id}", _now()))
    # Without a worker the event waits in Redis, and the API does not list it.
    queued = stack.pods["redis"].containers["redis"].exec(["redis-cli", "llen", "events.preprocess_event"], check=True)
    assert int(queued.stdout.strip()) >= 1
    time.sleep(5)
    assert not [e for e in client.api("GET", f"/projects/{org}/{project}/events/") if e.get("eventID") == event_id]
    worker_pod = stack.start("Deployment", "sentry-worker")
    assert [c["name"] for c in worker_pod.spec["initContainers"]] == ["wait-for-postgres", "wait-for-migrations"]
    event = client.wait_for_event(org, project, event_id, timeout=180, interval=2)
    assert event["message"] == f"tier event {event_id}" or event_id in json.dumps(event)
    assert stack.container("sentry-worker").running()
    default_project["event_id"] = event_id


def test_sign_up_is_closed_by_default() -> None:
    stack = _wait("default_up").default
    page = stack.client().request("GET", LOGIN_PATH)
    assert page.status == 200
    forms = _forms(page.body.decode())
    assert [f for f in forms if f.get("op") == "login"], "no login form at all"
    assert not _offers_sign_up(page.body.decode()), "the login page offers a Register form"
    assert _register(stack, "stranger@example.com") is False


def _register(stack: Stack, email: str, **client_options: Any) -> bool:
    """Try to sign up through the login page's form; whether the account now exists."""
    client = stack.client(**client_options)
    page = client.request("GET", LOGIN_PATH)
    token = client.cookie(CSRF_COOKIE) or ""
    body = f"op=register&name=Tier+Stranger&username={email}&password=tier-Str0ng-pass-9&{CSRF_FIELD}={token}"
    response = client.request(
        "POST",
        LOGIN_PATH,
        body.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Referer": client.base_url + LOGIN_PATH},
    )
    assert page.status == 200 and response.status in (200, 302), response.status
    return stack.sql(f"SELECT count(*) FROM auth_user WHERE email = '{email}'") == "1"


def test_the_cleanup_cronjob_runs_to_the_end() -> None:
    stack = _wait("default_up").default
    run = stack.run_job("CronJob", "sentry-cleanup", timeout=600)
    (container,) = run.pod.spec["containers"]
    assert container["command"][2:4] == ["sentry", "cleanup"]
    assert list(run.seconds) == ["wait-for-postgres", "wait-for-migrations", "cleanup"]


def test_memory_after_warm_up(default_project: dict[str, Any]) -> None:
    """Each process's memory (PSS) once warm, and the migration's peak: recorded for
    tools/measure_sentry_memory.py, and checked against each container's limit."""
    current = _wait("default_up")
    stack = current.default
    client, org, project = default_project["client"], default_project["org"], default_project["project"]
    # Warm-up: every web worker has served pages and API calls, the worker has processed events.
    for _ in range(10):
        client.request("GET", LOGIN_PATH)
        client.api("GET", f"/projects/{org}/{project}/events/")
    for _ in range(3):
        event_id = new_event_id()
        client.store_event(default_project["dsn"], event_payload(event_id, f"warm-up {event_id}", _now()))
    client.wait_for_event(org, project, event_id, timeout=120, interval=2)
    time.sleep(5)
    figures = {
        "web": stack.container("sentry-web").pss_kib() // MIB,
        "worker": stack.container("sentry-worker").pss_kib() // MIB,
        "cron": stack.container("sentry-cron").pss_kib() // MIB,
        "migrations": current.migration.peak_pss_kib["migrate"] // MIB,
    }
    report = environ_path("SENTRY_K8S_MEMORY_REPORT")
    if report is not None:
        write_json(report, {"pss_mib": figures, "timings_s": {k: round(v) for k, v in current.timings.items()}})
    for name, mib in figures.items():
        if name == "migrations":
            continue
        container = stack.pods[f"sentry-{name}"].spec["containers"][0]
        assert 50 < mib < _kib(container["resources"]["limits"]["memory"]) // MIB, (name, mib)


# --- uWSGI's stop sequence (issue 18, item 1) ------------------------------------------


def test_the_web_pods_stop_sequence_drops_no_request(default_project: dict[str, Any]) -> None:
    """Delete the web pod as Kubernetes does while clients keep coming: new requests for as
    long as the endpoints take to forget the pod, slow uploads in flight across the SIGTERM.
    Every request must succeed."""
    stack = tier().default
    pod = stack.pods["sentry-web"]
    web = pod.spec["containers"][0]
    grace = pod.spec["terminationGracePeriodSeconds"]
    host, port = stack.web_address
    dsn: Dsn = default_project["dsn"]
    results: list[tuple[str, float, float, str | None]] = []
    lock = threading.Lock()
    sigterm_at: list[float] = []
    started = time.monotonic()

    def record(kind: str, began: float, problem: str | None) -> None:
        with lock:
            results.append((kind, began - started, time.monotonic() - started, problem))

    def quick_requests() -> None:
        # A new connection per request (an Ingress or kube-proxy picks an endpoint per connection).
        while time.monotonic() - started < ENDPOINT_PROPAGATION_SECONDS:
            for path in ("/_health/", LOGIN_PATH):
                began = time.monotonic()
                try:
                    status = stack.cluster.network.call(_get_status, host, port, path)
                    record("new", began, None if status == 200 else f"status {status}")
                except OSError as exc:
                    record("new", began, f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    def slow_upload(delay: float) -> None:
        # An event whose body trickles in from before the SIGTERM until well after it.
        time.sleep(delay)
        began = time.monotonic()
        event_id = new_event_id()
        body = json.dumps(event_payload(event_id, f"in flight {event_id}", _now())).encode()
        seconds = 15.0 + 6 - delay  # past the preStop delay, then a few seconds into the drain
        try:
            status, answer = _trickle_store(stack, host, port, dsn, body, seconds)
            record("in flight", began, None if status == 200 and event_id in answer else f"status {status}: {answer}")
        except OSError as exc:
            record("in flight", began, f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=quick_requests) for _ in range(3)]
    threads += [threading.Thread(target=slow_upload, args=(d,)) for d in (1.0, 2.5, 4.0)]
    for thread in threads:
        thread.start()
    exit_codes = pod.stop(on_sigterm=lambda: sigterm_at.append(time.monotonic() - started))
    stopped = time.monotonic() - started
    for thread in threads:
        thread.join(60)
    failures = [r for r in results if r[3]]
    log = stack.container("sentry-web").log()
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:10]}\n{log[-3000:]}"
    new = [r for r in results if r[0] == "new"]
    in_flight = [r for r in results if r[0] == "in flight"]
    assert len(new) >= 5 and len(in_flight) == 3
    (term,) = sigterm_at
    assert web.get("lifecycle", {}).get("preStop"), "no preStop hook: SIGTERM comes while requests still arrive"
    assert term >= ENDPOINT_PROPAGATION_SECONDS, f"SIGTERM after {term:.1f}s, before the endpoints forgot the pod"
    assert all(r[1] < term < r[2] for r in in_flight), f"not in flight across the SIGTERM at {term:.1f}s: {in_flight}"
    # uWSGI drained and ended by itself, within the grace period: no SIGKILL.
    assert exit_codes["web"] == 0, log[-3000:]
    assert stopped < grace
    assert "graceful shutdown triggered" in log


def _get_status(host: str, port: int, path: str) -> int:
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", path, headers={"User-Agent": "tier-stop-sequence"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _trickle_store(stack: Stack, host: str, port: int, dsn: Dsn, body: bytes, seconds: float) -> tuple[int, str]:
    from tools.e2e_http import sentry_auth_header

    sock = stack.cluster.network.call(socket.create_connection, (host, port), 30)
    with sock:
        sock.settimeout(60)
        head = (
            f"POST /api/{dsn.project_id}/store/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Sentry-Auth: {sentry_auth_header(dsn, time.time())}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        pieces = 20
        size = -(-len(body) // pieces)
        for index in range(pieces):
            sock.sendall(body[index * size : (index + 1) * size])
            time.sleep(seconds / pieces)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.decode("utf-8", "replace").partition("\r\n")
    return int(status_line.split()[1]) if status_line.startswith("HTTP/") else 0, rest[-500:]


# --- backup, restore, and Sentry on the restored data -----------------------------------


def test_backup_then_restore_into_a_fresh_server_and_sentry_runs_on_it(default_project: dict[str, Any]) -> None:
    stack = tier().default
    event_id = default_project.get("event_id")
    assert event_id, "the event test did not run first"
    # The restore runbook: Sentry scaled to 0 first.
    for name in ("sentry-web", "sentry-worker", "sentry-cron"):
        if name in stack.pods:
            stack.pods[name].stop()
    backup = stack.run_job("CronJob", "sentry-backup", timeout=600)
    assert "backup: wrote" in backup.log("backup"), backup.log("backup")
    assert stack.postgres is not None
    old = stack.postgres
    old.stop()
    # A fresh server in its place (the lost volume), as the StatefulSet would make it.
    stack.start_postgres()
    assert stack.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'sentry_project'") == "0"
    restore = stack.run_job("Job", "sentry-restore", timeout=600)
    assert "restore: FAILED" not in restore.log("restore")
    assert stack.sql("SELECT count(*) FROM sentry_project WHERE slug = 'tier'") == "1"
    web = stack.start("Deployment", "sentry-web")
    web.wait_until("web", "readinessProbe", 300)
    client, org = stack.logged_in()
    events = client.api("GET", f"/projects/{org}/{default_project['project']}/events/")
    assert [e for e in events if e.get("eventID") == event_id]


# --- the production example: Ingress, sign-up, login providers, mail, metrics -------------


def _production() -> Stack:
    return _wait("production_up").production


def test_login_works_through_the_headers_an_ingress_sends() -> None:
    stack = _production()
    client = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS)
    client.base_url = f"https://{PUBLIC_HOST}"
    email, password = stack.admin()
    orgs = client.login(email, password)
    assert orgs
    # Sentry saw https and the public host: its cookies are Secure, its redirects absolute to it.
    secure = {c.name: c.secure for c in client.cookies}
    assert secure.get("sentrysid") is True and secure.get(CSRF_COOKIE) is True, secure
    response = client.request("GET", "/auth/login/")
    assert response.status == 302
    assert response.headers["Location"].startswith(f"https://{PUBLIC_HOST}/"), response.headers
    # And the client's address is the one the Ingress forwarded (the audit log keeps it).
    org = orgs[0]["slug"]
    project = client.find_or_create_project(org, "ingress")
    entries = client.api("GET", f"/organizations/{org}/audit-logs/")
    (created,) = [e for e in entries if e.get("event") == "project.create" and e["data"].get("slug") == project["slug"]]
    assert created["ipAddress"] == CLIENT_ADDRESS


def test_the_ingress_headers_are_what_make_it_https() -> None:
    # The same session without X-Forwarded-Proto: Sentry sees plain HTTP and refuses the
    # login, because its cookies are for HTTPS only. So the headers are really used.
    stack = _production()
    headers = {k: v for k, v in INGRESS_HEADERS.items() if k != "X-Forwarded-Proto"}
    client = stack.client(connect_to=stack.web_address, headers=headers)
    client.base_url = f"http://{PUBLIC_HOST}"
    email, password = stack.admin()
    with pytest.raises(E2EError, match=r"login as .* failed: status 403"):
        client.login(email, password)


def test_sign_up_opens_with_the_switch() -> None:
    stack = _production()
    page = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS).request("GET", LOGIN_PATH)
    assert _offers_sign_up(page.body.decode()), "no Register form"
    client_options = {"connect_to": stack.web_address, "headers": INGRESS_HEADERS}
    assert _register_through_ingress(stack, "newcomer@example.com", client_options) is True


def _register_through_ingress(stack: Stack, email: str, options: dict[str, Any]) -> bool:
    client = stack.client(**options)
    client.base_url = f"https://{PUBLIC_HOST}"
    client.request("GET", LOGIN_PATH)
    token = client.cookie(CSRF_COOKIE) or ""
    body = f"op=register&name=Tier+Newcomer&username={email}&password=tier-Str0ng-pass-9&{CSRF_FIELD}={token}"
    response = client.request(
        "POST",
        LOGIN_PATH,
        body.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Referer": client.base_url + LOGIN_PATH},
    )
    assert response.status == 302, response.body[-500:]
    return stack.sql(f"SELECT count(*) FROM auth_user WHERE email = '{email}'") == "1"


def test_the_gitlab_login_provider_loads_from_the_login_image() -> None:
    stack = _production()
    current = tier()
    assert stack.container_image("sentry-web") == "sentry-k8s/sentry-auth:9.1.2"
    client = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS)
    client.base_url = f"https://{PUBLIC_HOST}"
    email, password = stack.admin()
    org = client.login(email, password)[0]["slug"]
    providers = {p["key"]: p["name"] for p in client.api("GET", f"/organizations/{org}/auth-providers/")}
    assert providers.get("gitlab") == "GitLab", providers
    # GitHub's plugin cannot be installed here (not on PyPI): the install says so, and the
    # stock image of the default stack offers neither.
    assert any("sentry-auth-github" in r for r in current.install.unavailable_auth_requirements)
    assert "github" not in providers
    default = _wait("default_up").default
    stock_client, stock_org = default.logged_in()
    stock = {p["key"] for p in stock_client.api("GET", f"/organizations/{stock_org}/auth-providers/")}
    assert "gitlab" not in stock


def test_an_alert_rule_mails_a_new_issue_through_the_mail_server() -> None:
    stack = _production()
    current = tier()
    client = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS)
    client.base_url = f"https://{PUBLIC_HOST}"
    email, password = stack.admin()
    org = client.login(email, password)[0]["slug"]
    project = client.find_or_create_project(org, "alerts")["slug"]
    for rule in client.api("GET", f"/projects/{org}/{project}/rules/"):
        # Only this rule may mail: the project's default one goes.
        deleted = client.request(
            "DELETE",
            f"/api/0/projects/{org}/{project}/rules/{rule['id']}/",
            headers={"X-CSRFToken": client.cookie(CSRF_COOKIE) or ""},
        )
        assert deleted.status in (202, 204), deleted.status
    rule = {
        "name": "tier: mail on every new issue",
        "actionMatch": "all",
        "conditions": [{"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"}],
        "actions": [{"id": "sentry.rules.actions.notify_event_service.NotifyEventServiceAction", "service": "mail"}],
        "frequency": 5,
    }
    client.api("POST", f"/projects/{org}/{project}/rules/", rule, expect=(200, 201))
    dsn = client.dsn(org, project)
    event_id = new_event_id()
    message = f"tier alert {event_id}"
    client.store_event(dsn, event_payload(event_id, message, _now()))
    # Sentry mails each member of the project's team on its own: this stack's admin gets one.
    mail = current.smtp.wait_for(
        lambda m: message in str(m.message.get("Subject", "")) and email in m.rcpt_tos, timeout=180
    )
    values = yaml.safe_load((PROJECT_DIR / "config" / "production.yaml").read_text())["sentry"]["smtp"]
    assert mail.mail_from == values["from_address"]
    # The values file's TLS and login were used (the sink requires both).
    assert mail.tls and mail.login == values["user"]
    assert not current.smtp.refused_logins
    worker = stack.container("sentry-worker").log()
    assert "readonly table" not in worker and "rule_notify.process_error" not in worker


def test_the_metrics_sentry_sends_are_the_ones_the_exporter_maps() -> None:
    _production()
    current = tier()
    # Events went through web and worker by now (the alert test); give the last datagrams time.
    assert _eventually(lambda: any(n.startswith("sentry.jobs.") for n in current.statsd.names()), 60)
    names = current.statsd.names()
    capture = environ_path("SENTRY_K8S_STATSD_CAPTURE")
    if capture is not None:
        write_json(capture, {name: sorted(kinds) for name, kinds in sorted(names.items())})
    rules = yaml.safe_load((PROJECT_DIR / "constructs" / "statsd_files" / "mapping.yml").read_text())["mappings"]
    unmatched = [rule["match"] for rule in rules if not any(re.match(rule["match"], n) for n in names)]
    assert not unmatched, f"mapping rules that match nothing Sentry sent: {unmatched}\nsent: {sorted(names)}"
    for name in ("sentry.jobs.started", "sentry.jobs.finished", "sentry.events.processed"):
        assert name in names, sorted(names)
        assert mapped_statsd_name(name) is not None
    # Timers arrive as whole milliseconds.
    timers = [line for line in current.statsd.lines if line.endswith("|ms")]
    assert timers and all(re.fullmatch(r"[^:]+:\d+\|ms", line) for line in timers), timers[:5]


# --- the external example: verify-full PostgreSQL, S3 files --------------------------------


def _external() -> Stack:
    return _wait("external_up").external


def test_the_external_database_is_reached_with_verify_full_only() -> None:
    current = _wait("external_up")
    stack = current.external
    assert stack.postgres is not None
    # The managed server takes TLS only (pg_hba: hostssl), so every step of the migration
    # Job (pg_isready and psql of the client image, Sentry's psycopg2) reached it over TLS,
    # verifying its certificate against the CA from the Secret for the RDS name.
    run = current.external_job
    assert list(run.seconds) == ["wait-for-postgres", "wait-for-redis", "migrate"]
    (migrate,) = [c for c in run.pod.spec["containers"] if c["name"] == "migrate"]
    env = run.pod.containers["migrate"].env
    assert (env["SENTRY_POSTGRES_HOST"], env["PGSSLMODE"]) == (RDS_HOST, "verify-full")
    assert env["PGSSLROOTCERT"].startswith(next(m["mountPath"] for m in migrate["volumeMounts"] if "ca" in m["name"]))
    hba = (stack.postgres.data_dir / "pg_hba.conf").read_text()
    assert [line for line in hba.splitlines() if line.startswith("host")] == [
        line for line in hba.splitlines() if line.startswith("hostssl")
    ]
    authorized = [line for line in stack.postgres.log().splitlines() if "connection authorized: user=sentry" in line]
    assert authorized and all("SSL enabled" in line for line in authorized), authorized[:5]


def test_web_pods_serve_with_the_external_database_over_tls() -> None:
    # With the stock image's psycopg2-binary (its own OpenSSL 1.0.2) beside uWSGI (linked with
    # the system's), every web worker crashed in SSL_new on its first TLS connection
    # (psycopg/psycopg2#543, getsentry/sentry#14244). TLS to PostgreSQL therefore runs the
    # project's image, whose psycopg2 is built against the image's own OpenSSL.
    stack = _external()
    (web_container,) = stack.dist.get("Deployment", "sentry-web")["spec"]["template"]["spec"]["containers"]
    assert web_container["image"] == "sentry-k8s/sentry-auth:9.1.2"
    web = stack.start("Deployment", "sentry-web")
    try:
        web.wait_until("web", "readinessProbe", 120)
        # Through the Ingress's headers: its url_prefix is https, so Sentry's cookies are Secure.
        client = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS)
        client.base_url = f"https://{PUBLIC_HOST}"
        assert client.login(*stack.admin())
    finally:
        log = stack.container("sentry-web").log()
        web.kill()
    assert "Segmentation Fault" not in log


def test_a_release_file_goes_to_s3_and_comes_back() -> None:
    stack = _production()
    current = tier()
    env = stack.container_env("sentry-web")
    assert (env["SENTRY_S3_BUCKET"], env["SENTRY_S3_ENDPOINT_URL"]) == (S3_BUCKET, f"http://{S3_HOST}")
    client = stack.client(connect_to=stack.web_address, headers=INGRESS_HEADERS)
    client.base_url = f"https://{PUBLIC_HOST}"
    email, password = stack.admin()
    org = client.login(email, password)[0]["slug"]
    project = client.find_or_create_project(org, "files")["slug"]
    version = f"tier-{uuid.uuid4().hex[:8]}"
    client.api("POST", f"/projects/{org}/{project}/releases/", {"version": version}, expect=(201,))
    content = f"// tier artifact {version}\n".encode() * 200
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n~/app.min.js\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="app.min.js"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.request(
        "POST",
        f"/api/0/projects/{org}/{project}/releases/{version}/files/",
        body,
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-CSRFToken": client.cookie(CSRF_COOKIE) or ""},
    )
    assert response.status == 201, response.body[:500]
    file_id = response.json()["id"]
    download = client.request("GET", f"/api/0/projects/{org}/{project}/releases/{version}/files/{file_id}/?download=1")
    assert download.status == 200 and download.body == content
    # The object is in the bucket (moto's own listing), and nothing went to a local filestore.
    status, listing = current.s3_request(stack, "GET", f"/{S3_BUCKET}?list-type=2")
    assert status == 200 and b"<Key>" in listing, listing[:500]
    web = stack.pods["sentry-web"].spec["containers"][0]
    assert "/var/lib/sentry/files" not in {m["mountPath"] for m in web["volumeMounts"]}


# --- helpers ------------------------------------------------------------------------------


def _eventually(check: Any, timeout: float, interval: float = 1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


def _kib(quantity: str) -> int:
    from constructs.quantities import parse_memory

    return parse_memory(quantity) // 1024

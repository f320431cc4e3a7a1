"""Bad input: one clear message naming the field and what is allowed, a non-zero
exit, and dist/ exactly as it was."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml

from app.values import ConfigError, parse_config
from tests.conftest import TEST_SECRETS, synth

# (case id, values file text or None for "no file", fragments the message must contain)
CASES: list[tuple[str, str | None, tuple[str, ...]]] = [
    ("unknown top-level key", "namspace: sentry\n", ("namspace: unknown key", "namespace")),
    ("unknown nested key", "sentry:\n  web:\n    replica: 3\n", ("sentry.web.replica: unknown key", "replicas")),
    ("wrong type", "sentry:\n  web:\n    replicas: two\n", ("sentry.web.replicas", "valid integer")),
    ("negative replicas", "sentry:\n  worker:\n    replicas: -1\n", ("sentry.worker.replicas", "from 1 to 50")),
    ("zero replicas", "sentry:\n  web:\n    replicas: 0\n", ("sentry.web.replicas", "from 1 to 50")),
    (
        "limit below request",
        "sentry:\n  web:\n    resources:\n      requests: {cpu: 100m, memory: 400Mi}\n"
        "      limits: {cpu: 600m, memory: 100Mi}\n",
        ("sentry.web.resources", "limits.memory 100Mi is below requests.memory 400Mi"),
    ),
    ("nodePort too low", "sentry:\n  web:\n    node_port: 80\n", ("sentry.web.node_port", "from 30000 to 32767")),
    ("nodePort too high", "sentry:\n  web:\n    node_port: 40000\n", ("sentry.web.node_port", "from 30000 to 32767")),
    (
        "cron schedule in words",
        "postgres:\n  backup:\n    schedule: every day\n",
        ("postgres.backup.schedule", "five fields"),
    ),
    (
        "cron minute out of range",
        "postgres:\n  backup:\n    schedule: '61 3 * * *'\n",
        ("postgres.backup.schedule", "minute field", "0-59"),
    ),
    ("quantity 3GB", "postgres:\n  storage:\n    size: 3GB\n", ("postgres.storage.size", "'3GB'", "Gi")),
    (
        "cpu in words",
        "redis:\n  resources:\n    requests: {cpu: fast, memory: 64Mi}\n    limits: {cpu: 250m, memory: 256Mi}\n",
        ("redis.resources.requests.cpu", "millicores"),
    ),
    ("empty image", "sentry:\n  image: ''\n", ("sentry.image", "is not an image reference")),
    ("image with spaces", "redis:\n  image: 'redis 7'\n", ("redis.image", "is not an image reference")),
    ("malformed YAML", "sentry:\n  web: [replicas: 2\n", ("not valid YAML", "line")),
    ("top level is a list", "- namespace: sentry\n", ("top level must be a mapping",)),
    ("duplicate key", "namespace: a\nnamespace: b\n", ("duplicate key 'namespace'",)),
    ("namespace not a DNS label", "namespace: Sentry_NS\n", ("namespace", "lower-case letters, digits and '-'")),
    (
        "service type",
        "sentry:\n  web:\n    service_type: NodePorts\n",
        ("sentry.web.service_type", "'NodePort', 'ClusterIP' or 'LoadBalancer'"),
    ),
    (
        "pull policy",
        "sentry:\n  image_pull_policy: Sometimes\n",
        ("sentry.image_pull_policy", "'IfNotPresent', 'Always' or 'Never'"),
    ),
    ("backups kept", "postgres:\n  backup:\n    keep: 0\n", ("postgres.backup.keep", "from 1 to 1000")),
    (
        "github without client id",
        "sentry:\n  github:\n    login_enabled: true\n",
        ("sentry.github", "client_id: is required when login_enabled is true"),
    ),
    ("admin email", "sentry:\n  admin_email: admin\n", ("sentry.admin_email", "does not match")),
    (
        "access mode",
        "sentry:\n  filestore:\n    size: 10Gi\n    access_mode: ReadWriteSometimes\n",
        ("sentry.filestore.access_mode", "'ReadWriteOnce', 'ReadWriteMany' or 'ReadWriteOncePod'"),
    ),
    (
        # Only the request is given: the default limit (250Mi) is merged in, and the
        # limit >= request rule runs on the merged result.
        "request above the default limit",
        "sentry:\n  cron:\n    resources:\n      requests: {memory: 1Gi}\n",
        ("sentry.cron.resources", "limits.memory 250Mi is below requests.memory 1Gi"),
    ),
    ("replicas: yes", "sentry:\n  web:\n    replicas: yes\n", ("sentry.web.replicas", "True", "whole number")),
    ("replicas as a float", "sentry:\n  worker:\n    replicas: 2.5\n", ("sentry.worker.replicas", "2.5")),
    ("port as a float", "sentry:\n  smtp:\n    port: 25.0\n", ("sentry.smtp.port", "25.0", "whole number")),
    ("number for a string", "sentry:\n  github:\n    app_id: 12345\n", ("sentry.github.app_id", "quote it")),
    ("boolean for a string", "postgres:\n  backup:\n    restore: {file: yes}\n", ("restore.file", "True")),
    (
        "ingress host with a space",
        "sentry:\n  web:\n    ingress: {enabled: true, host: 'sentry example.com'}\n",
        ("sentry.web.ingress.host", "'sentry example.com' is not a host name"),
    ),
    (
        "existing secret with a space",
        "secrets:\n  existing_secret: 'my secret'\n",
        ("secrets.existing_secret", "not a Kubernetes name"),
    ),
    (
        "storage class in capitals",
        "sentry:\n  filestore: {storage_class: Fast_SSD}\n",
        ("sentry.filestore.storage_class", "not a Kubernetes name"),
    ),
    ("kube-system", "namespace: kube-system\n", ("namespace", "cluster's own namespaces")),
    ("kube-public", "namespace: kube-public\n", ("namespace", "cluster's own namespaces")),
    (
        "kube-system, even when shared",
        "namespace: kube-system\nnamespace_shared: true\n",
        ("namespace", "cluster's own namespaces"),
    ),
    # A namespace other workloads live in (issue 22, 4): its owner must say the stack may share it.
    (
        "the default namespace",
        "namespace: default\n",
        ("namespace: 'default' holds other workloads", "set namespace_shared: true", "select only its own pods"),
    ),
    ("a monitoring namespace", "namespace: monitoring\n", ("namespace: 'monitoring' holds other workloads",)),
    (
        "url_prefix with a trailing slash",
        "sentry:\n  url_prefix: https://sentry.example.com/\n",
        ("sentry.url_prefix", "no trailing slash"),
    ),
    (
        "url_prefix without a scheme",
        "sentry:\n  url_prefix: sentry.example.com\n",
        ("sentry.url_prefix", "http:// or https://"),
    ),
    ("boolean in words", "sentry:\n  single_organization: maybe\n", ("sentry.single_organization", "valid boolean")),
    ("cleanup days", "sentry:\n  cleanup:\n    days: 0\n", ("sentry.cleanup.days", "from 1 to 3650")),
    # Settings that validated once and broke on a cluster (issue 22, 2).
    (
        "cron step of zero",
        "postgres:\n  backup:\n    schedule: '*/0 * * * *'\n",
        ("postgres.backup.schedule", "minute field '*/0'", "steps /n (n >= 1)"),
    ),
    (
        "cron step of zero in the cleanup",
        "sentry:\n  cleanup:\n    schedule: '0 */0 * * *'\n",
        ("sentry.cleanup.schedule", "hour field '*/0'"),
    ),
    (
        "IP address as Ingress host",
        "sentry:\n  web:\n    ingress: {enabled: true, host: 10.1.2.3}\n",
        ("sentry.web.ingress.host", "'10.1.2.3' is an IP address", "DNS name"),
    ),
    (
        "IPv6 address as Ingress host",
        "sentry:\n  web:\n    ingress: {enabled: true, host: '2001:db8::1'}\n",
        ("sentry.web.ingress.host", "is an IP address"),
    ),
    ("volume of size 0", "postgres:\n  storage:\n    size: '0'\n", ("postgres.storage.size", "not a size above zero")),
    ("volume of size 0Gi", "redis:\n  storage:\n    size: 0Gi\n", ("redis.storage.size", "not a size above zero")),
    (
        "backup volume of size 0",
        "postgres:\n  backup:\n    storage: {size: 0Mi}\n",
        ("postgres.backup.storage.size", "not a size above zero"),
    ),
    ("image without a tag", "sentry:\n  image: sentry\n", ("sentry.image", "'sentry' is not pinned", "sentry:9.1.2")),
    ("image tagged latest", "redis:\n  image: redis:latest\n", ("redis.image", "'redis:latest' is not pinned")),
    (
        "registry image tagged latest",
        "postgres:\n  image: registry.example.com:5000/postgres:latest\n",
        ("postgres.image", "is not pinned"),
    ),
    # Settings of a part that is off by default: the user expects the part (issue 22, 3).
    (
        "tls_secret without the Ingress",
        "sentry:\n  web:\n    ingress: {host: sentry.example.com, tls_secret: sentry-tls}\n",
        (
            "sentry.web.ingress.tls_secret: is set, but the Ingress is off (sentry.web.ingress.enabled is not set",
            "sentry.web.ingress.host: is set",
            "set sentry.web.ingress.enabled: true, or remove the setting",
        ),
    ),
    (
        "smtp.user without smtp.host",
        "sentry:\n  smtp: {user: sentry@example.com}\n",
        ("sentry.smtp.user: is set, but outgoing mail is off (sentry.smtp.host is not set", "set sentry.smtp.host"),
    ),
    (
        "service_monitor without metrics",
        "sentry:\n  metrics: {service_monitor: true}\n",
        ("sentry.metrics.service_monitor: is set, but the metrics exporter is off", "sentry.metrics.enabled: true"),
    ),
    (
        "autoscaling bounds without autoscaling",
        "sentry:\n  worker:\n    autoscaling: {max_replicas: 8}\n",
        ("sentry.worker.autoscaling.max_replicas: is set, but the worker autoscaler is off",),
    ),
    (
        "external PostgreSQL settings without a host",
        "postgres:\n  external: {sslmode: require, cidrs: [10.0.8.0/24]}\n",
        ("postgres.external.sslmode: is set, but PostgreSQL runs in the cluster", "postgres.external.cidrs: is set"),
    ),
    (
        "S3 filestore settings with the filesystem filestore",
        "sentry:\n  filestore: {s3: {bucket: sentry-files, access_key_id: AKIAFILES}}\n",
        ("sentry.filestore.s3.bucket: is set, but the filestore is not in S3", "set sentry.filestore.backend: s3"),
    ),
    (
        "a backup to restore without the restore Job",
        "postgres:\n  backup:\n    restore: {file: sentry-20240101T030000Z}\n",
        ("postgres.backup.restore.file: is set, but the restore Job is off",),
    ),
    ("missing file", None, ("no such configuration file",)),
    ("a folder", None, ("is a folder",)),
    ("not UTF-8", None, ("is not UTF-8 text", "byte 0xff")),
    ("unreadable", None, ("cannot be read", "Permission denied")),
]


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def previous_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("previous")
    code, dist = synth(tmp)
    assert code == 0
    return dist.path


@pytest.mark.parametrize(("case", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_clearly_and_leaves_dist_alone(
    case: str,
    values: str | None,
    expected: tuple[str, ...],
    previous_dist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _fingerprint(previous_dist)
    if values is None:
        import main
        from tests.conftest import environment

        config = tmp_path / "absent.yaml"
        if case == "a folder":
            config = tmp_path / "config"
            config.mkdir()
        elif case == "not UTF-8":
            config.write_bytes(b"namespace: sentry\nrelease: caf\xff\n")  # Latin-1, not UTF-8
        elif case == "unreadable":
            config.write_text("namespace: sentry\n")
            config.chmod(0)
        with environment({}):
            if case == "unreadable" and os.geteuid() == 0:
                # root reads any file: make the read fail as it does for everyone else.
                denied = OSError(errno.EACCES, os.strerror(errno.EACCES))
                with mock.patch.object(Path, "read_bytes", side_effect=denied):
                    code = main.main(["--config", str(config), "--outdir", str(previous_dist), "--quiet"])
            else:
                code = main.main(["--config", str(config), "--outdir", str(previous_dist), "--quiet"])
    else:
        code, _ = synth(tmp_path, values, outdir=previous_dist)
    err = capsys.readouterr().err
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("error: "), err
    for fragment in expected:
        assert fragment in err, f"{case}: {fragment!r} not in {err!r}"
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1
    assert _fingerprint(previous_dist) == before
    assert not list(previous_dist.parent.glob(".dist.new-*")), "no staging folder may be left behind"


def _assert_refused(code: int, err: str, expected: tuple[str, ...], previous_dist: Path, before: dict) -> None:
    assert code == 2, err
    assert err.splitlines()[0].startswith("error: "), err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1
    assert _fingerprint(previous_dist) == before
    assert not list(previous_dist.parent.glob(".dist.new-*")), "no staging folder may be left behind"


BROKEN_PASSWORD = "pw-first-line\npw-second-line"

# Bad input from the environment: (case id, environment and secrets file, fragments).
# The environment replaces the tests' Redis password variable; "file" is the secrets file's text.
ENV_CASES: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    (
        "Redis password with a line break, from the environment",
        {"SENTRY_K8S_REDIS_PASSWORD": BROKEN_PASSWORD},
        ("secret 'redis-password' from SENTRY_K8S_REDIS_PASSWORD", "line break", "Unbalanced quotes"),
    ),
    (
        "Redis password with a line break, from the secrets file",
        {"file": yaml.safe_dump({"redis-password": BROKEN_PASSWORD})},
        ("secret 'redis-password' from", "secrets.yaml, key redis-password", "line break"),
    ),
    (
        "secrets file in a folder that does not exist",
        {"SENTRY_K8S_SECRETS_FILE": "{tmp}/no-such-folder/secrets.yaml"},
        ("SENTRY_K8S_SECRETS_FILE=", "no-such-folder/secrets.yaml: the folder", "does not exist"),
    ),
    (
        "secrets file that is a folder",
        {"SENTRY_K8S_SECRETS_FILE": "{tmp}"},
        ("SENTRY_K8S_SECRETS_FILE=", "is a folder"),
    ),
]


@pytest.mark.parametrize(("case", "given", "expected"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_bad_input_from_the_environment_is_rejected_clearly(
    case: str,
    given: dict[str, str],
    expected: tuple[str, ...],
    previous_dist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _fingerprint(previous_dist)
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in given.items() if k != "file"}
    if "file" in given:
        (tmp_path / "secrets.yaml").write_text(given["file"])
    # The other secrets as previous_dist was made with them: a stack that has secrets refuses to
    # make new ones (the lost-secrets check), which would answer before the case's own error.
    others = {k: v for k, v in TEST_SECRETS.items() if k != "redis-password"}
    code, _ = synth(tmp_path, secrets=others, extra_env=env, outdir=previous_dist)
    err = capsys.readouterr().err
    _assert_refused(code, err, expected, previous_dist, before)
    assert "pw-first-line" not in err and "pw-second-line" not in err, "a secret value in a message"
    assert not (tmp_path / "no-such-folder").exists(), "nothing generated, nothing written"


def test_a_line_break_in_an_external_redis_password_is_the_servers_business(tmp_path: Path) -> None:
    # redis-server.sh writes the in-cluster server's config only; an external server has its own.
    code, _ = synth(
        tmp_path,
        "redis:\n  external: {host: 10.0.9.15}\n",
        secrets={**TEST_SECRETS, "redis-password": BROKEN_PASSWORD},
    )
    assert code == 0


def test_a_registry_with_a_port_is_an_image_reference() -> None:
    config = parse_config({"sentry": {"image": "registry.example.com:5000/sentry:9.1.2"}})
    assert config.sentry.image == "registry.example.com:5000/sentry:9.1.2"
    with pytest.raises(ConfigError, match="is not pinned"):
        parse_config({"sentry": {"image": "registry.example.com:5000/sentry"}})


def test_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_a_values_file_overrides_single_leaves(tmp_path: Path) -> None:
    # Only the memory limit: the requests and the CPU limit keep their defaults.
    code, dist = synth(tmp_path, "sentry:\n  web:\n    resources:\n      limits: {memory: 2Gi}\n")
    assert code == 0
    (web,) = dist.get("Deployment", "sentry-web")["spec"]["template"]["spec"]["containers"]
    assert web["resources"] == {
        "limits": {"cpu": "600m", "memory": "2Gi"},
        "requests": {"cpu": "100m", "memory": "400Mi"},
    }


def test_the_message_about_dist_is_true_when_the_cdk8s_cli_removed_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cdk8s CLI deletes its output folder before it runs the app (and sets CDK8S_OUTDIR).
    gone = tmp_path / "dist"
    code, _ = synth(
        tmp_path, "sentry:\n  web:\n    replicas: yes\n", outdir=gone, extra_env={"CDK8S_OUTDIR": str(gone)}
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "left unchanged" not in err
    assert "dist/ is gone: the cdk8s CLI (make synth-cli) removed it" in err
    code, _ = synth(tmp_path, "sentry:\n  web:\n    replicas: yes\n", outdir=gone)
    assert "nothing was written to dist/" in capsys.readouterr().err


# --- Output folders that cannot be replaced (issue 22, 5) ---------------------------------


def _refused_output(capsys: pytest.CaptureFixture[str], outdir: Path, tmp_path: Path) -> str:
    code, _ = synth(tmp_path, outdir=outdir)  # raises, rather than returns, on a traceback
    err = capsys.readouterr().err
    assert code == 2, err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
    assert "Traceback" not in err
    return err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".dist."))


def test_an_output_folder_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "dist"
    afile.write_text("not a folder\n")
    err = _refused_output(capsys, afile, tmp_path)
    assert f"error: the output folder {afile} is a file: give --outdir a folder" in err
    assert "dist was left unchanged." in err
    assert afile.read_text() == "not a folder\n" and not _leftovers(tmp_path)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_output_folder_in_proc_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused_output(capsys, Path("/proc/sentry-k8s-dist"), tmp_path)
    assert "cannot write the output folder /proc/sentry-k8s-dist: No such file or directory (ENOENT)" in err
    assert "give --outdir a folder elsewhere" in err


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    code, dist = synth(tmp_path, outdir=tmp_path / "out" / "dist")
    assert code == 0
    return dist.path, _fingerprint(dist.path)


def test_an_immutable_output_folder_is_refused_and_left_as_it_was(
    previous: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dist, before = previous
    if subprocess.run(["chattr", "+i", str(dist)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i needs root and a file system with the immutable flag")
    try:
        err = _refused_output(capsys, dist, tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(dist)], check=True)
    assert "Operation not permitted (EPERM)" in err and "immutable" in err
    assert "dist/ was left unchanged." in err
    assert _fingerprint(dist) == before and not _leftovers(dist.parent)


def test_an_output_folder_that_is_a_mount_point_is_refused_and_left_as_it_was(
    previous: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dist, before = previous
    if subprocess.run(["mount", "--bind", str(dist), str(dist)], capture_output=True, check=False).returncode != 0:
        pytest.skip("mount needs root (CAP_SYS_ADMIN)")
    try:
        err = _refused_output(capsys, dist, tmp_path)
    finally:
        subprocess.run(["umount", str(dist)], check=True)
    assert "Device or resource busy (EBUSY)" in err and "give --outdir a folder inside it" in err
    assert _fingerprint(dist) == before and not _leftovers(dist.parent)


def test_when_the_new_output_cannot_take_its_place_the_previous_one_is_put_back(
    previous: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The previous dist/ was moved aside, then moving the new one in fails (a busy target, a
    # full directory): the previous one goes back where it was.
    dist, before = previous
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self.name.startswith(".dist.new-"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(target))
        return real_rename(self, target)

    with mock.patch.object(Path, "rename", rename):
        err = _refused_output(capsys, dist, tmp_path)
    assert "(EBUSY)" in err and "dist/ was left unchanged." in err
    assert _fingerprint(dist) == before and not _leftovers(dist.parent)

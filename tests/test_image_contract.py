"""Every container against its image's contract (constructs/images.py): the programs it
calls, the user it runs as, the directories it mounts. A path an image does not have stops
the pod in a cluster and nowhere else, so it is checked here, for every workload of the
default and the full configuration.

The facts themselves are checked against their sources (the Dockerfiles at the commits
named in the contract) by reading them, and at run time by the real Sentry tier, which
runs the commands as written here; these tests keep the manifests and the contract in step.
"""

from __future__ import annotations

import re

import pytest

from app.capacity import pod_specs
from constructs import images
from tests.conftest import Dist, all_containers

# The image-specific programs a script may call by name; the rest (sh, cat, mkdir, ...) is in
# every image's base system.
IMAGE_PROGRAMS = re.compile(
    r"(?<![\w./-])(pg_isready|psql|pg_dump|pg_dumpall|pg_restore|vacuumdb|redis-cli|redis-server|sentry|python)(?![\w.-])"
)


def _workloads(dist: Dist) -> list[dict]:
    return [o for o in dist.objects if pod_specs(o)]


def _contract(container: dict) -> images.ImageContract:
    contract = images.contract_for(container["image"])
    assert contract is not None, f"{container['name']}: no contract for {container['image']}"
    return contract


def _program_calls(container: dict) -> set[str]:
    """Programs a container's command and its embedded script call by name."""
    words = [*container.get("command", []), *container.get("args", [])]
    # A script given as `sh -ec SCRIPT`: drop comments, which mention programs in prose.
    text = "\n".join(line.split("#", 1)[0] for word in words for line in word.splitlines())
    return set(IMAGE_PROGRAMS.findall(text))


def test_every_image_the_stack_runs_has_a_contract_or_is_a_helper(any_dist: Dist) -> None:
    unknown = {
        c["image"] for o in _workloads(any_dist) for c in all_containers(o) if images.contract_for(c["image"]) is None
    }
    # The offsite copy's aws CLI and the statsd exporter run their images' own entrypoints.
    assert unknown <= {"amazon/aws-cli:2.15.30", "prom/statsd-exporter:v0.26.1"}, unknown


def test_programs_called_by_path_exist_at_that_path(any_dist: Dist) -> None:
    checked = 0
    for obj in _workloads(any_dist):
        for container in all_containers(obj):
            contract = images.contract_for(container["image"])
            if contract is None or not container.get("command"):
                continue
            paths = set(contract.executables.values())
            command = container["command"]
            first = command[0]
            assert first.startswith("/"), f"{container['name']}: {first} is looked up on PATH"
            assert first in paths, f"{container['name']}: {contract.image} has no {first} ({contract.source})"
            if first == contract.executables.get("tini"):
                assert command[1] == "--"
                started = command[2]
                assert started in paths or started in contract.executables, f"{container['name']}: {started}"
            checked += 1
    assert checked >= 10


def test_the_sentry_image_has_tini_where_its_dockerfile_put_it() -> None:
    # getsentry/docker-sentry 9.1/Dockerfile at 09a7761: wget -O /usr/local/bin/tini.
    assert images.SENTRY.executable("tini") == "/usr/local/bin/tini"
    assert images.SENTRY.executable("sentry") == "/usr/local/bin/sentry"


def test_scripts_call_only_programs_their_image_has(any_dist: Dist) -> None:
    for obj in _workloads(any_dist):
        for container in all_containers(obj):
            contract = images.contract_for(container["image"])
            if contract is None:
                continue
            missing = _program_calls(container) - set(contract.executables)
            assert not missing, f"{obj['metadata']['name']}/{container['name']} ({contract.image}) calls {missing}"


def test_pods_run_as_their_images_own_user(any_dist: Dist) -> None:
    for obj in _workloads(any_dist):
        for spec in pod_specs(obj):
            pod = spec.get("securityContext", {})
            for container in spec.get("initContainers", []) + spec["containers"]:
                contract = images.contract_for(container["image"])
                if contract is None:
                    continue
                own = container.get("securityContext", {})
                uid = own.get("runAsUser", pod.get("runAsUser"))
                gid = own.get("runAsGroup", pod.get("runAsGroup"))
                where = f"{obj['metadata']['name']}/{container['name']}"
                assert uid == contract.uid, f"{where}: uid {uid}, image: {contract.source}"
                # A client of another image in this pod (redis-cli in a Sentry pod) may take the
                # pod's group, which owns the pod's volumes; the server itself keeps its own.
                assert gid in {contract.gid, pod.get("fsGroup")}, f"{where}: gid {gid}, image: {contract.source}"


def test_each_server_runs_as_its_images_user_and_group(default_dist: Dist) -> None:
    for workload, contract in (("sentry-postgresql", images.POSTGRES), ("sentry-redis", images.REDIS)):
        (obj,) = [o for o in _workloads(default_dist) if o["metadata"]["name"] == workload]
        (pod,) = pod_specs(obj)
        context = pod["securityContext"]
        ids = (context["runAsUser"], context["runAsGroup"], context["fsGroup"])
        assert ids == (contract.uid, contract.gid, contract.gid), workload


@pytest.mark.parametrize(
    ("workload", "container", "contract", "role"),
    [
        ("sentry-web", "web", images.SENTRY, "config"),
        ("sentry-web", "web", images.SENTRY, "filestore"),
        ("sentry-postgresql", "postgresql", images.POSTGRES, "data"),
        ("sentry-postgresql", "postgresql", images.POSTGRES, "socket"),
        ("sentry-redis", "redis", images.REDIS, "data"),
    ],
)
def test_volumes_are_mounted_where_the_image_keeps_them(
    default_dist: Dist, workload: str, container: str, contract: images.ImageContract, role: str
) -> None:
    (obj,) = [o for o in _workloads(default_dist) if o["metadata"]["name"] == workload]
    (found,) = [c for c in all_containers(obj) if c["name"] == container]
    assert contract.paths[role] in {m["mountPath"] for m in found["volumeMounts"]}


def test_sentry_reads_its_config_from_the_mounted_folder(default_dist: Dist) -> None:
    for obj in _workloads(default_dist):
        for container in all_containers(obj):
            if images.contract_for(container["image"]) is not images.SENTRY:
                continue
            if not IMAGE_PROGRAMS.search(" ".join(container.get("command", []))):
                continue
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["SENTRY_CONF"] == images.SENTRY.env["SENTRY_CONF"] == images.SENTRY.paths["config"]


def test_postgres_data_lives_under_the_images_data_volume(default_dist: Dist) -> None:
    (obj,) = [o for o in _workloads(default_dist) if o["metadata"]["name"] == "sentry-postgresql"]
    (server,) = [c for c in all_containers(obj) if c["name"] == "postgresql"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["PGDATA"].startswith(images.POSTGRES.paths["data"] + "/")

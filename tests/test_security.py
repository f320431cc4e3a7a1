"""Least privilege: Pod Security `restricted` for every pod, one token-less ServiceAccount,
and NetworkPolicies that allow exactly the connections the stack makes.

The Pod Security checks follow the rules of the Pod Security Standards as documented
(kubernetes.io/docs/concepts/security/pod-security-standards, Baseline and Restricted
profiles), written out here rather than trusting the namespace label alone.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from app.config import StackConfig
from constructs.pod_security import POD_SECURITY_LABELS, pod_spec_path
from tests.conftest import Dist, synth

NAMESPACE = "sentry"
SENTRY_COMPONENTS = {"web", "worker", "cron", "migrations", "cleanup"}

# --- Pod Security Standards ----------------------------------------------------------

# Baseline: capabilities that may be added; sysctls considered safe.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted: the only volume types allowed.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", []) + spec.get("ephemeralContainers", [])


def _handlers(container: dict) -> list[dict]:
    probes = [container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    hooks = [container.get("lifecycle", {}).get(h) for h in ("postStart", "preStop")]
    return [h for h in probes + hooks if h]


def baseline_violations(annotations: dict, spec: dict) -> list[str]:
    bad = []
    pod_sc = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"{field} is true")
    if pod_sc.get("windowsOptions", {}).get("hostProcess"):
        bad.append("pod hostProcess")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        bad.append("hostPath volume")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl['name']}")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            bad.append(f"AppArmor {key}={value}")
    contexts = [("pod", pod_sc)] + [(c["name"], c.get("securityContext", {})) for c in _containers(spec)]
    for name, sc in contexts:
        if sc.get("appArmorProfile", {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"{name}: AppArmor profile")
        selinux = sc.get("seLinuxOptions", {})
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            bad.append(f"{name}: SELinux options {selinux}")
        if sc.get("seccompProfile", {}).get("type") == "Unconfined":
            bad.append(f"{name}: seccomp Unconfined")
    for container in _containers(spec):
        name, sc = container["name"], container.get("securityContext", {})
        if sc.get("windowsOptions", {}).get("hostProcess"):
            bad.append(f"{name}: hostProcess")
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPABILITIES:
            bad.append(f"{name}: adds capabilities beyond baseline")
        if any(p.get("hostPort", 0) for p in container.get("ports", [])):
            bad.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        for handler in _handlers(container):
            for kind in ("httpGet", "tcpSocket"):
                if handler.get(kind, {}).get("host"):
                    bad.append(f"{name}: {kind}.host set")
    return bad


def restricted_violations(annotations: dict, spec: dict) -> list[str]:
    bad = baseline_violations(annotations, spec)
    pod_sc = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            bad.append(f"volume {volume['name']}: {kinds}")
    containers = _containers(spec)
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for container in containers:
        name, sc = container["name"], container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation not false")
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            bad.append(f"{name}: not runAsNonRoot")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        if not (pod_seccomp or sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")):
            bad.append(f"{name}: no RuntimeDefault/Localhost seccomp profile")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: does not drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities")
    return bad


def pods(dist: Dist) -> list[tuple[dict, dict, dict]]:
    """(object, pod template metadata, pod spec) of every workload."""
    found = []
    for obj in dist.objects:
        path = pod_spec_path(obj["kind"])
        if path is None:
            continue
        template = obj
        for part in path.strip("/").split("/")[:-1]:
            template = template[part]
        found.append((obj, template.get("metadata", {}), template["spec"]))
    return found


def test_the_rules_catch_what_they_should() -> None:
    ok = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    assert restricted_violations({}, ok) == []
    for broken in (
        {**ok, "hostNetwork": True},
        {**ok, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
        {**ok, "securityContext": {"runAsNonRoot": True}},
        {**ok, "containers": [{"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]},
        {**ok, "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False}}]},
        {**ok, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
    ):
        assert restricted_violations({}, broken), broken


def test_namespace_enforces_pod_security_restricted(default_dist: Dist) -> None:
    labels = default_dist.get("Namespace", NAMESPACE)["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security.")} == POD_SECURITY_LABELS
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_every_pod_meets_pod_security_restricted(any_dist: Dist) -> None:
    found = pods(any_dist)
    assert len(found) >= 7
    for obj, meta, spec in found:
        assert restricted_violations(meta.get("annotations", {}), spec) == [], obj["metadata"]["name"]


def test_every_pod_has_runtime_default_seccomp_and_drops_all_capabilities(any_dist: Dist) -> None:
    for obj, _, spec in pods(any_dist):
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, obj["metadata"]["name"]
        for container in _containers(spec):
            sc = container["securityContext"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["privileged"] is False and sc["runAsNonRoot"] is True


def test_each_image_runs_as_its_own_user_with_fsgroup(any_dist: Dist) -> None:
    # sentry, postgres: 999:999. redis:6.2-alpine: uid 999 in group 1000.
    expected = {"sentry": (999, 999), "postgresql": (999, 999), "redis": (999, 1000)}
    for obj, meta, spec in pods(any_dist):
        uid, gid = expected[meta["labels"]["app.kubernetes.io/name"]]
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["securityContext"]["runAsGroup"] == gid
        assert spec["securityContext"]["fsGroup"] == gid, obj["metadata"]["name"]
        for container in _containers(spec):
            assert container["securityContext"]["runAsUser"] == uid, container["name"]


def test_processes_write_only_to_volumes(default_dist: Dist) -> None:
    # With a read-only root filesystem, each place a process writes is a volume.
    writes = {
        ("sentry-web", "web"): {"/tmp", "/var/lib/sentry/files"},
        ("sentry-cron", "cron"): {"/tmp"},
        ("sentry-postgresql", "postgresql"): {"/var/run/postgresql", "/tmp", "/var/lib/postgresql/data"},
        ("sentry-redis", "redis"): {"/run/redis", "/data"},
    }
    specs = {obj["metadata"]["name"]: spec for obj, _, spec in pods(default_dist)}
    for (workload, name), paths in writes.items():
        (container,) = [c for c in _containers(specs[workload]) if c["name"] == name]
        mounts = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert paths <= mounts, (workload, mounts)


def test_pods_use_a_dedicated_service_account_without_token_or_rbac(any_dist: Dist) -> None:
    (account,) = any_dist.of_kind("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["name"] != "default"
    for obj, _, spec in pods(any_dist):
        assert spec["serviceAccountName"] == account["metadata"]["name"], obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        assert not any_dist.of_kind(kind)


# --- NetworkPolicies ---------------------------------------------------------------------


def _selects(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "the evaluator below understands matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict, endpoint: dict) -> bool:
    """endpoint: {"ns", "ns_labels", "labels"} for a pod, {"ip"} for an address outside the cluster."""
    if "ipBlock" in peer:
        if "ip" not in endpoint:
            return False
        ip = ipaddress.ip_address(endpoint["ip"])
        block = peer["ipBlock"]
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if "ip" in endpoint:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], endpoint["ns_labels"]):
            return False
    elif endpoint["ns"] != NAMESPACE:
        return False
    return _selects(peer.get("podSelector", {}), endpoint["labels"])


def _port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports)


def _allowed_by(policies: list[dict], direction: str, pod: dict, other: dict, port: int, protocol: str) -> bool:
    """Whether the policies selecting `pod` let `other` in (Ingress) or let `pod` reach it (Egress)."""
    if "ip" in pod or pod["ns"] != NAMESPACE:
        return True  # not governed by this namespace's policies
    selecting = [
        p
        for p in policies
        if _selects(p["spec"]["podSelector"], pod["labels"]) and direction in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(p, other) for p in peers)) and _port_matches(
                rule.get("ports"), port, protocol
            ):
                return True
    return False


def connects(policies: list[dict], src: dict, dst: dict, port: int, protocol: str = "TCP") -> bool:
    return _allowed_by(policies, "Egress", src, dst, port, protocol) and _allowed_by(
        policies, "Ingress", dst, src, port, protocol
    )


def _pod(labels: dict, ns: str = NAMESPACE) -> dict:
    return {"ns": ns, "ns_labels": {"kubernetes.io/metadata.name": ns}, "labels": labels}


def stack_pods(dist: Dist) -> dict[str, dict]:
    return {meta["labels"]["app.kubernetes.io/component"]: _pod(meta["labels"]) for _, meta, _ in pods(dist)}


STRANGER = _pod({"app": "something-else"})
OTHER_NAMESPACE = _pod({"app.kubernetes.io/name": "sentry", "app.kubernetes.io/component": "web"}, ns="other")
KUBE_DNS = _pod({"k8s-app": "kube-dns"}, ns="kube-system")
GITHUB = {"ip": "140.82.121.4"}
API_SERVER = {"ip": "10.96.0.1"}
CLOUD_METADATA = {"ip": "169.254.169.254"}


def test_default_deny_selects_every_pod_in_both_directions(any_dist: Dist) -> None:
    policies = any_dist.of_kind("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert any(not p["spec"].get("egress") and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in deny)
    for component, pod in stack_pods(any_dist).items():
        specific = [
            p for p in policies if p["spec"]["podSelector"] and _selects(p["spec"]["podSelector"], pod["labels"])
        ]
        assert specific, f"no NetworkPolicy of its own selects {component}"


def test_postgres_accepts_only_sentry_pods_migrations_and_backup(any_dist: Dist) -> None:
    policies, stack = any_dist.of_kind("NetworkPolicy"), stack_pods(any_dist)
    allowed = SENTRY_COMPONENTS | {"backup", "restore"}
    for name, pod in stack.items():
        assert connects(policies, pod, stack["postgresql"], 5432) == (name in allowed), name
    for outsider in (STRANGER, OTHER_NAMESPACE):
        assert not connects(policies, outsider, stack["postgresql"], 5432)
    assert not connects(policies, stack["web"], stack["postgresql"], 5433)


def test_redis_accepts_only_sentry_pods(any_dist: Dist) -> None:
    policies, stack = any_dist.of_kind("NetworkPolicy"), stack_pods(any_dist)
    for name, pod in stack.items():
        assert connects(policies, pod, stack["redis"], 6379) == (name in SENTRY_COMPONENTS), name
    for outsider in (STRANGER, OTHER_NAMESPACE):
        assert not connects(policies, outsider, stack["redis"], 6379)


INGRESS_CONTROLLER = _pod({"app.kubernetes.io/name": "ingress-nginx"}, ns="ingress-nginx")


def test_web_is_reachable_on_9000_only(any_dist: Dist) -> None:
    policies, stack = any_dist.of_kind("NetworkPolicy"), stack_pods(any_dist)
    # A client elsewhere in the cluster or outside it: on a NodePort (default), everyone; behind
    # the Ingress as the only way in (full), the Ingress controller only. (A stranger in this
    # namespace is held back by its own default-deny egress.)
    behind_ingress = any_dist.get("Service", "sentry-web")["spec"]["type"] == "ClusterIP"
    assert behind_ingress == bool(any_dist.of_kind("Ingress"))
    for client in (INGRESS_CONTROLLER, OTHER_NAMESPACE, {"ip": "203.0.113.50"}):
        assert connects(policies, client, stack["web"], 9000) == (client is INGRESS_CONTROLLER or not behind_ingress)
        assert not connects(policies, client, stack["web"], 9001)
        for name in set(stack) - {"web"}:
            assert not connects(policies, client, stack[name], 9000), name


def _trusts_forwarded_headers(dist: Dist) -> bool:
    (web,) = [c for c in pods(dist) if c[0]["metadata"]["name"] == "sentry-web"]
    env = {e["name"]: e.get("value") for e in web[2]["containers"][0]["env"]}
    return env["SENTRY_TRUSTED_PROXY"] == "true"


BEHIND_INGRESS = "sentry:\n  web:\n    service_type: ClusterIP\n    ingress: {enabled: true, class_name: nginx}\n"


@pytest.mark.parametrize(
    ("values", "trusted", "admitted", "refused"),
    [
        # The Ingress the only way in: web trusts X-Forwarded-*, so only the controller's
        # namespace (network.ingress_namespace) may reach it.
        (BEHIND_INGRESS, True, [INGRESS_CONTROLLER], [OTHER_NAMESPACE, {"ip": "203.0.113.50"}]),
        (
            BEHIND_INGRESS + "network: {ingress_namespace: traefik}\n",
            True,
            [_pod({"app": "traefik"}, ns="traefik")],
            [INGRESS_CONTROLLER, OTHER_NAMESPACE],
        ),
        # A controller on the host network, said with null: then anyone may (docs/security.md).
        (
            BEHIND_INGRESS + "network: {ingress_namespace: null}\n",
            True,
            [INGRESS_CONTROLLER, OTHER_NAMESPACE, {"ip": "203.0.113.50"}],
            [],
        ),
        # A NodePort beside the Ingress: the headers are not trusted, and every client may come.
        (
            "sentry:\n  web:\n    service_type: NodePort\n    ingress: {enabled: true}\n",
            False,
            [INGRESS_CONTROLLER, OTHER_NAMESPACE],
            [],
        ),
    ],
)
def test_behind_the_ingress_only_its_controller_reaches_web(
    synth_once, values: str, trusted: bool, admitted: list[dict], refused: list[dict]
) -> None:  # type: ignore[no-untyped-def]
    dist = synth_once(values)
    policies, stack = dist.of_kind("NetworkPolicy"), stack_pods(dist)
    for client in admitted:
        assert connects(policies, client, stack["web"], 9000), client
    for client in refused:
        assert not connects(policies, client, stack["web"], 9000), client
    assert _trusts_forwarded_headers(dist) == trusted


def test_every_pod_resolves_names_through_cluster_dns_only(any_dist: Dist) -> None:
    policies = any_dist.of_kind("NetworkPolicy")
    for name, pod in stack_pods(any_dist).items():
        assert connects(policies, pod, KUBE_DNS, 53, "UDP") and connects(policies, pod, KUBE_DNS, 53, "TCP"), name
        assert not connects(policies, pod, {"ip": "8.8.8.8"}, 53, "UDP"), name


def test_only_web_worker_and_cron_reach_the_internet_and_never_the_cluster(any_dist: Dist) -> None:
    policies, stack = any_dist.of_kind("NetworkPolicy"), stack_pods(any_dist)
    for name, pod in stack.items():
        assert connects(policies, pod, GITHUB, 443) == (name in {"web", "worker", "cron"}), name
        for target in (API_SERVER, CLOUD_METADATA):
            for port in (80, 443, 6443):
                assert not connects(policies, pod, target, port), (name, target)
        assert not connects(policies, pod, GITHUB, 22), name


def test_mail_and_offsite_copy_open_only_their_ports(full_dist: Dist, default_dist: Dist) -> None:
    policies, stack = full_dist.of_kind("NetworkPolicy"), stack_pods(full_dist)
    assert connects(policies, stack["worker"], {"ip": "198.51.100.7"}, 587)  # smtp.port of FULL_VALUES
    assert not connects(default_dist.of_kind("NetworkPolicy"), stack_pods(default_dist)["worker"], GITHUB, 587)
    assert connects(policies, stack["backup"], {"ip": "198.51.100.8"}, 9000)  # the S3 endpoint's port
    assert not connects(policies, stack["backup"], GITHUB, 443)
    assert not connects(policies, stack["restore"], GITHUB, 443)


def test_egress_is_configurable(tmp_path: Path) -> None:
    code, dist = synth(
        tmp_path,
        "network:\n  sentry_egress_cidrs: [203.0.113.0/24, 10.20.0.5/32]\n  sentry_egress_ports: [443, 80]\n"
        "  dns_namespace: null\n",
    )
    assert code == 0
    policies, stack = dist.of_kind("NetworkPolicy"), stack_pods(dist)
    assert connects(policies, stack["web"], {"ip": "203.0.113.9"}, 80)
    assert connects(policies, stack["web"], {"ip": "10.20.0.5"}, 443)  # listed itself: not carved out
    assert not connects(policies, stack["web"], {"ip": "10.20.0.6"}, 443)
    assert not connects(policies, stack["web"], GITHUB, 443)
    assert connects(policies, stack["redis"], {"ip": "169.254.20.10"}, 53, "UDP")  # node-local DNS


def test_policies_can_be_turned_off(tmp_path: Path) -> None:
    code, dist = synth(tmp_path, "network:\n  policies: false\n")
    assert code == 0
    assert not dist.of_kind("NetworkPolicy")


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "not-a-cidr", "300.0.0.0/8"])
def test_bad_cidrs_are_rejected(cidr: str) -> None:
    with pytest.raises(ValueError, match="CIDR"):
        StackConfig.model_validate({"network": {"sentry_egress_cidrs": [cidr]}})


def test_restore_reaches_postgres_with_the_policies_applied_before_restore_mode(
    default_dist: Dist, full_dist: Dist
) -> None:
    # The runbook applies only 90-restore.k8s.yaml while Sentry is scaled down, so the
    # policies that let the restore Job reach PostgreSQL must already be in the cluster
    # from normal operation: in 20-sentry of a configuration *without* restore enabled.
    restore_file = full_dist.path / "90-restore.k8s.yaml"
    assert "NetworkPolicy" not in {d["kind"] for d in yaml.safe_load_all(restore_file.read_text()) if d}
    restore_pod = stack_pods(full_dist)["restore"]
    normal = default_dist.of_kind("NetworkPolicy")
    assert connects(normal, restore_pod, stack_pods(default_dist)["postgresql"], 5432)


# --- A namespace shared with other workloads (namespace_shared) ----------------------------

# A neighbour: a pod of another workload in the stack's (shared) namespace.
NEIGHBOUR = _pod({"app": "grafana"})


@pytest.fixture(scope="module")
def shared_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("shared"), "namespace_shared: true\n")
    assert code == 0
    return dist


def test_a_shared_namespace_is_neither_created_nor_labelled(shared_dist: Dist, tmp_path: Path) -> None:
    assert not shared_dist.of_kind("Namespace")
    assert not (shared_dist.path / "00-namespace.k8s.yaml").exists()
    assert "pod-security.kubernetes.io" not in shared_dist.text()
    # Kubernetes' own default namespace, once its owner says the stack may share it.
    code, dist = synth(tmp_path, "namespace: default\nnamespace_shared: true\n")
    assert code == 0 and not dist.of_kind("Namespace")
    assert {o["metadata"]["namespace"] for o in dist.objects} == {"default"}


def test_in_a_shared_namespace_the_policies_leave_other_pods_alone(shared_dist: Dist) -> None:
    policies = shared_dist.of_kind("NetworkPolicy")
    assert all(p["spec"]["podSelector"] for p in policies), "no policy selects every pod of the namespace"
    stack = stack_pods(shared_dist)
    # The neighbours talk to each other, the internet and the API server as before...
    assert connects(policies, NEIGHBOUR, STRANGER, 8080)
    assert connects(policies, NEIGHBOUR, GITHUB, 443) and connects(policies, NEIGHBOUR, API_SERVER, 6443)
    assert connects(policies, NEIGHBOUR, {"ip": "8.8.8.8"}, 53, "UDP")
    # ...while the stack's own pods are as locked down as in a namespace of their own.
    for name, pod in stack.items():
        assert not connects(policies, pod, API_SERVER, 443), name
        assert not connects(policies, pod, NEIGHBOUR, 8080), name
        assert connects(policies, pod, KUBE_DNS, 53, "UDP"), name
        assert not connects(policies, pod, {"ip": "8.8.8.8"}, 53, "UDP"), name
    assert not connects(policies, NEIGHBOUR, stack["postgresql"], 5432)
    assert not connects(policies, NEIGHBOUR, stack["redis"], 6379)
    assert connects(policies, stack["web"], stack["postgresql"], 5432)


def test_the_default_deny_selects_exactly_the_stacks_pods_in_a_shared_namespace(
    shared_dist: Dist, full_dist: Dist
) -> None:
    (deny,) = [p for p in shared_dist.of_kind("NetworkPolicy") if p["metadata"]["name"] == "sentry-default-deny"]
    selector = deny["spec"]["podSelector"]
    everything = {**stack_pods(full_dist), **stack_pods(shared_dist)}  # restore, metrics senders too
    assert all(_selects(selector, pod["labels"]) for pod in everything.values())
    assert not _selects(selector, NEIGHBOUR["labels"])
    other_release = {**stack_pods(shared_dist)["web"]["labels"], "app.kubernetes.io/instance": "other"}
    assert not _selects(selector, other_release), "another release's pods are its own policies' business"

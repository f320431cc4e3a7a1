"""RedisBroker: Redis as Sentry's Celery broker and cache, with a password and AOF on a PVC."""

from __future__ import annotations

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.checks import Image, PullPolicy, props
from constructs.endpoints import NetworkTarget
from constructs.kube import (
    claim,
    claim_volume,
    metadata,
    plain_env,
    pod_metadata,
    secret_env,
    service_for,
    shell_command,
    statefulset_claim_name,
)
from constructs.naming import Component, own_component
from constructs.props import PodSettings, Resources, Storage, resources
from constructs.quantities import parse_memory
from constructs.secret_keys import SecretKeys
from constructs.workload import (
    command_probe,
    container_resources,
    container_security,
    finish,
    pod_security,
    pull_policy,
)

REDIS_PORT = 6379
# The redis image's own user and group (constructs/images.py). Run as them directly:
# the entrypoint's root-only step (chown of /data, then gosu) is not needed, because
# fsGroup makes the data volume group-writable. Redis writes only /data (the volume)
# and /run/redis (an emptyDir); the root filesystem is read-only.
REDIS_UID = images.REDIS.uid
DATA_MOUNT = images.REDIS.paths["data"]
# Half the container's memory limit: the other half is room for an AOF rewrite's forked
# child (copy-on-write pages of a busy dataset) and for client buffers, so Redis refuses
# writes (see redis-server.sh) long before the kernel would OOM-kill it.
MAXMEMORY_SHARE_OF_LIMIT = 0.5
MAXMEMORY_POLICY = "volatile-lru"
REDIS_GID = images.REDIS.gid


@props
class RedisOptions:
    """What a user chooses about the in-cluster Redis."""

    image: Image = "redis:6.2.14-alpine"
    """Redis image. Default: redis:6.2.14-alpine (its uid/gid 999/1000 are the pod's)."""
    storage: Storage = Storage(size="1Gi")
    """The AOF volume (a claim of its own, so it can grow). Default: 1Gi, the cluster's default
    storage class."""
    resources: Resources = resources("50m", "64Mi", "250m", "256Mi")
    """Requests and limits; Redis's maxmemory is half the memory limit. Default: 50m / 64Mi
    requested, 250m / 256Mi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class RedisBrokerProps(RedisOptions):
    """Props of RedisBroker: the options, and how it runs."""

    secret: kplus.ISecret
    """Secret holding the Redis password."""
    component: Component | None = None
    """Names and labels of the Redis objects. Default: derived from the construct's id
    (`<id>-redis`) and the image's tag."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent, so minikube can use a preloaded image."""
    service_account: str | None = None
    """ServiceAccount of the pod. Default: the namespace's default (no token either way)."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret` (`redis_password`). Default: the stack's names."""


class RedisBroker(Construct):
    """A one-replica Redis StatefulSet with a required password, AOF persistence and a Service.

    The password is read from a Secret into the environment and written to a config
    file by the start script: it never appears on a command line.
    """

    def __init__(self, scope: Construct, id: str, props: RedisBrokerProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.component = comp = own_component(id, props.component, "redis", "redis", props.image)
        self.service = service_for(
            self, comp, [kplus.ServicePort(name="redis", port=REDIS_PORT, target_port=REDIS_PORT)]
        )
        self.host = comp.name
        self.port = REDIS_PORT
        self.image = props.image
        self.client_image = props.image
        self.db = 0
        self.secret = props.secret
        self.network = NetworkTarget(port=REDIS_PORT, pods=comp)
        self.maxmemory = int(parse_memory(props.resources.limits.memory) * MAXMEMORY_SHARE_OF_LIMIT)

        self.data_claim = claim(self, "data-claim", statefulset_claim_name(comp), comp, props.storage)
        data = claim_volume(self, "data", self.data_claim.name, "data")
        ping = ["/bin/sh", "-c", f"redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping | grep -q PONG"]
        self.statefulset = kplus.StatefulSet(
            self,
            "statefulset",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            replicas=1,
            service=self.service,
            automount_service_account_token=False,
            security_context=pod_security(REDIS_UID, REDIS_GID),
            containers=[
                kplus.ContainerProps(
                    name="redis",
                    image=props.image,
                    image_pull_policy=pull_policy(props.image_pull_policy),
                    command=shell_command("redis-server"),
                    port_number=REDIS_PORT,
                    env_variables={
                        "REDIS_PASSWORD": secret_env(props.secret, props.secret_keys.redis_password),
                        # redis-cli reads the password from here, so probes pass no -a flag.
                        "REDISCLI_AUTH": secret_env(props.secret, props.secret_keys.redis_password),
                        "REDIS_PORT": kplus.EnvValue.from_value(str(REDIS_PORT)),
                        "REDIS_DATA_DIR": kplus.EnvValue.from_value(DATA_MOUNT),
                        "REDIS_MAXMEMORY": kplus.EnvValue.from_value(str(self.maxmemory)),
                        "REDIS_MAXMEMORY_POLICY": kplus.EnvValue.from_value(MAXMEMORY_POLICY),
                    },
                    resources=container_resources(props.resources),
                    security_context=container_security(REDIS_UID, REDIS_GID),
                    startup=command_probe(ping, period=2, failures=60, timeout=3),
                    readiness=command_probe(ping, period=5, failures=3, timeout=3),
                    liveness=command_probe(ping, period=10, failures=6),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path="/run/redis",
                            volume=kplus.Volume.from_empty_dir(self, "run", "run"),
                        ),
                        kplus.VolumeMount(path=DATA_MOUNT, volume=data),
                    ],
                )
            ],
        )
        finish(
            self.statefulset,
            comp,
            pods=props.pods,
            service_account=props.service_account,
            sizes={"redis": props.resources},
        )

    def client_env(self, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        """What a redis-cli client of this server needs: host, port and the password
        (REDISCLI_AUTH, which redis-cli reads instead of an -a flag)."""
        return {
            **plain_env({"REDIS_HOST": self.host, "REDIS_PORT": str(self.port)}),
            "REDISCLI_AUTH": secret_env(secret or self.secret, self.props.secret_keys.redis_password),
        }

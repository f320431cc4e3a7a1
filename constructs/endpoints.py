"""What a PostgreSQL or a Redis server is to its clients: small interfaces, and external servers.

Sentry's constructs (SentryRuntime, the migrations, the waits, the NetworkPolicies) depend
on these interfaces only, never on the concrete classes. The in-cluster servers
(`PostgresWithBackup`, `RedisBroker`) implement them, and so do the external ones here: a
managed PostgreSQL (RDS, Cloud SQL, ...) or Redis (ElastiCache, Memorystore, ...) that the
stack only connects to. Like `aws-ecs-patterns` taking a queue or creating one.

An endpoint tells a client:
- where: `host`, `port` (and `database`/`user`, or `db` for Redis);
- how to authenticate and connect: `client_env()`, the variables of the standard clients
  (libpq's PG*, redis-cli's REDISCLI_AUTH, or REDIS_AUTH=none for a Redis without a
  password), passwords always by secretKeyRef, and
  `client_mounts()` (a CA certificate for `sslmode: verify-full`);
- which client image matches the server (`client_image`: psql, pg_isready, pg_dump);
- where the NetworkPolicies must let clients go (`network`: the server's pods, or its CIDRs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, runtime_checkable

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import Cidr, HostOrIp, Image, KubeName, Pattern, Port, Range, fail, props
from constructs.kube import plain_env, secret_env
from constructs.naming import Component
from constructs.secret_keys import KeyName, SecretKeys

POSTGRES_CA_MOUNT = "/etc/sentry-k8s/postgres-ca"


@dataclass(frozen=True)
class NetworkTarget:
    """Where clients connect: the server's own pods in this namespace (which then get an
    ingress policy too), or addresses outside the cluster."""

    port: int
    """The server's TCP port."""
    pods: Component | None = None
    """The server's pods, when it runs in this namespace. Default: none (outside the cluster)."""
    cidrs: tuple[str, ...] = ()
    """The server's addresses, when it runs outside the cluster. Default: none."""


@runtime_checkable
class PostgresEndpoint(Protocol):
    """A PostgreSQL server as its clients see it."""

    host: str
    port: int
    database: str
    user: str
    client_image: str
    """An image whose psql/pg_isready/pg_dump match the server's major version (or newer)."""
    can_dump_roles: bool
    """Whether `user` may read every role's attributes (pg_dumpall --globals-only): a
    superuser of an in-cluster server, but not the owner role of a managed one."""
    tls: bool
    """Whether clients talk TLS to it (an sslmode other than disable)."""
    network: NetworkTarget

    def client_env(
        self, database: str | None = None, secret: kplus.ISecret | None = None
    ) -> dict[str, kplus.EnvValue]: ...

    def client_mounts(self, scope: Construct) -> list[kplus.VolumeMount]: ...


@runtime_checkable
class RedisEndpoint(Protocol):
    """A Redis server as its clients see it."""

    host: str
    port: int
    db: int
    client_image: str
    """An image with redis-cli."""
    network: NetworkTarget

    def client_env(self, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        """REDIS_HOST, REDIS_PORT, and REDISCLI_AUTH (the password, by secretKeyRef), or
        REDIS_AUTH=none for a server that takes no password."""
        ...


def host_cidrs(host: str, cidrs: Sequence[str]) -> tuple[str, ...]:
    """The configured CIDRs, plus the host's own /32 (/128) when it is an IP address."""
    found = list(cidrs)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return tuple(found)
    own = str(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))
    return tuple(found if own in found else [*found, own])


@props
class CaCertificate:
    """A CA certificate kept in a Secret or a ConfigMap of the namespace."""

    key: KeyName = "ca.crt"
    """Key of the certificate (PEM). Default: ca.crt."""
    secret: KubeName | None = None
    """The Secret holding it; give this or `config_map`. Default: none."""
    config_map: KubeName | None = None
    """The ConfigMap holding it; give this or `secret`. Default: none."""

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.config_map is None):
            fail(self, "secret", "give exactly one of secret or config_map")


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# libpq matches a host given as an IP address against a certificate's IP addresses only since
# PostgreSQL 15; Sentry 9.1.2's psycopg2-binary carries libpq 11, which compares the address
# with the certificate's DNS names (or its CN) as text, so a server certificate issued for its
# name (RDS, Cloud SQL) never verifies, and one with the address as an IP SAN fails as well.
VERIFY_FULL_BY_IP = (
    "verify-full cannot verify a server reached by its IP address: Sentry 9.1.2's libpq 11 "
    "(psycopg2-binary in sentry:9.1.2) matches the host only against the certificate's DNS names, not "
    "its IP addresses (that needs libpq 15). Give host as the name in the server's certificate, or "
    "choose sslmode verify-ca (the CA is checked, the name is not)"
)


def ip_address_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


PostgresRole = Annotated[
    str, Pattern(r"[a-z_][a-z0-9_]{0,62}", "a PostgreSQL role name: lower-case letters, digits and '_'")
]
PostgresDatabase = Annotated[
    str, Pattern(r"[a-z_][a-z0-9_-]{0,62}", "a database name: lower-case letters, digits, '_' and '-'")
]


@props
class ExternalPostgresProps:
    """Props of ExternalPostgres."""

    host: HostOrIp
    """Host name or IP address of the server."""
    secret: kplus.ISecret
    """Secret holding the password of `user`."""
    client_image: Image
    """Image of the clients (waits, backups, restores): its major version must be
    at least the server's, or pg_dump refuses to dump it."""
    port: Port = 5432
    """Port of the server. Default: 5432."""
    database: PostgresDatabase = "sentry"
    """Sentry's database. Default: sentry."""
    user: PostgresRole = "sentry"
    """The role Sentry connects as, the database's owner. Default: sentry."""
    sslmode: SslMode = "verify-full"
    """libpq sslmode of every client. Default: verify-full, which needs `ca`, and a `host` given
    by name (Sentry's libpq 11 cannot verify an IP address)."""
    ca: CaCertificate | None = None
    """The server's CA certificate, for verify-ca and verify-full. Default: none."""
    cidrs: Sequence[Cidr] = ()
    """The server's addresses, for the NetworkPolicies' egress (an IP `host` adds its own).
    Default: none."""
    can_dump_roles: bool = False
    """Whether `user` may read every role (pg_dumpall --globals-only): a managed server's
    owner role may not. Default: false, so backups hold the Sentry database only."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret` (`postgres_password`). Default: the stack's names."""

    def __post_init__(self) -> None:
        if not self.host:
            fail(self, "host", "is required")
        if self.sslmode == "verify-full" and ip_address_host(self.host):
            fail(self, "sslmode", f"{VERIFY_FULL_BY_IP} (host {self.host})")
        if self.sslmode in ("verify-ca", "verify-full") and self.ca is None:
            fail(
                self,
                "ca",
                f"sslmode {self.sslmode} needs ca (the server's CA certificate); "
                "or choose sslmode require (encrypted, server not verified)",
            )


class ExternalPostgres(Construct):
    """A PostgreSQL server outside the cluster. It emits nothing: it only tells clients
    how to reach it (libpq variables, TLS settings, the CA certificate's mount)."""

    def __init__(self, scope: Construct, id: str, props: ExternalPostgresProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.host, self.port, self.database, self.user = props.host, props.port, props.database, props.user
        self.client_image = props.client_image
        self.can_dump_roles = props.can_dump_roles
        self.secret = props.secret
        self.sslmode = props.sslmode
        self.tls = props.sslmode != "disable"
        self.ca = props.ca
        self.network = NetworkTarget(port=props.port, cidrs=host_cidrs(props.host, props.cidrs))
        # One CA volume per pod (scope), however many of its containers mount it.
        self._mounts: dict[int, tuple[Construct, list[kplus.VolumeMount]]] = {}

    def client_env(self, database: str | None = None, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        values = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": database or self.database,
            # libpq reads these itself, in psql and pg_dump as in Sentry's psycopg2.
            "PGSSLMODE": self.sslmode,
        }
        if self.ca is not None:
            values["PGSSLROOTCERT"] = f"{POSTGRES_CA_MOUNT}/{self.ca.key}"
        password = secret_env(secret or self.secret, self.props.secret_keys.postgres_password)
        return {**plain_env(values), "PGPASSWORD": password}

    def client_mounts(self, scope: Construct) -> list[kplus.VolumeMount]:
        if self.ca is None:
            return []
        if id(scope) not in self._mounts:
            self._mounts[id(scope)] = (scope, self._ca_mounts(scope))
        return self._mounts[id(scope)][1]

    def _ca_mounts(self, scope: Construct) -> list[kplus.VolumeMount]:
        assert self.ca is not None
        if self.ca.secret:
            source = kplus.Secret.from_secret_name(scope, "postgres-ca-secret", self.ca.secret)
            volume = kplus.Volume.from_secret(scope, "postgres-ca", source, name="postgres-ca")
        else:
            assert self.ca.config_map
            config_map = kplus.ConfigMap.from_config_map_name(scope, "postgres-ca-config-map", self.ca.config_map)
            volume = kplus.Volume.from_config_map(scope, "postgres-ca", config_map, name="postgres-ca")
        return [kplus.VolumeMount(path=POSTGRES_CA_MOUNT, volume=volume, read_only=True)]


@props
class ExternalRedisProps:
    """Props of ExternalRedis."""

    host: HostOrIp
    """Host name or IP address of the server."""
    secret: kplus.ISecret
    """Secret holding the Redis password (unused with `password=False`)."""
    port: Port = 6379
    """Port of the server. Default: 6379."""
    db: Annotated[int, Range(0, 15)] = 0
    """Database number Sentry uses. Default: 0."""
    client_image: Image = "redis:6.2.14-alpine"
    """Image with redis-cli, for the waits. Default: redis:6.2.14-alpine."""
    cidrs: Sequence[Cidr] = ()
    """The server's addresses, for the NetworkPolicies' egress (an IP `host` adds its own).
    Default: none."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret` (`redis_password`). Default: the stack's names."""
    password: bool = True
    """Whether the server requires a password (`redis_password` in `secret`). False for one
    that allows none, such as ElastiCache without in-transit encryption (it allows AUTH only
    with TLS, which Sentry 9.1.2 cannot use): then only the network keeps others out (its
    security group, NetworkPolicies; docs/cluster.md). Default: true."""

    def __post_init__(self) -> None:
        if not self.host:
            fail(self, "host", "is required")


class ExternalRedis(Construct):
    """A Redis server outside the cluster; emits nothing. Sentry 9.1.2 cannot use TLS to
    Redis (see docs/cluster.md), so the connection is plain TCP, with the password unless
    the server takes none (`password=False`)."""

    def __init__(self, scope: Construct, id: str, props: ExternalRedisProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.host, self.port, self.db = props.host, props.port, props.db
        self.client_image = props.client_image
        self.secret = props.secret
        self.network = NetworkTarget(port=props.port, cidrs=host_cidrs(props.host, props.cidrs))

    def client_env(self, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        where = {"REDIS_HOST": self.host, "REDIS_PORT": str(self.port)}
        if not self.props.password:
            # Said explicitly, so that a missing password never passes for "none".
            return plain_env({**where, "REDIS_AUTH": "none"})
        return {
            **plain_env(where),
            "REDISCLI_AUTH": secret_env(secret or self.secret, self.props.secret_keys.redis_password),
        }

"""The image contract: what the manifests rely on inside each image, and where it is written.

The pods skip the images' entrypoints (they start as the images' own users, so the
entrypoints' root-only steps would be skipped anyway) and call programs by path, run as
fixed uids and mount volumes where the images keep their data. Each of those facts is
recorded here once, with the Dockerfile line it comes from, and the constructs take them
from here. tests/test_image_contract.py checks every synthesized container against its
image's contract: a program called by absolute path, the uid and gid, the data paths.

A wrong fact here stops pods in a cluster and nowhere else (an earlier version called
/usr/bin/tini, which the Sentry image does not have: no Sentry container could start),
so a change here needs the source checked again, at the commit named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageContract:
    """The paths, ids and variables of one image that the manifests depend on."""

    image: str
    """The image (and tag) the contract was read from."""
    source: str
    """Where it was read: repository, Dockerfile path and commit."""
    uid: int
    """The image's own unprivileged user, which the pods run as."""
    gid: int
    """That user's primary group (the pods' fsGroup)."""
    executables: Mapping[str, str]
    """Programs the manifests or their scripts run, with their absolute paths in the image."""
    paths: Mapping[str, str] = field(default_factory=dict)
    """Directories the manifests mount or point at, by role."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment the image sets (ENV) that the manifests rely on."""

    def executable(self, name: str) -> str:
        return self.executables[name]


SENTRY = ImageContract(
    image="sentry:9.1.2",
    source="getsentry/docker-sentry 9.1/Dockerfile and 9.1/docker-entrypoint.sh at 09a7761 (Sentry 9.1.2)",
    # `groupadd -r sentry && useradd -r -m -g sentry sentry`, the image's first step on
    # python:2.7.16-slim-stretch: Debian gives the first system ids from the top, 999:999.
    uid=999,
    gid=999,
    executables={
        # `wget -O /usr/local/bin/tini ...` (tini 0.18.0, lines 50-73). The entrypoint finds
        # it on PATH; there is no /usr/bin/tini.
        "tini": "/usr/local/bin/tini",
        # `pip install sentry-9.1.2-py27-none-any.whl` into the base image's Python, which
        # docker-library/python builds into /usr/local: console scripts land in /usr/local/bin.
        "sentry": "/usr/local/bin/sentry",
        # The base image's Python 2.7 (`make install` into /usr/local: python -> python2 ->
        # python2.7), with Sentry's psycopg2: the migration Job's lock holder runs on it.
        "python": "/usr/local/bin/python",
        # Debian stretch's bash (essential package); the migration script needs pipefail.
        "bash": "/bin/bash",
        "sh": "/bin/sh",
    },
    paths={
        # ENV SENTRY_CONF=/etc/sentry (sentry.conf.py and config.yml; mounted over here).
        "config": "/etc/sentry",
        # ENV SENTRY_FILESTORE_DIR=/var/lib/sentry/files, VOLUME /var/lib/sentry/files.
        "filestore": "/var/lib/sentry/files",
    },
    env={"SENTRY_CONF": "/etc/sentry", "SENTRY_FILESTORE_DIR": "/var/lib/sentry/files"},
)

SENTRY_AUTH = ImageContract(
    image="sentry-k8s/sentry-auth:9.1.2",
    # FROM sentry:9.1.2-onbuild (getsentry/docker-sentry 9.1/onbuild/Dockerfile: FROM sentry:9.1,
    # WORKDIR /usr/src/sentry, pip install -r requirements.txt); no USER, no path of its own.
    source="images/sentry-auth/Dockerfile (this repository), on getsentry/docker-sentry 9.1/onbuild at 09a7761",
    uid=SENTRY.uid,
    gid=SENTRY.gid,
    executables=SENTRY.executables,
    paths=SENTRY.paths,
    env=SENTRY.env,
)

POSTGRES = ImageContract(
    image="postgres:9.6.24",
    # The tag 9.6.24 is the stretch variant (versions.json: "debian": "stretch").
    source="docker-library/postgres 9.6/stretch/Dockerfile and docker-entrypoint.sh at f99ce49 (9.6.24)",
    # `groupadd -r postgres --gid=999; useradd -r -g postgres --uid=999 ... postgres`.
    uid=999,
    gid=999,
    executables={
        # ENV PATH $PATH:/usr/lib/postgresql/$PG_MAJOR/bin, which holds the server and its
        # clients; the entrypoint is /usr/local/bin/docker-entrypoint.sh.
        "pg_isready": "/usr/lib/postgresql/9.6/bin/pg_isready",
        "psql": "/usr/lib/postgresql/9.6/bin/psql",
        "pg_dump": "/usr/lib/postgresql/9.6/bin/pg_dump",
        "pg_dumpall": "/usr/lib/postgresql/9.6/bin/pg_dumpall",
        "pg_restore": "/usr/lib/postgresql/9.6/bin/pg_restore",
        # The restore's ANALYZE (postgresql-client-9.6, beside the others).
        "vacuumdb": "/usr/lib/postgresql/9.6/bin/vacuumdb",
        "docker-entrypoint.sh": "/usr/local/bin/docker-entrypoint.sh",
        "bash": "/bin/bash",
        "sh": "/bin/sh",
    },
    paths={
        # ENV PGDATA /var/lib/postgresql/data, VOLUME /var/lib/postgresql/data.
        "data": "/var/lib/postgresql/data",
        # mkdir -p /var/run/postgresql ... chmod 2777: the server's socket directory.
        "socket": "/var/run/postgresql",
    },
    env={"PGDATA": "/var/lib/postgresql/data", "PG_MAJOR": "9.6"},
)

REDIS = ImageContract(
    image="redis:6.2.14-alpine",
    # `addgroup -S -g 1000 redis && adduser -S -G redis -u 999 redis` (alpine has a gid 999).
    source="docker-library/redis 6.2/alpine/Dockerfile at 1bca858 (6.2.14)",
    uid=999,
    gid=1000,
    executables={
        # `make -C /usr/src/redis install` (PREFIX /usr/local).
        "redis-server": "/usr/local/bin/redis-server",
        "redis-cli": "/usr/local/bin/redis-cli",
        "sh": "/bin/sh",
    },
    # VOLUME /data, WORKDIR /data.
    paths={"data": "/data"},
)

REDIS_EXPORTER = ImageContract(
    image="oliver006/redis_exporter:v1.67.0",
    # The default tag is the `scratch-release` stage: the static binary alone, then
    # `USER 59000:59000` and `ENTRYPOINT [ "/redis_exporter" ]`.
    source="oliver006/redis_exporter Dockerfile at e2bb7fd (v1.67.0)",
    uid=59000,
    gid=59000,
    # `COPY --from=builder /redis_exporter /redis_exporter`; the image has no shell.
    executables={"redis_exporter": "/redis_exporter"},
)

CONTRACTS: tuple[ImageContract, ...] = (SENTRY, SENTRY_AUTH, POSTGRES, REDIS, REDIS_EXPORTER)


def contract_for(image: str) -> ImageContract | None:
    """The contract of `image` (a tag or a digest of one of the images above; another tag of
    the same repository counts as the same image), or None for an image the stack does not
    know (a user's own)."""
    repository = image.split("@", 1)[0].rsplit(":", 1)[0]
    for contract in CONTRACTS:
        if contract.image.rsplit(":", 1)[0] == repository:
            return contract
    return None

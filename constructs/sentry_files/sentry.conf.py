# Sentry 9.1 settings for Kubernetes, mounted from a ConfigMap at /etc/sentry/sentry.conf.py
# in place of the image's own file.
#
# No secret and no site-specific value lives here: everything comes from environment
# variables that the manifests set, secrets through secretKeyRef. So the ConfigMap is safe
# to review, diff and commit, and one file serves every install.
#
# The file runs under Python 2.7 inside the sentry:9.1.2 image and under Python 3 in this
# project's tests, so it is written for both: no f-strings, no type hints, no print, and
# ASCII only (Python 2 rejects non-ASCII source that has no coding line).
#
# Environment (empty counts as unset):
#   SENTRY_SECRET_KEY                       required; signs sessions and tokens
#   SENTRY_POSTGRES_HOST (required), SENTRY_POSTGRES_PORT (5432), SENTRY_DB_NAME (sentry),
#   SENTRY_DB_USER (sentry), SENTRY_DB_PASSWORD
#   SENTRY_REDIS_HOST (required), SENTRY_REDIS_PORT (6379), SENTRY_REDIS_PASSWORD,
#   SENTRY_REDIS_DB (0)
#   SENTRY_FILESTORE_DIR (/var/lib/sentry/files); or the s3 filestore: SENTRY_S3_BUCKET,
#   SENTRY_S3_REGION, SENTRY_S3_ENDPOINT_URL, SENTRY_S3_ADDRESSING_STYLE,
#   SENTRY_S3_ACCESS_KEY_ID, SENTRY_S3_SECRET_ACCESS_KEY; or the gcs one: SENTRY_GCS_BUCKET,
#   SENTRY_GCS_PROJECT_ID
#   SENTRY_STATSD_HOST (empty: no metrics), SENTRY_STATSD_PORT (9125)
#   SENTRY_URL_PREFIX, SENTRY_SINGLE_ORGANIZATION (true), SENTRY_USE_SSL (false),
#   SENTRY_TRUSTED_PROXY (false: trust X-Forwarded-Host/-For only behind the Ingress),
#   SENTRY_ALLOW_REGISTRATION (false: no "Register" form; members are invited),
#   SENTRY_BEACON (false: no usage report to sentry.io)
#   SENTRY_WEB_HOST (0.0.0.0), SENTRY_WEB_PORT (9000), SENTRY_WEB_WORKERS (2)
#   SENTRY_EMAIL_HOST (empty: no mail), SENTRY_EMAIL_PORT (25), SENTRY_EMAIL_USER,
#   SENTRY_EMAIL_PASSWORD, SENTRY_EMAIL_USE_TLS (false), SENTRY_SERVER_EMAIL
#   GITHUB_APP_ID, GITHUB_API_SECRET, GITHUB_REQUIRE_VERIFIED_EMAIL (true),
#   GITHUB_BASE_DOMAIN, GITHUB_API_DOMAIN            login, sentry-auth-github plugin
#   GITHUB_APP_INTEGRATION_ID, GITHUB_APP_NAME, GITHUB_APP_CLIENT_ID,
#   GITHUB_APP_CLIENT_SECRET, GITHUB_APP_WEBHOOK_SECRET,
#   GITHUB_APP_PRIVATE_KEY                           repository integration (bundled)
#   GITLAB_APP_ID, GITLAB_APP_SECRET, GITLAB_BASE_DOMAIN (gitlab.com)
#                                                    login, sentry-auth-gitlab plugin
# Flags accept true/false, yes/no, on/off, 1/0. A required variable that is missing, or a
# value that cannot be parsed, stops Sentry at start with a message naming the variable.

# Sentry's defaults come first; everything below overrides or extends them. The names this
# file uses are imported again by name so that a reader (and a linter) sees where they come
# from. `env` is Sentry's own reader: under uWSGI it also removes each variable it reads
# from os.environ, so the web workers do not carry the secrets in their environment.
from sentry.conf.server import *  # noqa: F403
from sentry.conf.server import SENTRY_FEATURES, SENTRY_OPTIONS, env

try:  # Python 3 (this project's tests)
    from urllib.parse import quote
except ImportError:  # Python 2.7 (the sentry:9.1.2 image)
    from urllib import quote

# Sentry copies every UPPERCASE name of this module into its settings, so the helpers and
# intermediate values below are lowercase on purpose.

true_words = ("1", "true", "yes", "on")
false_words = ("0", "false", "no", "off")


def _fail(message):
    # Sentry reports an exception raised here as "!! Configuration error: ..." and stops.
    raise RuntimeError("sentry.conf.py: " + message)


def _text(name, default=""):
    """A non-secret value, without surrounding whitespace; `default` when unset or empty."""
    value = (env(name) or "").strip()
    return value or default


def _secret(name):
    """A secret, exactly as given (a password may legitimately start or end with a space)."""
    return env(name) or ""


def _required(name, why):
    value = _text(name)
    if not value:
        _fail(name + " is not set: " + why)
    return value


def _flag(name, default):
    value = _text(name).lower()
    if not value:
        return default
    if value in true_words:
        return True
    if value in false_words:
        return False
    _fail(name + " must be true or false, not " + repr(value))


def _number(name, default):
    value = _text(name)
    if not value:
        return default
    if not value.isdigit():
        _fail(name + " must be a whole number, not " + repr(value))
    return int(value)


##############
# Secret key #
##############

# Sentry 9.1 takes the key from the option system.secret-key and promotes it to Django's
# SECRET_KEY while it boots (setting SECRET_KEY directly only earns a deprecation warning).
# There is deliberately no default: a key baked into a file would be shared by every install.
secret_key = _secret("SENTRY_SECRET_KEY")
if not secret_key.strip():
    _fail(
        "SENTRY_SECRET_KEY is not set: Sentry signs sessions and tokens with it. "
        "Generate one with `sentry config generate-secret-key` and pass it from a Secret."
    )
SENTRY_OPTIONS["system.secret-key"] = secret_key

############
# Database #
############

DATABASES = {
    "default": {
        "ENGINE": "sentry.db.postgres",
        "NAME": _text("SENTRY_DB_NAME", "sentry"),
        "USER": _text("SENTRY_DB_USER", "sentry"),
        "PASSWORD": _secret("SENTRY_DB_PASSWORD"),
        "HOST": _required("SENTRY_POSTGRES_HOST", "the PostgreSQL server Sentry stores its data in."),
        "PORT": str(_number("SENTRY_POSTGRES_PORT", 5432)),
        # As in Sentry's own template (sentry init).
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
    }
}

# 64-bit ids. It must not change once the schema exists; every new install wants it.
SENTRY_USE_BIG_INTS = True

###########
# General #
###########

# One organization: Sentry hides the organization switcher and forbids creating more.
SENTRY_SINGLE_ORGANIZATION = _flag("SENTRY_SINGLE_ORGANIZATION", True)

# Sign-up: Sentry 9.1.2 shows its Register form only when both the feature auth:register
# (on in its defaults) and the option auth.allow-registration (off in its defaults) are on
# (sentry/utils/auth.py, has_user_registration). Both follow SENTRY_ALLOW_REGISTRATION, so
# the switch really opens sign-up, and closed stays closed even if an administrator turns
# the option on in the admin pages (the option is read from here first: a value on disk
# wins over the database). Closed: the admin invites members (and GitHub/GitLab logins join
# through the organization's SSO).
allow_registration = _flag("SENTRY_ALLOW_REGISTRATION", False)
SENTRY_FEATURES["auth:register"] = allow_registration
SENTRY_OPTIONS["auth.allow-registration"] = allow_registration

# The anonymous usage beacon (sentry/tasks/beacon.py): cron posts the install's version and
# counts to sentry.io every hour unless this is off. Off unless SENTRY_BEACON: the egress
# policy allows HTTPS out (for GitHub/GitLab login), which would carry it.
SENTRY_BEACON = _flag("SENTRY_BEACON", False)

# The public address (scheme and host, no trailing slash). Sentry builds every absolute
# link from it, including the OAuth redirect URIs of GitHub and GitLab login. When unset,
# Sentry 9.1.2 does not take it from requests: the option is empty (DSNs show empty, links
# have no host) until the first administrator enters it in the setup wizard, which keeps it
# in the database (sentry/options/defaults.py registers it FLAG_REQUIRED).
url_prefix = _text("SENTRY_URL_PREFIX").rstrip("/")
if url_prefix:
    SENTRY_OPTIONS["system.url-prefix"] = url_prefix

#########
# Redis #
#########

# One Redis serves the cluster named "default" (which the cache, buffers, quotas, TSDB,
# digests and rate limits use) and Celery's queue.
redis_host = _required("SENTRY_REDIS_HOST", "the Redis server behind Sentry's queue, cache and counters.")
redis_port = _number("SENTRY_REDIS_PORT", 6379)
redis_db = _number("SENTRY_REDIS_DB", 0)
redis_password = _secret("SENTRY_REDIS_PASSWORD")

redis_node = {"host": redis_host, "port": redis_port, "db": redis_db}
if redis_password:
    redis_node["password"] = redis_password
SENTRY_OPTIONS["redis.clusters"] = {"default": {"hosts": {0: redis_node}}}

# Celery (3.1, kombu 3.0) reads the broker from a URL and unquotes the password in it, so
# the password is percent-encoded whole: characters such as @ : / # % ? stay part of it.
redis_credentials = ""
if redis_password:
    redis_credentials = ":" + quote(redis_password, safe="") + "@"
BROKER_URL = "redis://" + redis_credentials + redis_host + ":" + str(redis_port) + "/" + str(redis_db)

# The Redis-backed services of Sentry 9.1 (the server defaults are in-memory or no-ops, which
# do not work across several pods).
SENTRY_CACHE = "sentry.cache.redis.RedisCache"
SENTRY_BUFFER = "sentry.buffer.redis.RedisBuffer"
SENTRY_QUOTAS = "sentry.quotas.redis.RedisQuota"
SENTRY_TSDB = "sentry.tsdb.redis.RedisTSDB"
SENTRY_RATELIMITER = "sentry.ratelimits.redis.RedisRateLimiter"

# Alert mails go out one by one, at once (Sentry's own default backend), not batched into
# digests: the Redis digests backend runs sentry/scripts/digests/digests.lua, which defines
# `function table.extend`, a write to a global that Redis refuses since 6.2.7 and 7.0
# (read-only Lua globals, redis/redis#10651 and #10845). With it, the worker logs "Attempt
# to modify a readonly table" for every new issue and the alert is lost. The dummy backend
# runs no script, so any Redis version serves.
SENTRY_DIGESTS = "sentry.digests.backends.dummy.DummyBackend"

################
# File storage #
################

# Release files, source maps and debug files: a volume shared by the Sentry pods, or a
# bucket (Sentry's own s3 and gcs backends, sentry/filestore/{s3,gcs}.py in 9.1.2). The
# bucket variable that is set chooses the backend.
s3_bucket = _text("SENTRY_S3_BUCKET")
gcs_bucket = _text("SENTRY_GCS_BUCKET")
if s3_bucket:
    SENTRY_OPTIONS["filestore.backend"] = "s3"
    s3_options = {
        "bucket_name": s3_bucket,
        # The backend's own default ACL is public-read: debug files and source maps are not public.
        "default_acl": "private",
        "signature_version": "s3v4",
        "region_name": _text("SENTRY_S3_REGION"),
        "endpoint_url": _text("SENTRY_S3_ENDPOINT_URL"),
        "addressing_style": _text("SENTRY_S3_ADDRESSING_STYLE"),
        # Always a key: Sentry 9.1.2's boto3 cannot use the pod's own identity (the manifests
        # refuse a bucket without one; docs/cluster.md says why).
        "access_key": _text("SENTRY_S3_ACCESS_KEY_ID"),
        "secret_key": _secret("SENTRY_S3_SECRET_ACCESS_KEY"),
    }
    SENTRY_OPTIONS["filestore.options"] = dict((k, v) for k, v in s3_options.items() if v)
elif gcs_bucket:
    # Credentials: GOOGLE_APPLICATION_CREDENTIALS, a mounted service account key (no pod
    # reaches the metadata server that Workload Identity would need).
    SENTRY_OPTIONS["filestore.backend"] = "gcs"
    gcs_options = {"bucket_name": gcs_bucket, "project_id": _text("SENTRY_GCS_PROJECT_ID")}
    SENTRY_OPTIONS["filestore.options"] = dict((k, v) for k, v in gcs_options.items() if v)
else:
    SENTRY_OPTIONS["filestore.backend"] = "filesystem"
    SENTRY_OPTIONS["filestore.options"] = {"location": _text("SENTRY_FILESTORE_DIR", "/var/lib/sentry/files")}

###########
# Metrics #
###########

# Counters and timers over statsd (UDP), to the stack's Prometheus statsd exporter. Sentry
# 9.1's statsd backend puts no tags on the wire: the exporter's mapping makes labels.
statsd_host = _text("SENTRY_STATSD_HOST")
if statsd_host:
    SENTRY_METRICS_BACKEND = "sentry.metrics.statsd.StatsdMetricsBackend"
    SENTRY_METRICS_OPTIONS = {"host": statsd_host, "port": _number("SENTRY_STATSD_PORT", 9125)}

##############
# Web server #
##############

# Both are set by the manifests on every Sentry container. Set there, they also beat the
# Docker-link variables the kubelet would add for a Service named sentry-web
# (SENTRY_WEB_PORT=tcp://10.96.0.13:9000) if a pod ever had enableServiceLinks on.
SENTRY_WEB_HOST = _text("SENTRY_WEB_HOST", "0.0.0.0")
SENTRY_WEB_PORT = _number("SENTRY_WEB_PORT", 9000)

# `sentry run web` starts uWSGI with these options on top of its own defaults. uWSGI's HTTP
# router answers on the port and hands requests to the workers over an internal socket; it
# keeps client connections alive, which an Ingress controller that reuses upstream
# connections expects. "uwsgi-socket": None stops Sentry from also binding the workers'
# uwsgi-protocol socket to the same host:port, which would clash with the router.
SENTRY_WEB_OPTIONS = {
    "http": SENTRY_WEB_HOST + ":" + str(SENTRY_WEB_PORT),
    "protocol": "uwsgi",
    "uwsgi-socket": None,
    "http-keepalive": True,
    # Sentry's default logs the memory use after every request.
    "memory-report": False,
    # Each worker runs 4 threads (Sentry's default); scale with more pods rather than more
    # workers per pod.
    "workers": _number("SENTRY_WEB_WORKERS", 2),
}

# Behind an Ingress that is the only way in (SENTRY_TRUSTED_PROXY): the client address
# comes from X-Forwarded-For (rate limits and audit logs use it), and the host a client
# asked for from X-Forwarded-Host, so Django's HTTPS referer check (CSRF) compares against
# the public host even if the proxy rewrites Host. Reached directly (a NodePort), a client
# could set those headers itself, so they are ignored. Links never come from them: they
# come from system.url-prefix.
trusted_proxy = _flag("SENTRY_TRUSTED_PROXY", False)
SENTRY_USE_X_FORWARDED_FOR = trusted_proxy
USE_X_FORWARDED_HOST = trusted_proxy

# Served over TLS, which ends at the Ingress: trust its X-Forwarded-Proto, so requests count
# as secure, and send cookies only over HTTPS. Only when TLS is really in front: otherwise a
# client could claim HTTPS with a header of its own.
if _flag("SENTRY_USE_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # The social-auth identities (legacy GitHub/Bitbucket plugins) build https redirects.
    SOCIAL_AUTH_REDIRECT_IS_HTTPS = True

########
# Mail #
########

# Without an SMTP host Sentry sends nothing ("dummy" backend) instead of failing on every
# notification, password reset or invitation.
email_host = _text("SENTRY_EMAIL_HOST")
if email_host:
    SENTRY_OPTIONS["mail.backend"] = "smtp"
    SENTRY_OPTIONS["mail.host"] = email_host
    SENTRY_OPTIONS["mail.port"] = _number("SENTRY_EMAIL_PORT", 25)
    SENTRY_OPTIONS["mail.username"] = _text("SENTRY_EMAIL_USER")
    SENTRY_OPTIONS["mail.password"] = _secret("SENTRY_EMAIL_PASSWORD")
    SENTRY_OPTIONS["mail.use-tls"] = _flag("SENTRY_EMAIL_USE_TLS", False)
else:
    SENTRY_OPTIONS["mail.backend"] = "dummy"

server_email = _text("SENTRY_SERVER_EMAIL")
if server_email:
    SENTRY_OPTIONS["mail.from"] = server_email

#########################################
# Login with GitHub (sentry-auth-github) #
#########################################

# Sentry 9.1 does not bundle GitHub login: the plugin must be in the image (see
# images/sentry-auth). It reads these Django settings when it is imported, so they belong
# here, not in SENTRY_OPTIONS. GITHUB_APP_ID is the OAuth *client id* (the plugin's name for
# it), not the numeric GitHub App id. Set only when login is configured, so the stock image
# keeps Sentry's defaults.
github_client_id = _text("GITHUB_APP_ID")
if github_client_id:
    GITHUB_APP_ID = github_client_id
    GITHUB_API_SECRET = _secret("GITHUB_API_SECRET").strip()
    if not GITHUB_API_SECRET:
        _fail("GITHUB_API_SECRET is not set: GitHub login (GITHUB_APP_ID) needs the client secret.")
    # On by default: an unverified address on GitHub would otherwise sign in to the Sentry
    # account that has that address.
    GITHUB_REQUIRE_VERIFIED_EMAIL = _flag("GITHUB_REQUIRE_VERIFIED_EMAIL", True)
    # GitHub Enterprise only; then set both (for example git.example.com and
    # api.git.example.com, or git.example.com/api/v3 without subdomain isolation).
    github_base_domain = _text("GITHUB_BASE_DOMAIN")
    if github_base_domain:
        GITHUB_BASE_DOMAIN = github_base_domain
    github_api_domain = _text("GITHUB_API_DOMAIN")
    if github_api_domain:
        GITHUB_API_DOMAIN = github_api_domain

#####################################
# GitHub App integration (bundled) #
#####################################

# Commits, suspect commits and issue links from GitHub repositories. Options are set only
# when given, so an administrator can otherwise enter them in Sentry's admin pages.
github_app_id = _number("GITHUB_APP_INTEGRATION_ID", 0)
if github_app_id:
    # The numeric App id; Sentry compares it with the ids in webhook payloads.
    SENTRY_OPTIONS["github-app.id"] = github_app_id

github_app_name = _text("GITHUB_APP_NAME")
if github_app_name:
    # The App's URL name: installs go through https://github.com/apps/<name>.
    SENTRY_OPTIONS["github-app.name"] = github_app_name

github_app_client_id = _text("GITHUB_APP_CLIENT_ID")
if github_app_client_id:
    SENTRY_OPTIONS["github-app.client-id"] = github_app_client_id

github_app_client_secret = _secret("GITHUB_APP_CLIENT_SECRET").strip()
if github_app_client_secret:
    SENTRY_OPTIONS["github-app.client-secret"] = github_app_client_secret

github_app_webhook_secret = _secret("GITHUB_APP_WEBHOOK_SECRET").strip()
if github_app_webhook_secret:
    SENTRY_OPTIONS["github-app.webhook-secret"] = github_app_webhook_secret

github_app_private_key = _secret("GITHUB_APP_PRIVATE_KEY").strip()
if github_app_private_key:
    # The PEM file as downloaded from GitHub. A key squeezed onto one line with literal \n
    # sequences (a common way to pass it through tooling) is turned back into lines.
    if "\n" not in github_app_private_key and "\\n" in github_app_private_key:
        github_app_private_key = github_app_private_key.replace("\\n", "\n")
    SENTRY_OPTIONS["github-app.private-key"] = github_app_private_key + "\n"

#########################################
# Login with GitLab (sentry-auth-gitlab) #
#########################################

# Plugin settings (sentry-auth-gitlab 0.1.0, sentry_auth_gitlab/constants.py):
# GITLAB_APP_ID, GITLAB_APP_SECRET, GITLAB_BASE_DOMAIN, GITLAB_HTTP_SCHEME (https),
# GITLAB_API_VERSION (4), GITLAB_AUTH_SCOPE ("api"). Read when the plugin is imported.
gitlab_app_id = _text("GITLAB_APP_ID")
if gitlab_app_id:
    GITLAB_APP_ID = gitlab_app_id
    GITLAB_APP_SECRET = _secret("GITLAB_APP_SECRET").strip()
    if not GITLAB_APP_SECRET:
        _fail("GITLAB_APP_SECRET is not set: GitLab login (GITLAB_APP_ID) needs the application secret.")
    # The plugin has no default host (it would call https://None/...). A value given with a
    # scheme (http://gitlab.internal) also sets the scheme.
    gitlab_domain = _text("GITLAB_BASE_DOMAIN", "gitlab.com")
    if "://" in gitlab_domain:
        GITLAB_HTTP_SCHEME, gitlab_domain = gitlab_domain.split("://", 1)
    GITLAB_BASE_DOMAIN = gitlab_domain.rstrip("/")
    # Signing in only reads the user's profile (GET /api/v4/user): ask for read_user rather
    # than the plugin's default "api" (full read-write access to the user's projects).
    GITLAB_AUTH_SCOPE = "read_user"

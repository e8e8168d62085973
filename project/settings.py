"""Modelport settings: every difference between environments comes from an env var.

Each setting has the same UPPER_SNAKE name as its environment variable; `.env.example`
lists them all with their defaults.
"""

import ipaddress
import json
import logging
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# .env beside manage.py (NAME=value lines, see .env.example), read here as scripts/setup reads it,
# so `manage.py` or gunicorn started by hand see the same settings; the environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_UNSET = object()


def env_str(name: str, default=_UNSET) -> str:
    """Return the env var `name`, or `default`; raise when neither exists."""
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is _UNSET:
        raise ImproperlyConfigured(f"Set the environment variable {name}.")
    return default


def env_bool(name: str, default: bool) -> bool:
    """Return the env var `name` read as a boolean (true/false, 1/0, yes/no, on/off)."""
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false).")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """Return the env var `name` read as an integer of at least `minimum`."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Return the env var `name` read as a number of at least `minimum`."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if not number >= minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
    return number


def env_list(name: str, default: str) -> list[str]:
    """Return the env var `name` split on commas, blanks dropped."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_networks(name: str, default: str) -> list[str]:
    """Return the env var `name` as a list of IP networks (CIDR; a bare address is a /32)."""
    try:
        return [str(ipaddress.ip_network(item, strict=False)) for item in env_list(name, default)]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}.") from None


# BLAS/OpenMP pools read these when numpy/scikit-learn load, which happens after settings
# are imported. With their default (one thread per core) each gunicorn or RQ worker would
# spawn a pool per process and the processes fight over the two cores under concurrency.
for _thread_var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_thread_var, "1")


def secret_key(debug: bool) -> str:
    """DJANGO_SECRET_KEY, else the key scripts/setup generated into var/secret_key, else (in
    debug mode only) a fixed development key."""
    key = os.environ.get("DJANGO_SECRET_KEY", "")
    if key:
        return key
    try:
        key = (VAR_DIR / "secret_key").read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    if debug:
        return "insecure-development-key-do-not-use-in-production"
    raise ImproperlyConfigured(
        "Set the environment variable DJANGO_SECRET_KEY, or run ./scripts/setup once: it "
        f"generates one into {VAR_DIR / 'secret_key'}."
    )


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = secret_key(DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS", "http://localhost:8000,http://127.0.0.1:8000"
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "core",
    "modelregistry",
    "predictions",
]

MIDDLEWARE = [
    "core.request_id.RequestIdMiddleware",
    # Times everything below it (metrics for every request, a RequestLog row per API request).
    "predictions.request_log.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'modelport.sqlite3'}")
try:
    DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
except Exception as exc:  # django-environ raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL.") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn instances and an RQ worker share the file: wait for locks
    # instead of failing at once, and take the write lock at BEGIN.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A file, not memory, so the processes that e2e tests start share it; one per test run.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The upload page at / needs a login (Django's own views under /accounts/).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "upload"

# Password-reset mail (/accounts/password_reset/, project/accounts.py): sent over SMTP only when
# EMAIL_HOST is set; without it the page says to ask an administrator and sends nothing.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "modelport@localhost")
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
# Model artifacts and job files (inputs, chunk parts, results) are read and written through
# Django's storage API only (core/storage.py): files under MEDIA_ROOT by default
# (STORAGE_BACKEND=filesystem), or an S3-compatible bucket shared by every machine
# (STORAGE_BACKEND=s3, django-storages with boto3): S3_BUCKET, S3_PREFIX and the S3 service
# below. Any other backend by its dotted path. STORAGE_OPTIONS (JSON) is merged over the
# backend's options (the storage's only: s3:// datasets take the S3 service as it is).
try:
    STORAGE_OPTIONS = json.loads(env_str("STORAGE_OPTIONS", "{}"))
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"STORAGE_OPTIONS is not JSON: {exc}.") from None
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")


def s3_service() -> dict:
    """The S3-compatible service of the storage (STORAGE_BACKEND=s3) and of the datasets scored
    where they live (s3:// URLs, core.storage.s3_options), in django-storages' option names:
    S3_ENDPOINT_URL (empty: AWS), S3_REGION, S3_ADDRESSING_STYLE, and the credentials in
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (unset: boto3's other sources)."""
    credentials = {
        "access_key": env_str("AWS_ACCESS_KEY_ID", ""),
        "secret_key": env_str("AWS_SECRET_ACCESS_KEY", ""),
        "security_token": env_str("AWS_SESSION_TOKEN", ""),
    }
    return {
        "endpoint_url": env_str("S3_ENDPOINT_URL", "") or None,
        "region_name": env_str("S3_REGION", "") or None,
        "addressing_style": env_str("S3_ADDRESSING_STYLE", "") or None,
        **{name: value for name, value in credentials.items() if value},
    }


S3_SERVICE = s3_service()


def storage_backend(name: str) -> tuple[str, dict]:
    """(dotted backend path, options) of STORAGE_BACKEND."""
    if name == "filesystem":
        return "django.core.files.storage.FileSystemStorage", {}
    if name == "s3":
        bucket = env_str("S3_BUCKET", "")
        if not bucket:
            raise ImproperlyConfigured("STORAGE_BACKEND=s3 needs S3_BUCKET.")
        options = {
            "bucket_name": bucket,
            **s3_service(),
            "location": env_str("S3_PREFIX", ""),
            # A job file is stored under its own name, replaced when written again.
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
        }
        return "storages.backends.s3.S3Storage", options
    if "." not in name:
        raise ImproperlyConfigured(
            f"STORAGE_BACKEND must be filesystem, s3 or a dotted path, not {name!r}."
        )
    return name, {}


_backend, _options = storage_backend(STORAGE_BACKEND)
STORAGES = {
    "default": {
        "BACKEND": _backend,
        "OPTIONS": {**_options, **STORAGE_OPTIONS},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads above this size go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every Redis client (queue, prediction cache, throttle, readiness) gives up after this long, so
# a Redis that hangs costs a request seconds, never a thread. RQ's worker raises its own read
# timeout above its blocking wait (rq.worker.base), so it keeps working with this.
REDIS_TIMEOUT_SECONDS = env_float("REDIS_TIMEOUT_SECONDS", 2.0, minimum=0.1)


def with_redis_timeouts(url: str, seconds: float) -> str:
    """`url` with socket and connect timeouts (unless it names its own): redis-py reads both
    from the query string, for every client built from a URL."""
    named = dict(parse_qsl(urlsplit(url).query))
    added = {
        name: f"{seconds:g}"
        for name in ("socket_timeout", "socket_connect_timeout")
        if name not in named
    }
    if not added:
        return url
    # Appended rather than rebuilt: urlunsplit would drop the "//" of "unix:///path".
    return f"{url}{'&' if '?' in url else '?'}{urlencode(added)}"


REDIS_CLIENT_URL = with_redis_timeouts(REDIS_URL, REDIS_TIMEOUT_SECONDS)
# Enqueue at once: services save (and commit) the job row first, then enqueue, so a failed
# enqueue can be undone and reported instead of being lost after the response.
RQ = {"COMMIT_MODE": "auto", "WORKER_CLASS": "predictions.worker.ModelportWorker"}
RQ_QUEUES = {
    "default": {
        "URL": REDIS_CLIENT_URL,
        "DEFAULT_TIMEOUT": 3600,
        # Jobs carry only ids: JSON, never pickle (workers run with the same serializer).
        "SERIALIZER": "rq.serializers.JSONSerializer",
    }
}

# Model registry
MODEL_CACHE_SIZE = env_int("MODEL_CACHE_SIZE", 8, minimum=1)
MAX_ARTIFACT_BYTES = env_int("MAX_ARTIFACT_BYTES", 512 * 1024**2, minimum=1)
# Micro-batching (predictions/batching.py): concurrent requests of up to BATCH_MAX_ROWS rows for
# one version share a model call, gathered for at most BATCH_MAX_WAIT_MS while others queue.
BATCH_ENABLED = env_bool("BATCH_ENABLED", True)
BATCH_MAX_ROWS = env_int("BATCH_MAX_ROWS", 64, minimum=1)
BATCH_MAX_WAIT_MS = env_int("BATCH_MAX_WAIT_MS", 2)
# A version whose single-row call (measured at upload, on its serving path) is cheaper than this
# is not batched: handing rows to the batcher thread would cost more than the call it saves.
BATCH_MIN_CALL_MS = env_float("BATCH_MIN_CALL_MS", 0.5)
# Single-row predictions kept in Redis per version and input (a model can opt out in the admin).
PREDICTION_CACHE_ENABLED = env_bool("PREDICTION_CACHE_ENABLED", True)
PREDICTION_CACHE_SECONDS = env_int("PREDICTION_CACHE_SECONDS", 300, minimum=1)
# ... but not for a version whose single-row call (measured at upload, on its serving path) is
# cheaper than this: a Redis round trip would cost more than the call it saves.
PREDICTION_CACHE_MIN_CALL_MS = env_float("PREDICTION_CACHE_MIN_CALL_MS", 1.0)
DEFAULT_VERSION_CACHE_SECONDS = env_int("DEFAULT_VERSION_CACHE_SECONDS", 1)
# ONNX (modelregistry/onnx/, serving.py): each upload is converted and checked against
# scikit-learn; the ONNX model serves by default only when every answer was exact (1e-9), an
# inexact one only where a version opts in. false serves every version with scikit-learn.
ONNX_ENABLED = env_bool("ONNX_ENABLED", True)
MODELPORT_ALLOW_PICKLE = env_bool("MODELPORT_ALLOW_PICKLE", False)
MODELPORT_TRUSTED_TYPES = env_list("MODELPORT_TRUSTED_TYPES", "")
PICKLE_VALIDATION_TIMEOUT_SECONDS = env_int("PICKLE_VALIDATION_TIMEOUT_SECONDS", 120, minimum=1)
# Every new upload is loaded, smoke-tested and converted to ONNX in a child process that may write
# only inside its own temp dir (Linux Landlock; modelregistry/sandbox/jail.py), within these bounds.
SANDBOX_TIMEOUT_SECONDS = env_int("SANDBOX_TIMEOUT_SECONDS", 120, minimum=1)
SANDBOX_MEMORY_MB = env_int("SANDBOX_MEMORY_MB", 4096, minimum=256)
# false: run that child even where the kernel has no Landlock (writes are then NOT confined).
SANDBOX_REQUIRE_LANDLOCK = env_bool("SANDBOX_REQUIRE_LANDLOCK", True)

# Predictions
# The model MLflow's top-level POST /invocations scores (its default version); empty: none,
# and /invocations says so (each model has /api/v1/models/{name}/invocations).
MLFLOW_DEFAULT_MODEL = env_str("MLFLOW_DEFAULT_MODEL", "")
PREDICT_SYNC_MAX_ROWS = env_int("PREDICT_SYNC_MAX_ROWS", 10_000, minimum=1)
PREDICT_SYNC_MAX_BYTES = env_int("PREDICT_SYNC_MAX_BYTES", 8 * 1024**2, minimum=1)
# A compressed body (Parquet) that decodes to more than this becomes a job, from its metadata.
PREDICT_SYNC_MAX_DECODED_BYTES = env_int("PREDICT_SYNC_MAX_DECODED_BYTES", 64 * 1024**2, minimum=1)
PREDICT_CHUNK_ROWS = env_int("PREDICT_CHUNK_ROWS", 200_000, minimum=1)
PREDICT_MAX_STRING_LENGTH = env_int("PREDICT_MAX_STRING_LENGTH", 1_000, minimum=1)
PREDICT_THROTTLE_RATE = env_str("PREDICT_THROTTLE_RATE", "") or None
MODELPORT_PUBLIC_PREDICTIONS = env_bool("MODELPORT_PUBLIC_PREDICTIONS", False)

# Background jobs
# A chunk's working set in its work horse grows with its rows (parsed frame, the ONNX session's
# intermediates): about 35 MiB at 4 MiB / 60,000 demo rows, which keeps each horse under the
# 300 MB peak RSS of issue 17 (8 MiB chunks peaked at 301 MiB with the demo model; bench/README).
JOB_CHUNK_BYTES = env_int("JOB_CHUNK_BYTES", 4 * 1024**2, minimum=1024)
JOB_CHUNK_ROWS = env_int("JOB_CHUNK_ROWS", 60_000, minimum=1)
# A Parquet chunk decodes to at most a quarter of this (fewer rows when rows are big); a row
# group that decodes to more is refused (reading one of its rows may decompress all of it).
JOB_CHUNK_MAX_DECODED_BYTES = env_int("JOB_CHUNK_MAX_DECODED_BYTES", 1024**3, minimum=1024**2)
JOB_TIMEOUT_SECONDS = env_int("JOB_TIMEOUT_SECONDS", 3600, minimum=1)
JOB_MAX_JSON_BYTES = env_int("JOB_MAX_JSON_BYTES", 64 * 1024**2, minimum=1)
RESULT_TTL_DAYS = env_int("RESULT_TTL_DAYS", 7, minimum=1)
REQUEST_LOG_RETENTION_DAYS = env_int("REQUEST_LOG_RETENTION_DAYS", 30, minimum=1)
# The scheduler (manage.py run_scheduler, RQ's cron; predictions/cron.py) runs the cleanup
# commands on this cron expression, and reads the admin's scoring schedules at least this often.
CLEANUP_CRON = env_str("CLEANUP_CRON", "30 3 * * *")
SCHEDULE_RELOAD_SECONDS = env_int("SCHEDULE_RELOAD_SECONDS", 30, minimum=1)
# Base URLs of the app instances whose /readyz the monitoring page shows; this process alone
# when empty.
MONITORED_INSTANCES = env_list("MONITORED_INSTANCES", "")
# Monitoring switches (the bench turns them off to measure what they cost).
REQUEST_LOG_ENABLED = env_bool("REQUEST_LOG_ENABLED", True)
# RequestLog rows are written in batches this often by a thread of each process (0: in the
# request itself); the rows still waiting are written when the process stops gracefully.
REQUEST_LOG_FLUSH_MS = env_int("REQUEST_LOG_FLUSH_MS", 1000)
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# gunicorn's worker timeout (project/gunicorn.conf.py reads the same variable); nginx waits longer.
WEB_TIMEOUT_SECONDS = env_int("WEB_TIMEOUT_SECONDS", 120, minimum=1)
# Who may read /metrics (nginx renders the same list); Prometheus scrapes each instance.
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# An RQ worker serves its metrics on this port when set (0: off); scripts/run gives each one.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDRESS = env_str("WORKER_METRICS_ADDRESS", "127.0.0.1")
RESULTS_PAGE_SIZE = env_int("RESULTS_PAGE_SIZE", 1000, minimum=1)
RESULTS_MAX_PAGE_SIZE = env_int("RESULTS_MAX_PAGE_SIZE", 10_000, minimum=1)
# Every list endpoint (models, versions, jobs) answers pages of this many items (core/pagination).
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500, minimum=1)

# Job callbacks (predictions/services/callbacks.py): a job may name a URL on one of these hosts
# (none: callbacks are refused). An address that is not public (loopback, private, link-local)
# is refused even then, unless that address itself is listed (e.g. 127.0.0.1).
JOB_CALLBACK_ALLOWED_HOSTS = [host.lower() for host in env_list("JOB_CALLBACK_ALLOWED_HOSTS", "")]
# The HMAC-SHA256 key of the Modelport-Signature header; required once a host is allowed.
JOB_CALLBACK_SECRET = env_str("JOB_CALLBACK_SECRET", "")
if JOB_CALLBACK_ALLOWED_HOSTS and not JOB_CALLBACK_SECRET:
    raise ImproperlyConfigured("Set JOB_CALLBACK_SECRET to sign callbacks to the allowed hosts.")
# Seconds before each retry of an undelivered callback (RQ's Retry; the worker's scheduler).
try:
    JOB_CALLBACK_RETRY_SECONDS = [
        int(item) for item in env_list("JOB_CALLBACK_RETRY_SECONDS", "10,60,300")
    ]
except ValueError:
    raise ImproperlyConfigured(
        "JOB_CALLBACK_RETRY_SECONDS: whole seconds, comma-separated."
    ) from None
JOB_CALLBACK_TIMEOUT_SECONDS = env_int("JOB_CALLBACK_TIMEOUT_SECONDS", 10, minimum=1)

# Datasets scored through the API (predictions/services/datasets.py): the only places a run may
# read or write, as local folders or fsspec URL prefixes (s3://bucket/lake); none: the API
# scores no datasets (`manage.py score_dataset`, run from a shell, is not limited by them).
DATASET_LOCATIONS = env_list("DATASET_LOCATIONS", "")
# Dask schedulers (tcp://host:8786) a run may name; none: each run opens a local cluster of
# DATASET_WORKERS processes in its RQ worker.
DATASET_SCHEDULERS = env_list("DATASET_SCHEDULERS", "")
DATASET_WORKERS = env_int("DATASET_WORKERS", 2, minimum=1)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Shared by every instance: single-row predictions (predictions/services/prediction_cache.py).
    "predictions": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_CLIENT_URL,
        "KEY_PREFIX": "modelport",
    },
    # Shared by every instance: per-token request counts for throttling.
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_CLIENT_URL,
        "KEY_PREFIX": "modelport",
    },
}

# Seconds a process trusts a token it looked up (0: ask the database on every request). A deleted
# token or deactivated user is refused by every process within this time.
AUTH_TOKEN_CACHE_SECONDS = env_int("AUTH_TOKEN_CACHE_SECONDS", 2)
# API tokens are stored as SHA-512 digests (core/authentication.py); "mp_" marks ours (secret
# scanners, logs), and they do not expire: staff delete them in the admin.
REST_KNOX = {"TOKEN_TTL": None, "TOKEN_PREFIX": "mp_", "AUTH_HEADER_PREFIX": "Token"}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.ORJSONRenderer"],
    # Accept: application/problem+json (or a type the view serves itself) is not a 406.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.renderers.ContentNegotiation",
    "DEFAULT_THROTTLE_RATES": {"predictions": PREDICT_THROTTLE_RATE},
    # `?format=` picks a download's file format (jobs), not a DRF renderer.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # The client address (throttling, the request log) is the last NUM_PROXIES-th entry of
    # X-Forwarded-For: nginx appends the address it saw, so a client's own entries never count.
    # 0: REMOTE_ADDR only (no proxy in front).
    "NUM_PROXIES": env_int("NUM_PROXIES", 1),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Modelport API",
    "DESCRIPTION": "Serve scikit-learn models: registry, predictions and jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Jobs and versions both have a `status`: name each set of choices after its model.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "predictions.models.JobStatus",
        "VersionStatusEnum": "modelregistry.models.VersionStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.problem_responses",
    ],
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# text (for a terminal) or json (one object per line, for a log pipeline), web and workers alike
# (project/gunicorn.conf.py reads the same variable); each line carries the request id, model,
# version and job id where known (core/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use text or json.")
if LOG_FORMAT == "json":
    # Python's warnings become log lines too (logger py.warnings), not bare text on stderr.
    logging.captureWarnings(True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logs.ContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

"""Settings from environment variables, validated once at start-up.

Every variable is documented in the README's "Configuration" table; keep the two in step.
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg.conninfo

ENVIRONMENTS = ("development", "production")


class ConfigurationError(Exception):
    """The configuration cannot work; the message says which variable and why."""


def _integer(environ, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _number(environ, name: str, default: float, minimum: float, maximum: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _database_url(environ, name: str) -> str | None:
    url = environ.get(name) or None
    if url is None:
        return None
    # a postgresql:// URL, or a libpq "key=value" connection string
    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(f"{name} must be a postgresql:// URL, got {url.split('@')[-1]!r}")
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"{name} is not a valid PostgreSQL URL: {exc}") from None
    return url


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    database_url: str | None = None          # None: start the embedded PostgreSQL
    reports_database_url: str | None = None  # None: reports read the main database
    reports_max_lag_seconds: float = 30.0    # a replica further behind than this: reports read the primary
    data_dir: Path = Path("var")
    registry_secret: bytes = b""
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 3.0                # seconds a request waits for a connection
    prepare_threshold: int | None = 5        # None disables prepared statements (PgBouncer)
    suppression_threshold: int = 5
    report_timeout: float = 30.0             # seconds a report's queries may run (gunicorn's timeout is 60)
    max_content_length: int = 256 * 1024 * 1024  # bulk submissions
    max_record_bytes: int = 1024 * 1024           # every other request body
    request_body_timeout: float = 10.0       # seconds a body may take to arrive, plus its size at the rate below
    request_body_min_rate: int = 256 * 1024  # bytes per second that earn a body one more second
    validation_workers: int | None = None    # bulk validation processes; None: one per CPU, 0: none
    token_default_days: int = 90             # lifetime of a token issued without an expiry
    token_max_days: int = 365                # the longest lifetime a token may be issued with
    log_level: str = "INFO"
    dashboard_secure_cookie: bool | None = None  # None: the dashboard cookie is Secure in production only

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @classmethod
    def from_environment(cls, environ=None) -> "Settings":
        environ = os.environ if environ is None else environ
        environment = environ.get("REGISTRY_ENV", "development")
        if environment not in ENVIRONMENTS:
            raise ConfigurationError(f"REGISTRY_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
        data_dir = Path(environ.get("REGISTRY_DATA_DIR") or "var").absolute()
        database_url = _database_url(environ, "DATABASE_URL")
        if environment == "production" and database_url is None:
            raise ConfigurationError("DATABASE_URL is required when REGISTRY_ENV=production")

        pool_min = _integer(environ, "DB_POOL_MIN_SIZE", 1, 0, 1000)
        pool_max = _integer(environ, "DB_POOL_MAX_SIZE", 10, 1, 1000)
        if pool_min > pool_max:
            raise ConfigurationError(f"DB_POOL_MIN_SIZE ({pool_min}) exceeds DB_POOL_MAX_SIZE ({pool_max})")
        prepare = _integer(environ, "DB_PREPARE_THRESHOLD", 5, -1, 1_000_000)
        token_default_days = _integer(environ, "TOKEN_DEFAULT_DAYS", 90, 1, 3650)
        token_max_days = _integer(environ, "TOKEN_MAX_DAYS", 365, 1, 3650)
        if token_default_days > token_max_days:
            raise ConfigurationError(
                f"TOKEN_DEFAULT_DAYS ({token_default_days}) exceeds TOKEN_MAX_DAYS ({token_max_days})")
        secure_cookie = environ.get("DASHBOARD_SECURE_COOKIE", "").lower()
        if secure_cookie not in ("", "true", "false"):
            raise ConfigurationError(f"DASHBOARD_SECURE_COOKIE must be true or false, got {secure_cookie!r}")
        log_level = environ.get("LOG_LEVEL", "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigurationError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")

        return cls(
            environment=environment,
            database_url=database_url,
            reports_database_url=_database_url(environ, "REPORTS_DATABASE_URL"),
            reports_max_lag_seconds=_number(environ, "REPORTS_MAX_LAG_SECONDS", 30.0, 0.0, 86_400.0),
            dashboard_secure_cookie=None if secure_cookie == "" else secure_cookie == "true",
            data_dir=data_dir,
            registry_secret=_registry_secret(environ, environment, data_dir),
            pool_min_size=pool_min,
            pool_max_size=pool_max,
            pool_timeout=_number(environ, "DB_POOL_TIMEOUT", 3.0, 0.1, 300.0),
            prepare_threshold=None if prepare < 0 else prepare,
            suppression_threshold=_integer(environ, "SUPPRESSION_THRESHOLD", 5, 1, 1000),
            report_timeout=_number(environ, "REPORT_TIMEOUT", 30.0, 0.001, 3600.0),
            max_content_length=_integer(environ, "MAX_CONTENT_LENGTH", 256 * 1024 * 1024, 1024, 2**40),
            max_record_bytes=_integer(environ, "MAX_RECORD_BYTES", 1024 * 1024, 1024, 2**40),
            request_body_timeout=_number(environ, "REQUEST_BODY_TIMEOUT", 10.0, 0.1, 3600.0),
            request_body_min_rate=_integer(environ, "REQUEST_BODY_MIN_RATE", 256 * 1024, 1, 2**40),
            validation_workers=(_integer(environ, "REGISTRY_VALIDATION_WORKERS", 0, 0, 256)
                                if environ.get("REGISTRY_VALIDATION_WORKERS") else None),
            token_default_days=token_default_days,
            token_max_days=token_max_days,
            log_level=log_level,
        )


def _registry_secret(environ, environment: str, data_dir: Path) -> bytes:
    """The HMAC key for patient refs.

    It must never change once patients are stored (the same ref would become a new patient),
    so in development a generated secret is kept in the data directory rather than made anew
    at each start. Production must be given one.
    """
    secret = environ.get("REGISTRY_SECRET")
    if secret:
        if len(secret) < 16:
            raise ConfigurationError("REGISTRY_SECRET must be at least 16 characters long")
        return secret.encode()
    if environment == "production":
        raise ConfigurationError("REGISTRY_SECRET is required when REGISTRY_ENV=production")
    secret_file = data_dir / "registry-secret"
    if not secret_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    return secret_file.read_text().strip().encode()

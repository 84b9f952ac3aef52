"""Alembic driven from code, for `registry db ...`, `registry serve`, /readyz and the tests."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg.rows import tuple_row

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    """The newest migration in the code: the schema version the service expects."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(conn) -> str | None:
    """The schema version the database is at, or None when it was never migrated."""
    cur = conn.cursor(row_factory=tuple_row)
    (present,) = cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    if not present:
        return None
    row = cur.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else row[0]

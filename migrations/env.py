"""Alembic environment: plain SQL migrations over a psycopg 3 connection.

The database URL comes from the caller (`registry db upgrade` passes it in the config's
attributes) or from the environment, resolved exactly as the service resolves it.
Two deploys never migrate at once (advisory lock), and a migration waiting on a busy table
gives up instead of queueing every request behind it (lock_timeout). The lock and the timeouts
belong to the one transaction all migrations run in (transactional DDL), so they end with it:
nothing is left on the session, which behind PgBouncer in transaction mode is a pooled server
connection the next client's transaction gets.
"""
import psycopg
import sqlalchemy
from alembic import context

MIGRATION_LOCK_ID = 4_242_001  # arbitrary, constant: the advisory lock taken while migrating


def database_url() -> str:
    url = context.config.attributes.get("database_url")
    if url:
        return url
    from registry.config import Settings
    from registry.embedded import resolve_database_url

    return resolve_database_url(Settings.from_environment())


def run_migrations_online() -> None:
    url = database_url()
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=sqlalchemy.pool.NullPool
    )
    with engine.connect() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        connection.exec_driver_sql("SET LOCAL statement_timeout = '10min'")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()

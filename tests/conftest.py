"""Shared fixtures: a real PostgreSQL, the schema built once, a fresh database per test.

The server is the embedded one (started in var/test-pgdata) unless TEST_DATABASE_URL points
at another. The schema is migrated once into a template database; each test gets its own
copy (CREATE DATABASE ... TEMPLATE), so tests may commit, run concurrent requests, and never
see each other's rows.
"""

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from registry import create_app, migrate
from registry.auth import ANALYST, CENTRE_ADMIN, METRICS, OPERATOR, SUBMITTER
from registry.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = b"test-registry-secret-0123456789"


def _with_database(url: str, name: str) -> str:
    """The same server URL, pointing at database `name`."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def server_url():
    """Admin URL of the PostgreSQL server the tests use."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from registry.embedded import start_embedded_server

    url = start_embedded_server(ROOT / "var" / "test-pgdata", database="postgres")
    # A throwaway test server need not survive a power cut: skip the disk flushes.
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    yield url


@pytest.fixture(scope="session")
def template_database(server_url):
    """A database migrated to head once per run, copied for each test."""
    name = f"registry_template_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate.upgrade(_with_database(server_url, name))
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_database_url(server_url):
    """A database with no schema at all, dropped after the test."""
    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url, template_database):
    """A fresh copy of the migrated template, dropped after the test."""
    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_database)))
    yield _with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(database_url):
    """A direct connection to the test's database, for arranging and checking rows."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        yield conn


def make_settings(**overrides) -> Settings:
    values = {"registry_secret": TEST_SECRET, "pool_min_size": 0, "pool_max_size": 8, "pool_timeout": 2.0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings():
    return make_settings()


@pytest.fixture
def app(database_url, settings):
    app = create_app(settings, database_url)
    app.config["TESTING"] = True
    yield app
    app.extensions["database"].close()
    app.extensions["reports_database"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Tokens:
    """Bearer headers for a token of each role, on two centres A and B."""

    def __init__(self, conn):
        from registry.centres.store import add_centre
        from registry.tokens.store import issue_token

        self.centre_a = add_centre(conn, "CENTRE-A", "Centre A")
        self.centre_b = add_centre(conn, "CENTRE-B", "Centre B")
        self.secrets = {}
        for name, centre, role in (("submitter_a", self.centre_a, SUBMITTER),
                                   ("submitter_b", self.centre_b, SUBMITTER),
                                   ("analyst", self.centre_a, ANALYST),
                                   ("operator", self.centre_a, OPERATOR),
                                   ("centre_admin_a", self.centre_a, CENTRE_ADMIN),
                                   ("metrics", self.centre_a, METRICS)):
            row, secret = issue_token(conn, centre["id"], role, name)
            self.secrets[name] = (row["id"], secret)

    def header(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self.secrets[name][1]}"}

    def id(self, name: str) -> int:
        return self.secrets[name][0]


@pytest.fixture
def tokens(db):
    return Tokens(db)


# Tests that need a system package: run, or reported as not run (tests/system_packages.py)
from tests import system_packages  # noqa: E402


def pytest_configure(config):
    system_packages.register(config)


def pytest_collection_modifyitems(config, items):
    system_packages.set_aside_missing(config, items)


def pytest_runtest_setup(item):
    system_packages.fail_if_required_and_missing(item)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    system_packages.report_not_run(terminalreporter, config)

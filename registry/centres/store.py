"""Centres: the hospitals that own records."""

from registry.audit import store as audit

CENTRE_COLUMNS = "id, code, name, created_at"


def add_centre(conn, code: str, name: str, actor=None) -> dict:
    """Create a centre; raises psycopg UniqueViolation (centres_code_key) when the code is taken."""
    centre = conn.execute(
        f"INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING {CENTRE_COLUMNS}", (code, name)
    ).fetchone()
    audit.record(conn, centre_id=centre["id"], action="create", entity="centre", entity_id=centre["id"],
                 changes=audit.created({"code": code, "name": name}), actor=actor)
    return centre


def list_centres(conn, after_id: int | None = None, limit: int | None = None) -> list[dict]:
    """Centres in id order, after `after_id` (keyset pagination)."""
    return conn.execute(
        f"""SELECT {CENTRE_COLUMNS} FROM centres WHERE (%(after)s::bigint IS NULL OR id > %(after)s)
            ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit},
    ).fetchall()


def get_centre(conn, centre_id: int) -> dict | None:
    return conn.execute(f"SELECT {CENTRE_COLUMNS} FROM centres WHERE id = %s", (centre_id,)).fetchone()


def get_centre_by_code(conn, code: str) -> dict | None:
    return conn.execute(f"SELECT {CENTRE_COLUMNS} FROM centres WHERE code = %s", (code,)).fetchone()

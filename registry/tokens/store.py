"""Issuing, rotating and revoking bearer tokens; only their hashes are stored.

Token rows are never deleted: with who issued and who revoked each one, they are the record
of every token the registry has handed out (GET /v1/tokens/), next to the audit trail.

Every token has an end (`expires_at`). Rotating a token issues its successor (same centre,
role and label) and brings the old token's end forward to the end of a grace period, during
which both work, so a hospital system can switch without an outage.
"""

from datetime import datetime

from registry.audit import store as audit
from registry.auth import Principal, hash_token, new_token

TOKEN_COLUMNS = ("id, centre_id, role, label, created_at, issued_by_token_id, revoked_at, revoked_by_token_id,"
                 " expires_at, last_used_at, successor_token_id")

DEFAULT_DAYS = 90          # what TOKEN_DEFAULT_DAYS defaults to; callers with settings pass theirs
DEFAULT_GRACE_HOURS = 24   # how long a rotated token keeps working next to its successor
MAX_GRACE_HOURS = 7 * 24   # a week covers a change window; longer and rotation no longer retires a leak


def issue_token(conn, centre_id: int, role: str, label: str | None = None, actor: Principal | None = None,
                expires_in_days: int = DEFAULT_DAYS, expires_at: datetime | None = None) -> tuple[dict, str]:
    """Store a new token's hash; return its row and the secret, which is shown once and never stored.

    It expires `expires_in_days` from now, or at `expires_at` when given. `actor` is the token
    issuing it; None for the command line."""
    token = new_token()
    row = conn.execute(
        f"""INSERT INTO tokens (centre_id, role, token_hash, label, issued_by_token_id, expires_at)
            VALUES (%s, %s, %s, %s, %s, coalesce(%s, now() + make_interval(days => %s)))
            RETURNING {TOKEN_COLUMNS}""",
        (centre_id, role, hash_token(token), label, actor.token_id if actor else None, expires_at, expires_in_days),
    ).fetchone()
    # the token's fields as GET /v1/tokens/ shows them; never its secret or hash
    audit.record(conn, centre_id=centre_id, action="create", entity="token", entity_id=row["id"],
                 changes=audit.created({"role": row["role"], "label": row["label"], "expires_at": row["expires_at"]}),
                 actor=actor)
    return row, token


def get_token_for_update(conn, token_id: int, centre_id: int | None = None,
                         roles: list[str] | None = None) -> dict | None:
    """A token's row, locked until the transaction ends, with `expired` (past its end now);
    None when there is no such token (of `centre_id` and one of `roles`, when given)."""
    return conn.execute(
        f"""SELECT {TOKEN_COLUMNS}, expires_at <= now() AS expired FROM tokens
            WHERE id = %(id)s AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(roles)s::text[] IS NULL OR role = ANY(%(roles)s))
            FOR UPDATE""",
        {"id": token_id, "centre_id": centre_id, "roles": roles},
    ).fetchone()


KEEP = object()  # rotate_token's label: the rotated token's


def rotate_token(conn, old: dict, grace_hours: int, actor: Principal | None = None,
                 expires_in_days: int | None = None, label=KEEP) -> tuple[dict, dict, str]:
    """Issue the successor of `old` (a live token's row, locked by `get_token_for_update`) and end
    `old` after `grace_hours`; return the successor's row, old's updated row and the secret.

    The successor has old's centre, role and (unless given) label; it expires `expires_in_days`
    from now, or when old would have (None: a rotation that renews the secret, not the lifetime)."""
    new, token = issue_token(conn, old["centre_id"], old["role"], old["label"] if label is KEEP else label,
                             actor=actor, expires_in_days=expires_in_days or DEFAULT_DAYS,
                             expires_at=None if expires_in_days else old["expires_at"])
    replaced = conn.execute(
        f"""UPDATE tokens SET successor_token_id = %(new)s,
                              expires_at = least(expires_at, now() + make_interval(hours => %(grace)s))
            WHERE id = %(id)s RETURNING {TOKEN_COLUMNS}""",
        {"id": old["id"], "new": new["id"], "grace": grace_hours},
    ).fetchone()
    audit.record(conn, centre_id=old["centre_id"], action="rotate", entity="token", entity_id=old["id"],
                 changes=audit.updated({name: old[name] for name in ("successor_token_id", "expires_at")},
                                       {name: replaced[name] for name in ("successor_token_id", "expires_at")}),
                 actor=actor)
    return new, replaced, token


def revoke_token(conn, token_id: int, actor: Principal | None = None, centre_id: int | None = None,
                 roles: list[str] | None = None) -> dict | None:
    """Mark a token revoked (revoking twice is harmless); None when there is no such token
    (of `centre_id` and one of `roles`, when given)."""
    row = conn.execute(
        f"""UPDATE tokens SET revoked_at = coalesce(revoked_at, now()),
                              revoked_by_token_id = CASE WHEN revoked_at IS NULL THEN %(actor)s
                                                         ELSE revoked_by_token_id END
            WHERE id = %(id)s AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(roles)s::text[] IS NULL OR role = ANY(%(roles)s))
            RETURNING {TOKEN_COLUMNS}""",
        {"id": token_id, "actor": actor.token_id if actor else None, "centre_id": centre_id, "roles": roles},
    ).fetchone()
    if row is not None:
        audit.record(conn, centre_id=row["centre_id"], action="revoke", entity="token", entity_id=token_id,
                     changes={"revoked_at": {"old": None, "new": row["revoked_at"]}}, actor=actor)
    return row


def list_tokens(conn, after_id: int | None = None, limit: int | None = None, filters: dict | None = None,
                roles: list[str] | None = None) -> list[dict]:
    """Tokens in id order, after `after_id` (keyset pagination), optionally by centre, role,
    issuer, revocation and expiry; only those of `roles` when given."""
    filters = filters or {}
    return conn.execute(
        f"""SELECT {TOKEN_COLUMNS} FROM tokens WHERE (%(after)s::bigint IS NULL OR id > %(after)s)
              AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(role)s::text IS NULL OR role = %(role)s)
              AND (%(roles)s::text[] IS NULL OR role = ANY(%(roles)s))
              AND (%(issued_by)s::bigint IS NULL OR issued_by_token_id = %(issued_by)s)
              AND (%(revoked)s::boolean IS NULL OR (revoked_at IS NOT NULL) = %(revoked)s)
              AND (%(expired)s::boolean IS NULL OR (expires_at <= now()) = %(expired)s)
            ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit, "centre_id": filters.get("centre_id"), "role": filters.get("role"),
         "roles": roles, "issued_by": filters.get("issued_by_token_id"), "revoked": filters.get("revoked"),
         "expired": filters.get("expired")},
    ).fetchall()

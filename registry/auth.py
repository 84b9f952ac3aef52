"""Bearer tokens and the roles they carry.

A token is shown once when issued; the registry keeps only its SHA-256 (tokens are 256-bit
random secrets, so a fast hash is enough). Every token belongs to a centre: a submitter works
on that centre's records only; an analyst reads cross-centre aggregates; a centre_admin
issues and revokes its own centre's submitter and centre_admin tokens; an operator runs the
registry (centres, analyst, operator and metrics tokens) and can reach no centre's patients,
not even through a token it issues; a metrics token reads /metrics only. Before migration 0005
the operator role was called `admin`. Every token expires (`expires_at`, see registry.tokens),
and records when it was last used, to the minute.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps

import psycopg
from flask import g, request
from psycopg_pool import PoolTimeout

from registry.db import database
from registry.problems import Problem

TOKEN_PREFIX = "reg_"
SUBMITTER, CENTRE_ADMIN, ANALYST, OPERATOR, METRICS = "submitter", "centre_admin", "analyst", "operator", "metrics"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, role and centre."""

    token_id: int
    role: str
    centre_id: int
    centre_code: str


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="registry"'})


def bearer_token() -> str | None:
    """The request's bearer token, or None when it sends none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate() -> Principal:
    """The caller of the current request, from its bearer token; 401 when missing, unknown, revoked,
    expired or replaced (past its rotation's grace period), the detail saying which."""
    if "principal" in g:
        return g.principal
    token = bearer_token()
    if token is None:
        raise _unauthorized("A bearer token is required.")
    shared = g.get("request_transaction")  # (database, connection) of a write's one transaction
    in_write = shared is not None and shared[0] is database()
    with database().transaction() as conn:
        row = conn.execute(
            """SELECT t.id, t.role, t.centre_id, c.code AS centre_code, t.revoked_at IS NOT NULL AS revoked,
                      t.expires_at, t.expires_at <= now() AS expired, t.successor_token_id,
                      t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute' AS last_use_stale
               FROM tokens t JOIN centres c ON c.id = t.centre_id
               WHERE t.token_hash = %s""",
            (hash_token(token),),
        ).fetchone()
        usable = row is not None and not row["revoked"] and not row["expired"]
        if usable and row["last_use_stale"] and not in_write:
            _record_use(conn, row["id"])  # a read's own short transaction: committed at once
    if row is None or row["revoked"]:
        raise _unauthorized("The token is unknown or revoked.")
    if row["expired"]:
        if row["successor_token_id"] is not None:
            raise _unauthorized(f"The token was replaced by a rotated successor; its grace period ended at "
                                f"{_utc(row['expires_at'])}.")
        raise _unauthorized(f"The token expired at {_utc(row['expires_at'])}.")
    if row["last_use_stale"] and in_write:
        _record_use_apart(row["id"])
    g.principal = Principal(row["id"], row["role"], row["centre_id"], row["centre_code"])
    return g.principal


# last_used_at is kept to the minute: a token's requests write it at most once a minute, so
# reads do not each become a write. SKIP LOCKED: while another request records the use, or a
# manager revokes or rotates the token, a request goes on without waiting (the use is recorded).
_RECORD_USE = """UPDATE tokens SET last_used_at = now()
                 WHERE id = (SELECT id FROM tokens WHERE id = %s
                               AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
                             FOR UPDATE SKIP LOCKED)"""


def _record_use(conn, token_id: int) -> None:
    conn.execute(_RECORD_USE, (token_id,))


def _record_use_apart(token_id: int) -> None:
    """Record a use from inside a write's transaction, in a short transaction of its own.

    In the write's transaction the token's row would stay locked until it commits (minutes for
    a bulk submission), holding up its revocation or rotation, and a refused write would
    leave no trace of the use. When no connection is free at once the use is left for the
    token's next request: a minute's precision is not worth a request's wait."""
    try:
        with database().pool.connection(timeout=0.1) as conn:
            _record_use(conn, token_id)
    except (PoolTimeout, psycopg.Error):
        pass


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def require(*roles: str):
    """Decorate a view so only tokens of these roles reach it (403 for other roles)."""

    def decorator(view):
        def checked(*args, **kwargs):
            principal = authenticate()
            if principal.role not in roles:
                raise Problem(403, f"This needs a token with role {' or '.join(roles)}.", slug="forbidden")
            return view(*args, **kwargs)

        @wraps(view)
        def wrapper(*args, **kwargs):
            if request.method in _WRITES:
                # A write is one transaction, the token lookup included: one connection
                # checkout and one commit per request.
                pipelined = getattr(view, "pipelined", False)
                with database().request_transaction(pipelined=pipelined) as conn:
                    if pipelined and hasattr(view, "before_token_lookup"):
                        view.before_token_lookup(conn)  # its statement travels with the lookup
                    return checked(*args, **kwargs)
            return checked(*args, **kwargs)

        return wrapper

    return decorator

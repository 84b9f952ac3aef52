"""Bearer tokens and the roles they carry.

A token is shown once when issued; the registry keeps only its SHA-256 (tokens are 256-bit
random secrets, so a fast hash is enough). Every token belongs to a centre: a submitter works
on that centre's records only; an analyst reads cross-centre aggregates; a centre_admin
issues and revokes its own centre's submitter and centre_admin tokens; an operator runs the
registry (centres, analyst, operator and metrics tokens) and can reach no centre's patients,
not even through a token it issues; a metrics token reads /metrics only. Before migration 0005
the operator role was called `admin`.
"""

import hashlib
import secrets
from dataclasses import dataclass
from functools import wraps

from flask import g, request

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


def authenticate() -> Principal:
    """The caller of the current request, from its bearer token; 401 when missing, unknown or revoked."""
    if "principal" in g:
        return g.principal
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("A bearer token is required.")
    with database().transaction() as conn:
        row = conn.execute(
            """SELECT t.id, t.role, t.centre_id, c.code AS centre_code FROM tokens t
               JOIN centres c ON c.id = t.centre_id
               WHERE t.token_hash = %s AND t.revoked_at IS NULL""",
            (hash_token(token.strip()),),
        ).fetchone()
    if row is None:
        raise _unauthorized("The token is unknown or revoked.")
    g.principal = Principal(row["id"], row["role"], row["centre_id"], row["centre_code"])
    return g.principal


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
                with database().request_transaction(pipelined=getattr(view, "pipelined", False)):
                    return checked(*args, **kwargs)
            return checked(*args, **kwargs)

        return wrapper

    return decorator

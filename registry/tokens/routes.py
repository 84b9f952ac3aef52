"""Tokens: operators and centre admins issue, list, rotate and revoke them (see `registry.tokens.policy`)."""

import marshmallow as ma
import psycopg.errors
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import ANALYST, CENTRE_ADMIN, METRICS, OPERATOR, SUBMITTER, authenticate, require
from registry.db import database
from registry.pagination import keyset_page, page_schema
from registry.problems import Problem, document_errors, field_error
from registry.tokens import policy, store
from registry.tokens.schemas import (IssuedTokenSchema, RotatedTokenSchema, TokenCreateSchema, TokenQuerySchema,
                                     TokenRotateSchema, TokenSchema)

blp = Blueprint("tokens", __name__, url_prefix="/v1/tokens",
                description="Bearer tokens (operators: registry-wide; centre admins: their own centre's)")
TokenPageSchema = page_schema(TokenSchema, "TokenPage")


def lifetime_days(requested: int | None) -> int:
    """The days a token is issued for: `requested` (422 naming the field above TOKEN_MAX_DAYS) or
    TOKEN_DEFAULT_DAYS."""
    settings = current_app.config["REGISTRY_SETTINGS"]
    if requested is None:
        return settings.token_default_days
    if requested > settings.token_max_days:
        raise Problem(422, "The token would live longer than the registry allows.", slug="invalid-input",
                      errors=[field_error("expires_in_days", f"At most {settings.token_max_days} (TOKEN_MAX_DAYS).")])
    return requested


@blp.route("/")
class Tokens(MethodView):
    @require(*policy.MANAGERS)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(TokenQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, TokenPageSchema)
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List tokens with who issued and revoked them, and when (never their secrets)"""
        scope = policy.scope(authenticate())
        if scope["centre_id"] is not None:
            if query.get("centre_id", scope["centre_id"]) != scope["centre_id"]:
                raise Problem(403, "A centre_admin token lists its own centre's tokens only.", slug="forbidden",
                              errors=[field_error("centre_id", "Not your centre.", "query")])
            query = {**query, "centre_id": scope["centre_id"]}
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_tokens(
                conn, after_id=after, limit=limit, filters=query, roles=scope["roles"]))

    @require(*policy.MANAGERS)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(TokenCreateSchema())
    @blp.response(201, IssuedTokenSchema)
    @document_errors(blp, 400, 401, 403, 413, 415, 422)
    def post(self, request):
        """Issue a token; the response is the only time its secret is shown"""
        principal = authenticate()
        policy.check_may_issue(principal, request["centre_id"], request["role"])
        days = lifetime_days(request.get("expires_in_days"))
        try:
            with database().transaction() as conn:
                row, token = store.issue_token(conn, request["centre_id"], request["role"],
                                               request.get("label"), actor=principal, expires_in_days=days)
        except psycopg.errors.ForeignKeyViolation:
            raise Problem(422, "No such centre.", slug="invalid-input",
                          errors=[field_error("centre_id", "No centre has this id.")]) from None
        return {**row, "token": token}


@blp.route("/<int:token_id>")
class Token(MethodView):
    @require(*policy.MANAGERS)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, TokenSchema)
    @document_errors(blp, 401, 403, 404)
    def delete(self, token_id):
        """Revoke a token (it answers 401 from now on)"""
        principal = authenticate()
        with database().transaction() as conn:
            # another centre's token is a 404 to a centre_admin, as if it did not exist
            row = store.revoke_token(conn, token_id, actor=principal, **policy.scope(principal))
        if row is None:
            raise Problem(404, "No such token.", slug="not-found")
        return row


@blp.route("/<int:token_id>/rotate")
class TokenRotation(MethodView):
    @require(SUBMITTER, CENTRE_ADMIN, ANALYST, OPERATOR, METRICS)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(TokenRotateSchema(), required=False)  # no body: the defaults
    @blp.response(201, RotatedTokenSchema)
    @document_errors(blp, 400, 401, 403, 404, 409, 413, 415, 422)
    def post(self, rotation, token_id):
        """Rotate a token: issue its successor (its secret shown once) and end it after a grace period"""
        principal = authenticate()
        itself = principal.token_id == token_id
        if not itself and principal.role not in policy.MANAGERS:
            raise Problem(403, f"A {principal.role} token rotates only itself.", slug="forbidden")
        with database().transaction() as conn:
            # another centre's token is a 404 to a centre_admin, as if it did not exist
            old = store.get_token_for_update(conn, token_id, **({} if itself else policy.scope(principal)))
            if old is None:
                raise Problem(404, "No such token.", slug="not-found")
            renews = policy.may_issue(principal, old["centre_id"], old["role"])
            if not renews and not itself:
                raise Problem(403, f"A {principal.role} token does not issue, so does not rotate, {old['role']} "
                                   "tokens.", slug="forbidden")
            if not renews and "expires_in_days" in rotation:
                raise Problem(403, "A token rotating itself keeps its expiry.", slug="forbidden", errors=[field_error(
                    "expires_in_days", f"Only a token that issues {old['role']} tokens sets a new lifetime.")])
            _check_rotatable(old)
            new, replaced, token = store.rotate_token(
                conn, old, rotation["grace_hours"], actor=principal,
                expires_in_days=lifetime_days(rotation.get("expires_in_days")) if renews else None,
                label=rotation.get("label", store.KEEP))
        return {**new, "token": token, "replaced": replaced}


def _check_rotatable(token: dict) -> None:
    """409 unless `token` is live and not rotated yet: one successor per token, and a token that no
    longer works has nothing to hand over (issue a new one)."""
    if token["revoked_at"] is not None:
        raise Problem(409, "The token is revoked: issue a new one.", slug="conflict")
    if token["successor_token_id"] is not None:
        raise Problem(409, f"The token was rotated already: its successor is token {token['successor_token_id']}.",
                      slug="conflict")
    if token["expired"]:
        raise Problem(409, "The token expired: issue a new one.", slug="conflict")

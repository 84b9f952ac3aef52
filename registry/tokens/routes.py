"""Tokens: operators and centre admins issue, list and revoke them (see `registry.tokens.policy`)."""

import marshmallow as ma
import psycopg.errors
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import authenticate, require
from registry.db import database
from registry.pagination import keyset_page, page_schema
from registry.problems import Problem, document_errors, field_error
from registry.tokens import policy, store
from registry.tokens.schemas import IssuedTokenSchema, TokenCreateSchema, TokenQuerySchema, TokenSchema

blp = Blueprint("tokens", __name__, url_prefix="/v1/tokens",
                description="Bearer tokens (operators: registry-wide; centre admins: their own centre's)")
TokenPageSchema = page_schema(TokenSchema, "TokenPage")


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
        try:
            with database().transaction() as conn:
                row, token = store.issue_token(conn, request["centre_id"], request["role"],
                                               request.get("label"), actor=principal)
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

"""Tokens: administrators issue, list and revoke them."""

import marshmallow as ma
import psycopg.errors
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import ADMIN, authenticate, require
from registry.db import database
from registry.pagination import keyset_page, page_schema
from registry.problems import Problem, document_errors, field_error
from registry.tokens import store
from registry.tokens.schemas import IssuedTokenSchema, TokenCreateSchema, TokenQuerySchema, TokenSchema

blp = Blueprint("tokens", __name__, url_prefix="/v1/tokens", description="Bearer tokens (admin)")
TokenPageSchema = page_schema(TokenSchema, "TokenPage")


@blp.route("/")
class Tokens(MethodView):
    @require(ADMIN)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(TokenQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, TokenPageSchema)
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List tokens (never their secrets)"""
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_tokens(conn, after_id=after, limit=limit,
                                                                             filters=query))

    @require(ADMIN)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(TokenCreateSchema())
    @blp.response(201, IssuedTokenSchema)
    @document_errors(blp, 400, 401, 403, 413, 415, 422)
    def post(self, request):
        """Issue a token; the response is the only time its secret is shown"""
        try:
            with database().transaction() as conn:
                row, token = store.issue_token(conn, request["centre_id"], request["role"],
                                               request.get("label"), actor=authenticate())
        except psycopg.errors.ForeignKeyViolation:
            raise Problem(422, "No such centre.", slug="invalid-input",
                          errors=[field_error("centre_id", "No centre has this id.")]) from None
        return {**row, "token": token}


@blp.route("/<int:token_id>")
class Token(MethodView):
    @require(ADMIN)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, TokenSchema)
    @document_errors(blp, 401, 403, 404)
    def delete(self, token_id):
        """Revoke a token (it answers 401 from now on)"""
        with database().transaction() as conn:
            row = store.revoke_token(conn, token_id, actor=authenticate())
        if row is None:
            raise Problem(404, "No such token.", slug="not-found")
        return row

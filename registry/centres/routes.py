"""Centres: operators add and list them; every token can read its own."""

import marshmallow as ma
import psycopg.errors
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import OPERATOR, authenticate, require
from registry.centres import store
from registry.centres.schemas import CentreCreateSchema, CentreSchema
from registry.db import database
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.problems import Problem, document_errors, field_error

blp = Blueprint("centres", __name__, url_prefix="/v1/centres", description="Centres (hospitals)")
CentrePageSchema = page_schema(CentreSchema, "CentrePage")


@blp.route("/")
class Centres(MethodView):
    @require(OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(PageQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, CentrePageSchema)
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List centres"""
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_centres(conn, after_id=after, limit=limit))

    @require(OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(CentreCreateSchema())
    @blp.response(201, CentreSchema)
    @document_errors(blp, 400, 401, 403, 409, 413, 415, 422)
    def post(self, centre):
        """Add a centre"""
        try:
            with database().transaction() as conn:
                return store.add_centre(conn, centre["code"], centre["name"], actor=authenticate())
        except psycopg.errors.UniqueViolation:
            raise Problem(409, f"A centre with code {centre['code']} exists already.", slug="conflict",
                          errors=[field_error("code", "Already taken.")]) from None


@blp.route("/<int:centre_id>")
class Centre(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, CentreSchema)
    @document_errors(blp, 401, 404)
    def get(self, centre_id):
        """Read a centre (operators any, others their own)"""
        principal = authenticate()
        if principal.role != OPERATOR and principal.centre_id != centre_id:
            raise Problem(404, "No such centre.", slug="not-found")
        with database().transaction() as conn:
            centre = store.get_centre(conn, centre_id)
        if centre is None:
            raise Problem(404, "No such centre.", slug="not-found")
        return centre



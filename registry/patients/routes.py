"""Patients of the caller's centre: submitters only; another centre's patient is a 404."""

import json

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import SUBMITTER, authenticate, require
from registry.db import database, pipelined
from registry.fhir import reading as fhir_form
from registry.fhir.media import FHIR_JSON, prefers_fhir
from registry.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.patients import store
from registry.fields import Ref
from registry.patients.schemas import PatientFieldsSchema, PatientInputSchema, PatientQuerySchema, PatientSchema
from registry.preconditions import ETAG_HEADER, IF_MATCH_PARAMETER, etag, require_if_match
from registry.problems import Problem, document_errors

blp = Blueprint("patients", __name__, url_prefix="/v1/patients",
                description="Pseudonymous patients of your centre (submitter tokens)")
PatientPageSchema = page_schema(PatientSchema, "PatientPage")


class PatientListQuerySchema(PageQuerySchema, PatientQuerySchema):
    pass


class PatientPatchSchema(PatientFieldsSchema):
    """Any subset of a patient's fields."""


class LiftErasureSchema(ma.Schema):
    ref = Ref(required=True, metadata={"description": "The ref of the erased patient, as your centre sent it",
                                       "example": "TJH-P-0999"})


FHIR_FORM = {"content_type": FHIR_JSON, "schema": {"type": "object"}, "success": True,
             "description": "The patient; with `Accept: application/fhir+json`, a FHIR R4 Patient (birth year only, "
                            "no ref)"}


def _not_found():
    return Problem(404, "Your centre has no such patient.", slug="not-found")


def _locked_patient(conn, patient_id: int) -> dict:
    patient = store.get_patient(conn, authenticate().centre_id, patient_id, for_update=True)
    if patient is None:
        raise _not_found()
    return patient


@blp.route("/")
class Patients(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(PatientListQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, PatientPageSchema)
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List your centre's patients"""
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_patients(
                conn, authenticate().centre_id, query, after, limit))

    @require(SUBMITTER)
    @pipelined
    @idempotent
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @blp.arguments(PatientInputSchema())
    @blp.response(201, PatientSchema, headers=ETAG_HEADER,
                  description="Created; the reply also echoes your ref, which is never shown again")
    @blp.alt_response(200, schema=PatientSchema, success=True,
                      description="A patient with this ref existed: updated (or unchanged)")
    @document_errors(blp, 400, 401, 403, 410, 413, 415, 422)
    def post(self, fields):
        """Create a patient, or update the one with this ref"""
        with database().transaction() as conn:
            patient, created = store.upsert_patient(conn, authenticate(), fields)
        reply = {**patient, "ref": fields["ref"]}
        return reply, 201 if created else 200, {"ETag": etag(patient), "Location": f"/v1/patients/{patient['id']}"}


@blp.route("/<int:patient_id>")
class Patient(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, PatientSchema, headers=ETAG_HEADER)
    @blp.alt_response(200, **FHIR_FORM)
    @document_errors(blp, 401, 403, 404)
    def get(self, patient_id):
        """Read a patient"""
        with database().transaction() as conn:
            patient = store.get_patient(conn, authenticate().centre_id, patient_id)
        if patient is None:
            raise _not_found()
        headers = {"ETag": etag(patient), "Vary": "Accept"}   # JSON or FHIR, by Accept
        if prefers_fhir():
            return Response(json.dumps(fhir_form.patient_resource(patient), ensure_ascii=False),
                            mimetype=FHIR_JSON, headers=headers)
        return patient, 200, headers

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(PatientFieldsSchema())
    @blp.response(200, PatientSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 412, 413, 415, 422, 428)
    def put(self, fields, patient_id):
        """Replace a patient's fields (If-Match required); consent `withdrawn` removes them from reports"""
        with database().transaction() as conn:
            current = _locked_patient(conn, patient_id)
            require_if_match(current)
            if "consent" not in request.get_json():
                # a replace that does not mention consent leaves it: restoring it must be said outright
                fields = fields | {"consent": current["consent"]}
            patient, _ = store.update_patient(conn, authenticate(), current, fields)
        return patient, 200, {"ETag": etag(patient)}

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(PatientPatchSchema(partial=True))
    @blp.response(200, PatientSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 412, 413, 415, 422, 428)
    def patch(self, changes, patient_id):
        """Change some of a patient's fields (If-Match required)"""
        sent = request.get_json()
        with database().transaction() as conn:
            current = _locked_patient(conn, patient_id)
            require_if_match(current)
            merged = {name: current[name] for name in store.PATIENT_FIELDS} | {
                name: changes.get(name) for name in sent}
            patient, _ = store.update_patient(conn, authenticate(), current, merged)
        return patient, 200, {"ETag": etag(patient)}

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(204)
    @document_errors(blp, 401, 403, 404)
    def delete(self, patient_id):
        """Erase a patient and every trace of theirs (right to erasure); their ref is refused from then on"""
        with database().transaction() as conn:
            if not store.erase_patient(conn, authenticate(), patient_id):
                raise _not_found()


@blp.route("/lift-erasure")
class LiftErasure(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(LiftErasureSchema())
    @blp.response(204)
    @document_errors(blp, 400, 401, 403, 404, 413, 415, 422)
    def post(self, fields):
        """Accept an erased patient's ref again (the patient consented again); audited"""
        with database().transaction() as conn:
            if not store.lift_erasure(conn, authenticate(), fields["ref"]):
                raise Problem(404, "Your centre erased no patient with this ref.", slug="not-found")

"""FHIR Bulk Data export of a centre's own records (docs/fhir.md, "Bulk export").

Follows the Bulk Data Access IG (https://hl7.org/fhir/uv/bulkdata/export.html):

    GET /fhir/$export?_type=Patient,Procedure&_since=...   Prefer: respond-async
        -> 202, Content-Location: <status URL>
    GET <status URL>   -> 200, the manifest (transactionTime, request, requiresAccessToken, output)
    GET <file URL>     -> 200, application/fhir+ndjson, one resource per line

Stateless, so it works on any number of app hosts with no job table: the status and file URLs
carry a token of the request (centre, types, _since, transactionTime, the kick-off URL), signed
with a key derived from REGISTRY_SECRET and expiring after EXPORT_LIFETIME. Nothing is
precomputed: a file is written while it is downloaded, streamed from the database through a
server-side cursor (constant memory whatever the registry's size), so the export is complete as
soon as it is kicked off and the status URL answers the manifest at once.

As of transactionTime: a file holds the records last changed at or before the export's
transactionTime (and after `_since`), as they are when the file is read. A record changed after
transactionTime is left out (the next export, `_since=<this transactionTime>`, carries it), and
one deleted or erased since is absent: PostgreSQL cannot read a past snapshot from another
request, and an erased patient must not come back.

Every URL needs a bearer token of the exporting centre (`requiresAccessToken: true`): the
signed token names the export, it does not grant it.
"""

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from flask import Response, request, stream_with_context, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from psycopg import sql

from registry import keys
from registry.auth import SUBMITTER, authenticate, require
from registry.db import database
from registry.fhir import mapping, reading
from registry.fhir.outcome import FhirError, fhir_response
from registry.fhir.routes import _refuse_unknown_parameters, blp, declare_capability
from registry.follow_ups import store as follow_ups
from registry.operations import store as operations
from registry.patients import store as patients

NDJSON = "application/fhir+ndjson"
# _outputFormat values meaning NDJSON (the IG's abbreviations included)
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")
EXPORTABLE_TYPES = mapping.SUPPORTED_TYPES
EXPORT_LIFETIME = timedelta(hours=24)
EXPORT_PURPOSE = "fhir-bulk-export"
# Rows fetched from the server-side cursor at a time
BATCH = 200


declare_capability("Patient", operation=[{
    "name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    "documentation": "Bulk Data export of the centre's own records (also at the system level, GET /fhir/$export)"}])


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys.purpose_key(EXPORT_PURPOSE), salt="bulk-export")


def _parse_since(text: str) -> datetime:
    try:
        since = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise FhirError(400, f"_since={text}: not a FHIR instant (e.g. 2024-01-31T00:00:00Z, with its time zone).",
                        code="invalid", expression=["_since"])
    return since


def _requested_types() -> list[str]:
    types = []
    for text in request.args.getlist("_type"):
        for name in text.split(","):
            name = name.strip()
            if name not in EXPORTABLE_TYPES:
                raise FhirError(400, f"_type: {name or '(empty)'} is not exported here "
                                     f"(exported: {', '.join(EXPORTABLE_TYPES)}).", code="not-supported")
            if name not in types:
                types.append(name)
    return types or list(EXPORTABLE_TYPES)


@blp.get("/$export")
@blp.get("/Patient/$export")
@require(SUBMITTER)
def kick_off():
    """Start an export of the caller's centre (system level and Patient level are the same: every
    exported resource belongs to a patient of the centre)."""
    _refuse_unknown_parameters("_type", "_since", "_outputFormat")
    if "respond-async" not in request.headers.get("Prefer", ""):
        raise FhirError(400, "A bulk export runs asynchronously: send the header Prefer: respond-async.",
                        code="required")
    output_format = request.args.get("_outputFormat", NDJSON).replace(" ", "+")
    if output_format not in OUTPUT_FORMATS:
        raise FhirError(400, f"_outputFormat={output_format} is not served: {NDJSON} only.", code="not-supported")
    since = request.args.get("_since")
    if since is not None:
        since = _parse_since(since).isoformat()
    types = _requested_types()
    with database().transaction() as conn:
        # the database's clock, the one that stamps updated_at
        transaction_time = conn.execute("SELECT now() AS now").fetchone()["now"]
    token = _signer().dumps({"centre": authenticate().centre_id, "types": types, "since": since,
                             "at": transaction_time.isoformat(), "request": request.url})
    status_url = url_for("fhir.export_status", token=token, _external=True)
    answer = fhir_response({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": "Export accepted: poll the Content-Location URL for its manifest."}]}, 202)
    answer.headers["Content-Location"] = status_url
    return answer


def _export(token: str) -> dict:
    """The export a token names, for the caller's centre only (another centre's is a 404, as
    any record of theirs)."""
    try:
        export = _signer().loads(token, max_age=int(EXPORT_LIFETIME.total_seconds()))
    except SignatureExpired:
        raise FhirError(404, "This export has expired: kick off a new one.", code="not-found") from None
    except BadSignature:
        raise FhirError(404, "No such export.", code="not-found") from None
    if export["centre"] != authenticate().centre_id:
        raise FhirError(404, "No such export.", code="not-found")
    return export


@blp.get("/$export-status/<token>")
@require(SUBMITTER)
def export_status(token: str):
    """The manifest: complete at once, since every file is written while it is downloaded."""
    _refuse_unknown_parameters()
    export = _export(token)
    transaction_time = datetime.fromisoformat(export["at"])
    manifest = {
        "transactionTime": reading._instant(transaction_time),
        "request": export["request"],
        "requiresAccessToken": True,
        "output": [{"type": name, "url": url_for("fhir.export_file", token=token, resource_type=name,
                                                   _external=True)} for name in export["types"]],
        "error": [],
    }
    expires = transaction_time + EXPORT_LIFETIME
    response = Response(json.dumps(manifest), mimetype="application/json")
    response.headers["Expires"] = expires.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    return response


@blp.get("/$export-file/<token>/<resource_type>.ndjson")
@require(SUBMITTER)
def export_file(token: str, resource_type: str):
    """One type's resources, one per line, streamed as they are read."""
    _refuse_unknown_parameters()
    accept = request.accept_mimetypes
    if accept and not any(accept[media_type] for media_type in (NDJSON, "application/ndjson")):
        raise FhirError(406, f"An export file is {NDJSON}; Accept asks for {request.headers.get('Accept')}.",
                        code="not-supported")
    export = _export(token)
    if resource_type not in export["types"]:
        raise FhirError(404, f"This export has no {resource_type} file.", code="not-found")
    window = {"centre_id": export["centre"], "until": datetime.fromisoformat(export["at"]),
              "since": datetime.fromisoformat(export["since"]) if export["since"] else None}
    lines = stream_with_context(_lines(resource_type, window))
    return Response(lines, mimetype=NDJSON, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(resource_type)}.ndjson"})


def _lines(resource_type: str, window: dict):
    for resource in _resources(resource_type, window):
        yield json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n"


_CHANGED = sql.SQL("centre_id = %(centre_id)s AND updated_at <= %(until)s"
                   " AND (%(since)s::timestamptz IS NULL OR updated_at > %(since)s)")


def _cursor_rows(conn, name: str, query: sql.Composable, window: dict):
    """Rows of `query`, BATCH at a time, from a server-side cursor (constant memory)."""
    with conn.cursor(name=name) as cursor:
        cursor.execute(query, window)
        while rows := cursor.fetchmany(BATCH):
            yield rows


def _resources(resource_type: str, window: dict):
    centre_id = window["centre_id"]
    with database().transaction() as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if resource_type == "Patient":
            query = sql.SQL("SELECT {} FROM patients WHERE {} ORDER BY id").format(
                sql.SQL(patients.PATIENT_COLUMNS), _CHANGED)
            for rows in _cursor_rows(conn, "export_patients", query, window):
                for row in rows:
                    yield reading.patient_resource(row)
            return
        query = sql.SQL("SELECT {} FROM operations WHERE {} ORDER BY id").format(sql.SQL(operations.SELECT_COLUMNS), _CHANGED)
        for rows in _cursor_rows(conn, "export_operations", query, window):
            # the batch's children and patients in one query each, while the cursor stays open
            for document in operations.documents_of(conn, centre_id, rows):
                for resource in reading.operation_resources(document):
                    if resource["resourceType"] == resource_type:
                        yield resource
        if resource_type == "Observation":
            query = sql.SQL(f"SELECT {follow_ups.SELECT_COLUMNS} FROM {follow_ups.FROM_JOINED}"
                            " WHERE f.centre_id = %(centre_id)s AND f.updated_at <= %(until)s"
                            " AND (%(since)s::timestamptz IS NULL OR f.updated_at > %(since)s) ORDER BY f.id")
            for rows in _cursor_rows(conn, "export_follow_ups", query, window):
                for row in rows:
                    yield reading.follow_up_resource(row)

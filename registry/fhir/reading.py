"""Reads and searches of a centre's records on /fhir (docs/fhir.md, "Reading records").

- `GET /fhir/{type}/{id}` for every resource type the mapping (registry.fhir.mapping) emits:
  Patient, Procedure (an operation), Condition, Device, AdverseEvent and Observation (the parts
  of an operation, and each follow-up);
- `GET /fhir/Procedure?identifier=&patient=&date=&_lastUpdated=&_id=&_count=` and
  `GET /fhir/Patient?identifier=&_lastUpdated=&_id=&_count=`: searchset Bundles paged by `next`
  links (keyset on the record id, so pages stay stable while records are added).

Submitter tokens only, as on /v1: a centre reaches its own records only (another centre's id
is a 404, exactly as an id that does not exist), and analysts get no patient-level data (403).
Resources are built by the same mapping as the write path, from the stored documents: no ref
is stored in clear, so none can appear.
"""

import re
from datetime import date, datetime, time, timedelta, timezone

from flask import request, url_for
from psycopg import sql
from urllib.parse import urlencode

from registry.auth import SUBMITTER, authenticate, require
from registry.db import database
from registry.fhir import mapping
from registry.fhir.outcome import FhirError, fhir_response
from registry.fhir.routes import _refuse_unknown_parameters, blp, declare_capability
from registry.follow_ups import store as follow_ups
from registry.operations import store as operations
from registry.pagination import decode_cursor, encode_cursor
from registry.patients import store as patients
from registry.problems import InvalidInput

# The resource types a read answers: those the mapping emits for a stored operation
READABLE_TYPES = mapping.SUPPORTED_TYPES
_ID_SYNTAX = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NUMBER = re.compile(r"[0-9]{1,19}")
DEFAULT_COUNT = 50
MAX_COUNT = 1000


def _parameter(name: str, kind: str, definition: str, documentation: str) -> dict:
    return {"name": name, "type": kind, "definition": f"http://hl7.org/fhir/SearchParameter/{definition}",
            "documentation": documentation}


_LAST_UPDATED = _parameter("_lastUpdated", "date", "Resource-lastUpdated",
                           "When the record was last changed; prefixes eq, ne, lt, le, gt, ge, sa, eb")
_ID = _parameter("_id", "token", "Resource-id", "Server ids; comma-separated values match any")
for _type in READABLE_TYPES:
    declare_capability(_type, interactions=("read",), versioning="versioned", readHistory=False)
declare_capability("Procedure", interactions=("search-type",), search_params=(
    _parameter("identifier", "token", "clinical-identifier",
               f"The centre's operation local_ref: {mapping.OPERATION_IDENTIFIER}|LOCAL_REF (or LOCAL_REF)"),
    _parameter("patient", "reference", "clinical-patient", "Patient/ID or ID"),
    _parameter("date", "date", "clinical-date", "The operation date; prefixes eq, ne, lt, le, gt, ge, sa, eb; "
                                                "a value names the range of its precision (2020: the whole year)"),
    _LAST_UPDATED, _ID))
declare_capability("Patient", interactions=("search-type",), search_params=(
    _parameter("identifier", "token", "Patient-identifier",
               f"The centre's patient ref: {mapping.PATIENT_REF_IDENTIFIER}|REF (hashed on arrival, never answered)"),
    _LAST_UPDATED, _ID))


def _not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(404, f"Your centre has no {resource_type} with id {resource_id}.")


# --- reads ---------------------------------------------------------------------------------

@blp.get(f"/<any({', '.join(READABLE_TYPES)}):resource_type>/<resource_id>")
@require(SUBMITTER)
def read_resource(resource_type: str, resource_id: str):
    """One resource of the caller's centre, by its server id."""
    _refuse_unknown_parameters()
    # FHIR ids are ASCII ([A-Za-z0-9-.]); str.isdigit() also takes '²' and '١٢'
    named = mapping.parse_resource_id(resource_type, resource_id) if _ID_SYNTAX.fullmatch(resource_id) else None
    if named is None:
        raise _not_found(resource_type, resource_id)
    kind, record_id, part = named
    centre_id = authenticate().centre_id
    with database().transaction() as conn:
        resource = _find(conn, centre_id, resource_type, resource_id, kind, record_id)
    if resource is None:
        raise _not_found(resource_type, resource_id)
    response = fhir_response(resource)
    response.headers["ETag"] = f'W/"{resource["meta"]["versionId"]}"'
    response.headers["Last-Modified"] = _http_date(resource["meta"]["lastUpdated"])
    return response


def _find(conn, centre_id: int, resource_type: str, resource_id: str, kind: str, record_id: int) -> dict | None:
    if record_id > 2**63 - 1:
        return None
    if kind == "patient":
        patient = patients.get_patient(conn, centre_id, record_id)
        return patient and patient_resource(patient)
    if kind == "follow_up":
        follow_up = follow_ups.get_follow_up(conn, centre_id, record_id)
        return follow_up and follow_up_resource(follow_up)
    document = operations.get_operation(conn, centre_id, record_id)
    if document is None:
        return None
    for resource in operation_resources(document):
        if resource["resourceType"] == resource_type and resource.get("id") == resource_id:
            return resource
    return None


def _meta(record: dict) -> dict:
    return {"versionId": str(record["version"]), "lastUpdated": _instant(record["updated_at"])}


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _http_date(instant: str) -> str:
    from werkzeug.http import http_date
    return http_date(datetime.fromisoformat(instant.replace("Z", "+00:00")))


def operation_resources(document: dict, follow_up_rows=()) -> list[dict]:
    """The resources of a stored operation (and of the follow-ups given), each with its `meta`:
    the operation's version and update time for its parts, the patient's for the Patient, each
    follow-up's for its Observation."""
    resources = mapping.operation_to_resources(document, follow_up_rows)
    follow_up_meta = {mapping.follow_up_resource_id(row["id"]): _meta(row) for row in follow_up_rows}
    patient_meta = _meta(document["patient"])
    for resource in resources:
        if resource["resourceType"] == "Patient":
            meta = patient_meta
        else:
            meta = follow_up_meta.get(resource.get("id")) or _meta(document)
        resource["meta"] = meta
    return resources


def patient_resource(patient: dict) -> dict:
    """A stored patient as its FHIR Patient (no identifier: the registry keeps no ref to give)."""
    resource = mapping.patient_to_resource(patient, server_id=str(patient["id"]))
    return {**resource, "meta": _meta(patient)}


def follow_up_resource(follow_up: dict) -> dict:
    resource = mapping.follow_up_to_resource(follow_up, follow_up["operation_id"], follow_up["patient_id"])
    return {**resource, "meta": _meta(follow_up)}


# --- search parameters -----------------------------------------------------------------------

_PREFIX = re.compile(r"^(eq|ne|lt|le|gt|ge|sa|eb|ap)?(\d.*)$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _bounds(parameter: str, text: str, instants: bool):
    """(prefix, start, end) of a date search value: the value names the range [start, end)
    at its own precision (`2020` is the whole year), as FHIR defines
    (http://hl7.org/fhir/R4/search.html#date)."""
    prefix, value = (_PREFIX.match(text) or re.match("()(x)", "x")).groups()
    try:
        if _DATE.match(value):
            parts = [int(p) for p in value.split("-")]
            start = date(parts[0], *(parts[1:] or [1]), *([1] if len(parts) < 3 else []))
            if len(parts) == 1:
                end = date(start.year + 1, 1, 1)
            elif len(parts) == 2:
                end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
            else:
                end = start + timedelta(days=1)
            if instants:
                start = datetime.combine(start, time(), timezone.utc)
                end = datetime.combine(end, time(), timezone.utc)
        elif instants and "T" in value:
            start = datetime.fromisoformat(value)
            if start.tzinfo is None:
                start = start.replace(tzinfo=timezone.utc)
            end = start + (timedelta(microseconds=1) if start.microsecond else timedelta(seconds=1))
        else:
            raise ValueError
    except (ValueError, OverflowError):
        kind = "a date or dateTime" if instants else "a date"
        raise FhirError(400, f"{parameter}={text}: not {kind} (YYYY, YYYY-MM, YYYY-MM-DD"
                             f"{', or YYYY-MM-DDThh:mm:ssZ' if instants else ''}), with an optional prefix "
                             "eq, ne, lt, le, gt, ge, sa or eb.", code="invalid") from None
    if prefix == "ap":
        raise FhirError(400, f"{parameter}: the prefix ap (approximately) is not supported; use ge and le.",
                        code="not-supported")
    return prefix or "eq", start, end


def _date_condition(column: sql.Composable, parameter: str, text: str, instants: bool, params: dict):
    """The SQL condition of one date search value on `column`."""
    prefix, start, end = _bounds(parameter, text, instants)
    low, high = f"p{len(params)}", f"p{len(params) + 1}"
    params[low], params[high] = start, end
    low_p, high_p = sql.Placeholder(low), sql.Placeholder(high)
    conditions = {
        "eq": sql.SQL("({c} >= {low} AND {c} < {high})"),
        "ne": sql.SQL("NOT ({c} >= {low} AND {c} < {high})"),
        "lt": sql.SQL("{c} < {low}"), "eb": sql.SQL("{c} < {low}"),
        "le": sql.SQL("{c} < {high}"),
        "gt": sql.SQL("{c} >= {high}"), "sa": sql.SQL("{c} >= {high}"),
        "ge": sql.SQL("{c} >= {low}"),
    }
    return conditions[prefix].format(c=column, low=low_p, high=high_p)


def _token(parameter: str, text: str) -> tuple[str | None, str]:
    """(system or None, value) of a token search value `system|value` or `value`, unescaping `\\|`."""
    parts = re.split(r"(?<!\\)\|", text, maxsplit=1)
    value = parts[-1].replace("\\|", "|").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")
    if "," in re.sub(r"\\,", "", parts[-1]):
        raise FhirError(400, f"{parameter}: one value at a time (a comma means several, not supported here).",
                        code="not-supported")
    return (parts[0] if len(parts) == 2 else None), value


def _ids(parameter: str, text: str, resource_type: str) -> list[int]:
    """Record ids named by `_id=1,2` or a reference `patient=Patient/7`; non-numeric ones name nothing."""
    ids = []
    for value in text.split(","):
        value = value.removeprefix(f"{resource_type}/") if parameter != "_id" else value
        if _NUMBER.fullmatch(value) and int(value) <= 2**63 - 1:
            ids.append(int(value))
    return ids


def _count() -> int:
    text = request.args.get("_count", str(DEFAULT_COUNT))
    if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= MAX_COUNT:
        raise FhirError(400, f"_count={text}: a page holds 1 to {MAX_COUNT} resources.", code="invalid")
    return int(text)


def _after() -> int | None:
    try:
        key = decode_cursor(request.args.get("_cursor"), 1)
    except InvalidInput:
        raise FhirError(400, "_cursor: not a page link this server issued; follow the Bundle's `next` link.",
                        code="invalid") from None
    return key[0] if key else None


# --- searches --------------------------------------------------------------------------------

class _Search:
    """The WHERE clause of a search, built from its parameters (each occurrence ANDed)."""

    def __init__(self, centre_id: int, alias: str):
        self.alias = alias
        self.params = {"centre_id": centre_id}
        self.conditions = [sql.SQL("{}.centre_id = %(centre_id)s").format(sql.Identifier(alias))]
        self.empty = False   # a condition no record can meet (another system's identifier)

    def column(self, name: str) -> sql.Composable:
        return sql.Identifier(self.alias, name)

    def equals_any(self, column: str, values: list) -> None:
        if not values:
            self.empty = True
            return
        name = f"p{len(self.params)}"
        self.params[name] = values
        self.conditions.append(sql.SQL("{} = ANY({})").format(self.column(column), sql.Placeholder(name)))

    def date(self, column: str, parameter: str, instants: bool) -> None:
        for text in request.args.getlist(parameter):
            self.conditions.append(_date_condition(self.column(column), parameter, text, instants, self.params))

    def where(self, after: int | None) -> sql.Composable:
        conditions = list(self.conditions)
        if after is not None:
            self.params["after"] = after
            conditions.append(sql.SQL("{} > %(after)s").format(self.column("id")))
        return sql.SQL(" AND ").join(conditions)


def _searchset(resources: list[dict], rows: list[dict], count: int, endpoint: str, *, linked: bool = True) -> dict:
    """A searchset Bundle of one page: `rows` holds up to count + 1 records, the extra one saying
    a next page exists. Not `linked`: no link repeats the search (it holds a patient's ref)."""
    bundle = {"resourceType": "Bundle", "type": "searchset"}
    if linked:
        bundle["link"] = [{"relation": "self", "url": request.url}]
    if len(rows) > count and linked:
        query = [(name, value) for name, value in request.args.items(multi=True) if name != "_cursor"]
        query.append(("_cursor", encode_cursor(rows[count - 1]["id"])))
        bundle["link"].append({"relation": "next",
                               "url": url_for(endpoint, _external=True) + "?" + urlencode(query)})
    if resources:
        bundle["entry"] = [{"fullUrl": url_for("fhir.read_resource", resource_type=resource["resourceType"],
                                               resource_id=resource["id"], _external=True),
                            "resource": resource, "search": {"mode": "match"}} for resource in resources]
    return bundle


@blp.get("/Procedure")
@require(SUBMITTER)
def search_procedures():
    """Operations of the caller's centre as Procedures, by local_ref, patient, date and last update."""
    _refuse_unknown_parameters("identifier", "patient", "date", "_lastUpdated", "_id", "_count", "_cursor")
    count, after = _count(), _after()
    search = _Search(authenticate().centre_id, "o")
    for text in request.args.getlist("identifier"):
        system, value = _token("identifier", text)
        if system not in (None, mapping.OPERATION_IDENTIFIER):
            search.empty = True
        search.equals_any("local_ref", [value])
    for text in request.args.getlist("patient"):
        search.equals_any("patient_id", _ids("patient", text, "Patient"))
    for text in request.args.getlist("_id"):
        search.equals_any("id", _ids("_id", text, "Procedure"))
    search.date("operation_date", "date", instants=False)
    search.date("updated_at", "_lastUpdated", instants=True)
    resources, rows = [], []
    if not search.empty:
        with database().transaction() as conn:
            rows = conn.execute(sql.SQL("SELECT {columns} FROM operations o WHERE {where} ORDER BY o.id LIMIT {limit}")
                                .format(columns=sql.SQL(operations.SELECT_COLUMNS), where=search.where(after),
                                        limit=sql.Literal(count + 1)), search.params).fetchall()
            documents = operations.documents_of(conn, search.params["centre_id"], rows[:count])
        for document in documents:
            [procedure] = [r for r in operation_resources(document) if r["resourceType"] == "Procedure"]
            resources.append(procedure)
    return fhir_response(_searchset(resources, rows, count, "fhir.search_procedures"))


@blp.get("/Patient")
@require(SUBMITTER)
def search_patients():
    """Patients of the caller's centre, by their ref (hashed, never answered), id and last update."""
    _refuse_unknown_parameters("identifier", "_lastUpdated", "_id", "_count", "_cursor")
    count, after = _count(), _after()
    centre_id = authenticate().centre_id
    search = _Search(centre_id, "p")
    for text in request.args.getlist("identifier"):
        system, value = _token("identifier", text)
        if system not in (None, mapping.PATIENT_REF_IDENTIFIER) or not value:
            search.empty = True
        search.equals_any("ref_hash", [patients.ref_hash(centre_id, value)] if value else [])
    for text in request.args.getlist("_id"):
        search.equals_any("id", _ids("_id", text, "Patient"))
    search.date("updated_at", "_lastUpdated", instants=True)
    rows = []
    if not search.empty:
        with database().transaction() as conn:
            rows = conn.execute(sql.SQL("SELECT {columns} FROM patients p WHERE {where} ORDER BY p.id LIMIT {limit}")
                                .format(columns=sql.SQL(patients.PATIENT_COLUMNS), where=search.where(after),
                                        limit=sql.Literal(count + 1)), search.params).fetchall()
    resources = [patient_resource(row) for row in rows[:count]]
    # a search by ref is answered without the links that would repeat the ref (a ref names at
    # most one patient, so there is never a next page)
    return fhir_response(_searchset(resources, rows, count, "fhir.search_patients",
                                    linked="identifier" not in request.args))


# --- /v1 records in FHIR form (Accept: application/fhir+json on /v1) --------------------------

def operation_bundle(conn, centre_id: int, document: dict) -> dict:
    """A stored operation with all its follow-ups as the `transaction` Bundle that, POSTed to
    /fhir, recreates it (the write path's conditional entries: resending updates, never duplicates)."""
    rows, after = [], None
    while page := follow_ups.list_follow_ups(conn, centre_id, document["id"], after, 1000):
        rows += page
        after = page[-1]["id"]
    return mapping.operation_to_bundle(document, rows)


# The bulk export's routes hang on the same blueprint and build on these reads: importing this
# module (as registry.fhir.routes and the /v1 record routes do) attaches both.
from registry.fhir import bulk_export  # noqa: E402,F401

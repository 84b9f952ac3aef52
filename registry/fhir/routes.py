"""The /fhir endpoints: the CapabilityStatement, the registry's terminology (read and search), and
the write path (POST /fhir with a transaction or batch Bundle).

The terminology is open, as /v1/vocabularies is: it is the registry's public vocabulary and holds
no patient data, and FHIR requires `metadata` to be readable by anyone who may connect. Writing
takes a submitter token of the centre, as /v1 does.
"""

import json
from datetime import datetime, timezone

from flask import Blueprint, current_app, request, url_for
from werkzeug.http import parse_options_header

from registry import accepts
from registry.auth import SUBMITTER, authenticate, require
from registry.db import database
from registry.fhir import terminology, writing
from registry.fhir.outcome import FHIR_JSON, FhirError, fhir_response, handle_error
from registry.idempotency import idempotent
from registry.strict_json import check_body

FHIR_VERSION = "4.0.1"
# What a client may ask for with Accept: FHIR's JSON media type, plain JSON, and the pre-R4 name
_ANSWERABLE = (FHIR_JSON, "application/json", "application/json+fhir")
# `_format` values meaning JSON (http://hl7.org/fhir/R4/http.html#mime-type)
_JSON_FORMATS = frozenset({"json", *_ANSWERABLE})
_STARTED = datetime.now(timezone.utc).replace(microsecond=0).isoformat()

blp = Blueprint("fhir", __name__, url_prefix="/fhir")
# Every error of a routed /fhir request (HTTPException, database outage, a bug) is an OperationOutcome;
# registry.problems sends those no route matched (unknown path, wrong method) here too.
blp.register_error_handler(Exception, handle_error)


@blp.record_once
def _answer_unrouted_errors(state):
    state.app.extensions.setdefault("error_formats", {})[blp.url_prefix] = handle_error


@blp.before_request
def negotiate():
    """406 unless the client takes JSON: `_format` when given (FHIR lets it override Accept), else Accept."""
    if request.endpoint == "fhir.export_file":
        return  # an export file is NDJSON: bulk_export.export_file checks Accept itself
    requested = request.args.get("_format")
    if requested is not None:
        # `_format=application/fhir+json` sent unescaped arrives with its '+' decoded as a space
        requested = requested.replace(" ", "+")
        if requested not in _JSON_FORMATS:
            raise FhirError(406, f"_format={requested} is not served: this server answers JSON only "
                                 f"(_format=json or {FHIR_JSON}).", code="not-supported")
    elif request.accept_mimetypes and not _takes_json(request.accept_mimetypes):
        raise FhirError(406, f"Accept asks for {request.headers.get('Accept')}: this server answers "
                             f"{FHIR_JSON} (application/json is accepted too).", code="not-supported")


def _takes_json(accept) -> bool:
    """Whether Accept names a JSON type this server answers, with a fhirVersion of R4 if it gives one.

    werkzeug's best_match compares media type parameters too, so it refused
    `application/fhir+json; fhirVersion=4.0`, the form FHIR defines for asking for R4
    (http://hl7.org/fhir/R4/versioning.html#mt-version).
    """
    for value, quality in accept:
        media_type, parameters = parse_options_header(value)
        version = parameters.get("fhirversion")
        if quality > 0 and (version is None or version in ("4.0", FHIR_VERSION)) and (
                media_type in ("*/*", "application/*") or media_type in _ANSWERABLE):
            return True
    return False


def _refuse_unknown_parameters(*known: str) -> None:
    """An unknown parameter is refused, not ignored: a filter silently dropped would return more
    than the client asked for (FHIR's strict handling, http://hl7.org/fhir/R4/search.html#errors)."""
    unknown = sorted(set(request.args) - {"_format", *known})
    if unknown:
        supported = ", ".join(known) if known else "none"
        raise FhirError(400, f"Parameter {', '.join(unknown)} is not supported here (supported: {supported}).",
                        code="not-supported")


@blp.get("/metadata")
def metadata():
    """The CapabilityStatement: exactly what this server does, nothing it does not."""
    _refuse_unknown_parameters("mode")
    mode = request.args.get("mode", "full")
    if mode != "full":
        raise FhirError(400, f"mode={mode} is not supported: only the full CapabilityStatement is served.",
                        code="not-supported")
    return fhir_response(capability_statement())


@blp.post("")
@blp.post("/")
@accepts("application/json", bulk=True)
@require(SUBMITTER)
@idempotent
def write_bundle():
    """Write a transaction or batch Bundle of operations, their patients and follow-ups."""
    _refuse_unknown_parameters()
    # A Bundle may hold many operations (a bulk body); its JSON is read as strictly as a /v1 record's
    check_body(request.get_data(cache=True))
    bundle = json.loads(request.get_data(cache=True))
    writing.refuse_deep_nesting(bundle)
    with database().transaction() as conn:  # the request's one transaction (see `require`)
        answer = writing.write_bundle(conn, authenticate(), bundle)
    return fhir_response(answer)


# What each resource type supports, as the CapabilityStatement lists it. A module adding routes on
# this blueprint (reads, search) declares them with `declare_capability`, so the statement lists
# exactly what is served.
_SEARCH_BY_URL = {"name": "url", "type": "uri", "definition": "http://hl7.org/fhir/SearchParameter/conformance-url",
                  "documentation": "The canonical URL, matched exactly; comma-separated values match any."}
_TERMINOLOGY = {"interaction": [{"code": "read"}, {"code": "search-type"}], "versioning": "no-version",
                "readHistory": False, "updateCreate": False, "searchParam": [_SEARCH_BY_URL]}
_WRITTEN_IN_BUNDLES = ("Written only as entries of a transaction or batch Bundle (POST /fhir), conditional on a "
                       "business identifier; see docs/fhir.md for the mapping.")
_RESOURCE_CAPABILITIES: dict[str, dict] = {
    "CodeSystem": dict(_TERMINOLOGY),
    "ValueSet": dict(_TERMINOLOGY),
    "Patient": {"documentation": _WRITTEN_IN_BUNDLES + " A Patient is created conditionally (ifNoneExist) on its "
                                                       "ref identifier, which the registry hashes and never answers.",
                "conditionalCreate": True},
    **{resource_type: {"documentation": _WRITTEN_IN_BUNDLES, "updateCreate": True, "conditionalUpdate": True}
       for resource_type in ("Procedure", "Condition", "Device", "AdverseEvent", "Observation")},
}


def declare_capability(resource_type: str, *, interactions: tuple[str, ...] = (), search_params: tuple[dict, ...] = (),
                       **fields) -> None:
    """Add interactions (`read`, `search-type`...), search parameters and other CapabilityStatement
    fields to a resource type's entry (created if new)."""
    entry = _RESOURCE_CAPABILITIES.setdefault(resource_type, {})
    known = [item["code"] for item in entry.get("interaction", [])]
    entry["interaction"] = entry.get("interaction", []) + [{"code": code} for code in interactions if code not in known]
    if not entry["interaction"]:
        del entry["interaction"]
    if search_params:
        entry["searchParam"] = entry.get("searchParam", []) + list(search_params)
    entry.update(fields)


def capability_statement() -> dict:
    base = url_for("fhir.metadata", _external=True).rsplit("/", 1)[0]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "publisher": current_app.config["API_TITLE"],
        "kind": "instance",
        "software": {"name": current_app.config["API_TITLE"], "version": current_app.config["API_VERSION"]},
        "implementation": {"description": "The registry's FHIR R4 endpoint", "url": base},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": FHIR_VERSION,
        "format": ["json", FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "The registry's vocabularies as CodeSystem and ValueSet, open like /v1/vocabularies; "
                             "operations, their patients and follow-ups written as transaction or batch Bundles "
                             "(POST /fhir) with a submitter token, through /v1's validation. Unknown search "
                             "parameters are refused (400).",
            "security": {"description": "Bearer tokens as on /v1: a centre's submitter token writes that centre's "
                                        "records only. Terminology and metadata are open."},
            "resource": [{"type": resource_type, **capabilities}
                         for resource_type, capabilities in _RESOURCE_CAPABILITIES.items()],
            "interaction": [{"code": "transaction", "documentation": "All or nothing: the first refused "
                                                                     "operation answers an OperationOutcome."},
                            {"code": "batch", "documentation": "Each operation (its Procedure and the entries "
                                                               "belonging to it) is written or refused on its own."}],
            "operation": [{"name": "export",
                           "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
        }],
    }


def _search(resources: list[dict], endpoint: str) -> dict:
    """A searchset Bundle of the resources `?url=` selects (each occurrence ANDed, commas ORed)."""
    _refuse_unknown_parameters("url")
    for value in request.args.getlist("url"):
        wanted = set(value.split(","))
        resources = [resource for resource in resources if resource["url"] in wanted]
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
              "link": [{"relation": "self", "url": request.url}]}
    if resources:  # FHIR JSON has no empty arrays (http://hl7.org/fhir/R4/json.html)
        bundle["entry"] = [{"fullUrl": url_for(endpoint, resource_id=resource["id"], _external=True),
                            "resource": resource, "search": {"mode": "match"}} for resource in resources]
    return bundle


def _read(resource_type: str, resource_id: str, build) -> dict:
    _refuse_unknown_parameters()
    name = terminology.find_name(resource_id)
    if name is None:
        raise FhirError(404, f"No {resource_type} with id {resource_id}.")
    return build(name)


@blp.get("/CodeSystem")
def search_code_systems():
    return fhir_response(_search(terminology.all_code_systems(), "fhir.read_code_system"))


@blp.get("/CodeSystem/<resource_id>")
def read_code_system(resource_id: str):
    return fhir_response(_read("CodeSystem", resource_id, terminology.code_system))


@blp.get("/ValueSet")
def search_value_sets():
    return fhir_response(_search(terminology.all_value_sets(), "fhir.read_value_set"))


@blp.get("/ValueSet/<resource_id>")
def read_value_set(resource_id: str):
    return fhir_response(_read("ValueSet", resource_id, terminology.value_set))


from registry.fhir import reading, bulk_export  # noqa: E402,F401 (routes on this blueprint)

"""The FHIR door's base: CapabilityStatement, the registry's vocabularies as CodeSystem/ValueSet,
and errors as OperationOutcome. Every resource is checked with a third-party FHIR library
(fhir.resources' R4B models, which match R4 for these resources)."""

import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.valueset import ValueSet

from registry import vocabulary

FHIR_JSON = "application/fhir+json"
MODELS = {"CapabilityStatement": CapabilityStatement, "CodeSystem": CodeSystem, "ValueSet": ValueSet,
          "Bundle": Bundle, "OperationOutcome": OperationOutcome}


def fhir(response, status=200, resource_type=None) -> dict:
    """The body of a FHIR answer, after checking status, content type and R4 validity."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    body = json.loads(response.get_data())
    if resource_type:
        assert body["resourceType"] == resource_type
    MODELS[body["resourceType"]].model_validate(body)  # raises on anything R4 does not allow
    return body


def issue_of(response, status: int, code: str) -> dict:
    body = fhir(response, status, "OperationOutcome")
    [issue] = body["issue"]
    assert issue["code"] == code
    assert issue["severity"] in ("error", "fatal")
    assert issue["diagnostics"]
    return issue


def test_metadata_lists_exactly_what_is_served(client):
    statement = fhir(client.get("/fhir/metadata"), 200, "CapabilityStatement")
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert set(statement["format"]) == {"json", FHIR_JSON}
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    assert {interaction["code"] for interaction in rest["interaction"]} == {"transaction", "batch"}
    # the system-level Bulk Data export, and no other operation ($validate, $everything...)
    assert rest["operation"] == [{"name": "export",
                                  "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]
    assert statement["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    resources = {resource["type"]: resource for resource in rest["resource"]}
    for resource_type in ("CodeSystem", "ValueSet"):
        assert {i["code"] for i in resources[resource_type]["interaction"]} == {"read", "search-type"}
        assert {p["name"] for p in resources[resource_type]["searchParam"]} == {"url"}
    # the clinical resources are written inside Bundles, conditionally (reads are declared by their module)
    assert resources["Patient"]["conditionalCreate"] is True
    for resource_type in ("Procedure", "Condition", "Device", "AdverseEvent", "Observation"):
        assert resources[resource_type]["conditionalUpdate"] is True
    written = {"Patient", "Procedure", "Condition", "Device", "AdverseEvent", "Observation"}
    assert set(resources) >= {"CodeSystem", "ValueSet"} | written
    from registry.fhir import routes
    declared = {name for name, entry in routes._RESOURCE_CAPABILITIES.items() if entry.get("interaction")}
    assert {name for name, resource in resources.items() if resource.get("interaction")} == declared
    assert statement["implementation"]["url"] == "http://localhost/fhir"


def test_metadata_is_open_and_answers_the_accept_a_client_sends(client):
    for accept in (FHIR_JSON, "application/json", "application/fhir+json; fhirVersion=4.0", "*/*",
                   "application/fhir+xml;q=0.9, application/fhir+json;q=0.8", None):
        headers = {"Accept": accept} if accept else {}
        fhir(client.get("/fhir/metadata", headers=headers), 200, "CapabilityStatement")
    # `_format` overrides Accept; an unescaped '+' in it reads as a space in a query string
    for requested in ("json", "application%2Ffhir%2Bjson", "application/fhir+json", "application/json"):
        fhir(client.get(f"/fhir/metadata?_format={requested}", headers={"Accept": "application/fhir+xml"}), 200)


def test_every_vocabulary_is_a_code_system_with_its_codes_and_labels(client):
    bundle = fhir(client.get("/fhir/CodeSystem"), 200, "Bundle")
    assert bundle["type"] == "searchset"
    # every vocabulary, and the registry's FHIR element codes (Observation codes, implant properties)
    assert bundle["total"] == len(vocabulary.ALL) + 1 == len(bundle["entry"])
    by_url = {entry["resource"]["url"]: entry for entry in bundle["entry"]}
    for name, terms in vocabulary.ALL.items():
        entry = by_url[f"https://registry.example.org/fhir/CodeSystem/{name.replace('_', '-')}"]
        system = entry["resource"]
        assert entry["search"]["mode"] == "match"
        assert (system["status"], system["content"], system["caseSensitive"]) == ("active", "complete", True)
        assert [(c["code"], c["display"]) for c in system["concept"]] == list(terms.items())
        assert system["count"] == len(terms)
        # The entry's fullUrl reads the same resource
        read = fhir(client.get(entry["fullUrl"].removeprefix("http://localhost")), 200, "CodeSystem")
        assert read == system


def test_the_registry_element_codes_are_a_code_system(client):
    from registry.fhir.terminology import REGISTRY_ELEMENTS

    system = fhir(client.get("/fhir/CodeSystem/registry-element"), 200, "CodeSystem")
    assert system["url"] == "https://registry.example.org/fhir/CodeSystem/registry-element"
    assert [(c["code"], c["display"]) for c in system["concept"]] == list(REGISTRY_ELEMENTS.items())
    assert "blood-loss" in REGISTRY_ELEMENTS


def test_code_systems_match_v1_vocabularies(client):
    listed = client.get("/v1/vocabularies/").get_json()
    for name, terms in listed.items():
        system = fhir(client.get(f"/fhir/CodeSystem/{name.replace('_', '-')}"), 200, "CodeSystem")
        assert [{"code": c["code"], "label": c["display"]} for c in system["concept"]] == terms


def test_each_value_set_composes_all_of_its_code_system(client):
    bundle = fhir(client.get("/fhir/ValueSet"), 200, "Bundle")
    assert bundle["total"] == len(vocabulary.ALL) + 1
    systems = {entry["resource"]["url"] for entry in fhir(client.get("/fhir/CodeSystem"))["entry"]}
    for entry in bundle["entry"]:
        value_set = entry["resource"]
        [include] = value_set["compose"]["include"]
        assert include == {"system": value_set["url"].replace("/ValueSet/", "/CodeSystem/")}
        assert include["system"] in systems
        system = fhir(client.get(f"/fhir/CodeSystem/{value_set['id']}"), 200, "CodeSystem")
        assert system["valueSet"] == value_set["url"]
        assert fhir(client.get(f"/fhir/ValueSet/{value_set['id']}"), 200, "ValueSet") == value_set
    assert len(systems) == bundle["total"]


@pytest.mark.parametrize("resource_type", ["CodeSystem", "ValueSet"])
def test_search_by_url(client, resource_type):
    base = f"https://registry.example.org/fhir/{resource_type}"
    one = fhir(client.get(f"/fhir/{resource_type}", query_string={"url": f"{base}/diagnosis"}), 200, "Bundle")
    assert [entry["resource"]["id"] for entry in one["entry"]] == ["diagnosis"]
    assert one["link"] == [{"relation": "self", "url": f"http://localhost/fhir/{resource_type}?url="
                                                       f"https://registry.example.org/fhir/{resource_type}/diagnosis"}]
    either = fhir(client.get(f"/fhir/{resource_type}", query_string={"url": f"{base}/sex,{base}/side"}))
    assert sorted(entry["resource"]["id"] for entry in either["entry"]) == ["sex", "side"]
    none = fhir(client.get(f"/fhir/{resource_type}", query_string={"url": f"{base}/no-such"}), 200, "Bundle")
    assert none["total"] == 0 and "entry" not in none  # FHIR JSON has no empty arrays


def test_unknown_ids_resource_types_and_paths_are_not_found_outcomes(client):
    for path in ("/fhir/CodeSystem/no-such", "/fhir/ValueSet/date_precision", "/fhir/no-such-type",
                 "/fhir/no-such-type/1"):
        issue_of(client.get(path), 404, "not-found")
    # the base takes Bundles (POST), it is not searched
    for path in ("/fhir", "/fhir/"):
        issue_of(client.get(path), 405, "not-supported")


def test_unknown_parameters_are_refused_not_ignored(client):
    issue = issue_of(client.get("/fhir/CodeSystem?name=Sex"), 400, "not-supported")
    assert "name" in issue["diagnostics"]
    issue_of(client.get("/fhir/ValueSet/sex?_summary=true"), 400, "not-supported")
    issue_of(client.get("/fhir/metadata?mode=terminology"), 400, "not-supported")


def test_a_format_other_than_json_is_406(client):
    issue_of(client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}), 406, "not-supported")
    issue_of(client.get("/fhir/CodeSystem/sex", headers={"Accept": "text/html"}), 406, "not-supported")
    issue_of(client.get("/fhir/CodeSystem?_format=xml"), 406, "not-supported")
    # FHIR R3 JSON is not what this server speaks
    issue_of(client.get("/fhir/metadata", headers={"Accept": "application/fhir+json; fhirVersion=3.0"}),
             406, "not-supported")
    issue_of(client.get("/fhir/metadata", headers={"Accept": "application/fhir+json;q=0"}), 406, "not-supported")


def test_writes_other_than_bundles_are_not_supported(client):
    response = client.post("/fhir/CodeSystem", data=json.dumps({"resourceType": "CodeSystem"}),
                           content_type=FHIR_JSON)
    issue_of(response, 405, "not-supported")
    assert "GET" in response.headers["Allow"]
    # A body in a media type the registry does not read is a 415, as on /v1
    issue_of(client.post("/fhir/CodeSystem", data="<CodeSystem/>", content_type="application/fhir+xml"),
             415, "not-supported")


def test_a_token_error_on_fhir_is_an_outcome_with_its_challenge(app, client):
    # No /fhir endpoint needs a token yet; one raising the registry's 401 answers an OperationOutcome.
    # This endpoint is outside the fhir blueprint: the path alone sends its error to FHIR's handler.
    from registry.auth import authenticate

    app.add_url_rule("/fhir/_needs_token", "needs_token", lambda: authenticate() and "")
    response = client.get("/fhir/_needs_token")
    issue_of(response, 401, "login")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_database_outage_or_a_bug_on_fhir_is_an_outcome(app, client):
    from registry.db import DatabaseUnavailable

    def outage():
        raise DatabaseUnavailable("down")

    def bug():
        raise KeyError("bug")

    # Endpoints named "fhir.*" belong to the fhir blueprint for Flask's error handler lookup,
    # as its routes do: a failure in a /fhir view reaches the blueprint's handler
    app.add_url_rule("/fhir/_outage", "fhir._outage", outage)
    app.add_url_rule("/fhir/_bug", "fhir._bug", bug)
    response = client.get("/fhir/_outage")
    issue_of(response, 503, "transient")
    assert response.headers["Retry-After"] == "5"
    issue_of(client.get("/fhir/_bug"), 500, "exception")


def test_v1_errors_stay_problem_json(client):
    response = client.get("/v1/no-such-path")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    response = client.get("/fhirish")
    assert response.mimetype == "application/problem+json"

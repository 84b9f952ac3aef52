"""The mapping between operation documents and FHIR R4 resources (registry.fhir.mapping), without a server."""

import pytest

from registry.fhir import mapping
from registry.validation import rules
from tests.fhir.helpers import demo_cases, every_score_case, validate

CASES = demo_cases()


@pytest.mark.parametrize("name, operation, follow_ups", CASES, ids=[case[0] for case in CASES])
def test_every_resource_of_every_demo_case_is_valid_r4(name, operation, follow_ups):
    bundle = validate(mapping.operation_to_bundle(operation, follow_ups))
    assert bundle["type"] == "transaction"
    types = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert types[:3] == ["Patient", "Procedure", "Condition"]
    assert set(types) <= set(mapping.SUPPORTED_TYPES)
    stored = dict(operation, id=12, patient_id=7,
                  patient={key: value for key, value in operation["patient"].items() if key != "ref"})
    for resource in mapping.operation_to_resources(stored, [dict(item, id=3) for item in follow_ups]):
        validate(resource)
        assert resource["id"]


def test_the_seed_case_maps_to_the_resources_the_docs_describe():
    operation, follow_ups = demo_cases()[0][1:]
    bundle = mapping.operation_to_bundle(operation, follow_ups)
    by_type = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry)
    [patient] = by_type["Patient"]
    assert patient["request"] == {"method": "POST", "url": "Patient",
                                  "ifNoneExist": "identifier=https://registry.example.org/fhir/sid/patient-ref|TJH-P-0001"}
    assert (patient["resource"]["gender"], patient["resource"]["birthDate"]) == ("male", "1973")
    [procedure] = by_type["Procedure"]
    assert procedure["request"] == {"method": "PUT", "url": "Procedure?identifier=https://registry.example.org/fhir/"
                                                            "sid/operation-local-ref|TJH-2016-146"}
    assert procedure["resource"]["performedDateTime"] == "2016"  # date_precision: year
    assert [site["coding"][0]["code"] for site in procedure["resource"]["bodySite"]] == [
        "cervical", "C3", "C4", "C5", "C6"]
    [condition] = by_type["Condition"]
    systems = {coding["system"]: coding["code"] for coding in condition["resource"]["code"]["coding"]}
    assert systems["http://www.orpha.net"] == "53" and systems["http://hl7.org/fhir/sid/icd-10"] == "Q78.2"
    observations = {entry["resource"]["code"]["coding"][0]["code"]: entry["resource"]
                    for entry in by_type["Observation"]}
    assert observations["blood-loss"]["valueQuantity"] == {"value": 300, "unit": "mL",
                                                           "system": "http://unitsofmeasure.org", "code": "mL"}
    assert observations["duration"]["valueQuantity"]["code"] == "min"
    [event] = by_type["AdverseEvent"]
    [instrument] = [entry for entry in by_type["Device"]
                    if entry["fullUrl"] == event["resource"]["suspectEntity"][1]["instance"]["reference"]]
    assert instrument["resource"]["type"]["coding"][0]["code"] == "drill_bit"
    extensions = {extension["url"].rsplit("/", 1)[1]: extension for extension in event["resource"]["extension"]}
    assert extensions["retained-fragment"]["valueBoolean"] is True
    assert extensions["spinal-level"]["valueCoding"]["code"] == "C4"


def test_the_same_document_always_gives_the_same_bundle():
    operation, follow_ups = demo_cases()[0][1:]
    assert mapping.operation_to_bundle(operation, follow_ups) == mapping.operation_to_bundle(operation, follow_ups)


def test_a_stored_document_names_its_patient_by_id_and_never_by_ref():
    operation, follow_ups = demo_cases()[0][1:]
    stored = dict(operation, id=12, patient_id=7,
                  patient={key: value for key, value in operation["patient"].items() if key != "ref"})
    bundle = mapping.operation_to_bundle(stored, follow_ups)
    assert bundle["entry"][0]["request"]["ifNoneExist"] == "_id=7"
    assert "TJH-P-0001" not in str(bundle)
    resources = mapping.operation_to_resources(stored, [dict(item, id=3) for item in follow_ups])
    assert resources[0]["id"] == "7" and "identifier" not in resources[0]
    assert resources[1]["id"] == "12" and resources[1]["subject"] == {"reference": "Patient/7"}
    assert {resource["id"] for resource in resources} >= {"12-blood-loss", "12-intraop-event-1", "follow-up-3"}


def test_conditional_urls_escape_search_separators():
    url = mapping.conditional_url("Procedure", mapping.OPERATION_IDENTIFIER, "A|B,C$D")
    assert mapping.parse_identifier_query(url.split("?", 1)[1]) == (mapping.OPERATION_IDENTIFIER, "A|B,C$D")


def test_the_documented_seed_bundle_is_what_the_mapping_makes():
    """docs/fhir-seed-bundle.json, the worked example of docs/fhir.md, is the code's own output."""
    import json
    from pathlib import Path

    documented = json.loads((Path(__file__).resolve().parents[2] / "docs" / "fhir-seed-bundle.json").read_text())
    assert documented == mapping.operation_to_bundle(*demo_cases()[0][1:])
    validate(documented)


def test_any_element_of_the_wrong_json_type_is_a_structural_error_never_an_exception():
    """Each element of the seed Bundle in turn replaced by a value of another JSON type (rotating
    through them): reading never raises, and the replacement is an error, unless the element is
    one the registry does not read (a display, a text, an id)."""
    import copy

    from tests.fhir.helpers import element_paths

    bundle = mapping.operation_to_bundle(*demo_cases()[0][1:])
    wrong_values = (None, [1], {"a": 1}, 7, "x", True)
    for number, path in enumerate(element_paths(bundle)):
        mutated = copy.deepcopy(bundle)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        wrong = next(value for value in wrong_values[number % 6:] + wrong_values
                     if type(value) is not type(parent[path[-1]]))
        parent[path[-1]] = wrong
        units, errors = mapping.bundle_to_documents(mutated)  # never raises
        assert errors or path[-1] in ("display", "text", "fullUrl") or path[-2:] == ("resource", "id"), path


def test_what_did_not_happen_is_refused_not_recorded():
    """A procedure not done, an observation entered in error, a potential adverse event: the
    registry records what happened, so these are errors at their status, never stored as if done."""
    bundle = mapping.operation_to_bundle(*demo_cases()[0][1:])
    changes = {"Procedure": ("status", "not-done"), "Observation": ("status", "entered-in-error"),
               "AdverseEvent": ("actuality", "potential")}
    for resource_type, (name, value) in changes.items():
        index = next(index for index, entry in enumerate(bundle["entry"])
                     if entry["resource"]["resourceType"] == resource_type)
        bundle["entry"][index]["resource"][name] = value
        _, errors = mapping.bundle_to_documents(bundle)
        assert f"Bundle.entry[{index}].resource.{name}" in [error["expression"] for error in errors]
        bundle["entry"][index]["resource"][name] = mapping.operation_to_bundle(
            *demo_cases()[0][1:])["entry"][index]["resource"][name]
    assert mapping.bundle_to_documents(bundle)[1] == []


def _observations(bundle) -> dict:
    """The bundle's Observations by part (`baseline-ndi-percent`, `follow-up`...)."""
    found = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation":
            identifier = resource["identifier"][0]["value"]
            found[identifier.split("#", 1)[1] if "#" in identifier else "follow-up"] = resource
    return found


def test_every_score_is_an_observation_coded_with_its_instrument_and_its_scale():
    operation, follow_ups = every_score_case()
    observations = _observations(validate(mapping.operation_to_bundle(operation, follow_ups)))
    pain = observations["baseline-pain-nrs-11-point-neck"]
    # the registry's coding first, then LOINC's
    assert [(coding["system"].rsplit("/", 1)[1], coding["code"]) for coding in pain["code"]["coding"]] == [
        ("score-instrument", "pain_nrs"), ("loinc.org", "72514-3")]
    assert pain["bodySite"]["coding"][0]["code"] == "neck"
    assert pain["valueQuantity"] == {"value": 7, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                     "code": "{score}"}
    assert pain["effectiveDateTime"] == "2016"  # the operation's date, as the JOA's
    assert observations["baseline-pain-nrs-11-point-arm"]["valueQuantity"]["value"] == 5
    eq5d = {extension["url"].rsplit("/", 1)[1]: extension for extension in
            observations["baseline-eq5d5l-index-5L"]["extension"]}
    assert eq5d["eq5d-value-set"]["valueCoding"]["code"] == "england"
    assert eq5d["score-maximum"]["valueDecimal"] == 1
    joa = {extension["url"].rsplit("/", 1)[1]: extension for extension in
           observations["baseline-joa-29-point"]["extension"]}
    assert (joa["score-version"]["valueCoding"]["code"], joa["score-maximum"]["valueDecimal"]) == ("29-point", 29)
    assert observations["preop-mjoa"]["valueInteger"] == 11
    components = [component for component in observations["follow-up"]["component"] if "extension" in component]
    assert [component["code"]["coding"][0]["code"] for component in components] == [
        "joa", "ndi", "odi", "eq5d5l_index", "pain_nrs", "pain_nrs"]
    sites = [extension["valueCoding"]["code"] for component in components for extension in component["extension"]
             if extension["url"].endswith("/pain-site")]
    assert sites == ["neck", "arm"]


def test_every_score_reads_back_from_its_bundle_as_sent():
    operation, follow_ups = every_score_case()
    [unit], errors = mapping.bundle_to_documents(mapping.operation_to_bundle(operation, follow_ups))
    assert errors == []
    # version and maximum filled in, as /v1 stores them
    full = rules.merged_scores({}, operation["baseline_scores"])
    assert unit.operation["preop_scores"] == {"mjoa": 11}
    assert [entry for entry in full if entry["instrument"] != "mjoa"] == [
        {"value_set": None, "site": None, **entry} for entry in unit.operation["baseline_scores"]]
    assert rules.merged_scores({}, follow_ups[0]["scores"]) == [
        {"value_set": None, "site": None, "version": None, **entry} for entry in unit.follow_ups[0]["scores"]]
    # each score's entry is a part of the operation, named as its server id will be
    assert "baseline-pain-nrs-11-point-neck" in unit.parts.values()
    assert unit.source("baseline_scores.5.value").endswith("resource.valueQuantity.value")


def test_the_seed_case_keeps_its_joa_as_before():
    operation, follow_ups = demo_cases()[0][1:]
    observations = _observations(mapping.operation_to_bundle(operation, follow_ups))
    assert observations["preop-joa"]["code"]["coding"][0]["code"] == "joa"
    assert observations["preop-joa"]["valueQuantity"]["value"] == 10
    [joa] = [component for component in observations["follow-up"]["component"]
             if component["code"]["coding"][0]["code"] == "joa"]
    assert joa == {"code": mapping.element("joa"), "valueQuantity": mapping.quantity(14, "{score}")}
    assert not [name for name in observations if name.startswith("baseline-")]

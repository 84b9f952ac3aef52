"""The compiled validator judges every document as the marshmallow schemas do.

Documents are generated from the JSON Schema of the published document (the same apispec
conversion as openapi.yaml; `from_json_schema` below covers the keywords apispec writes, since
hypothesis-jsonschema no longer runs on this Hypothesis) and then broken on purpose: wrong types,
out-of-range values, missing required fields, unknown fields, cross-field rules violated. Each
goes through both paths: the same decision, the same loaded document, the same errors (field,
pointer and message as /v1 answers them in problem+json `errors`).
"""

import copy
import datetime as dt
import json
from pathlib import Path

import marshmallow as ma
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.operations import service, store
from registry.operations.schemas import OperationInputSchema, OperationSchema
from registry.problems import flatten_messages
from registry.submissions.schemas import BulkOperationSchema
from registry.validation.compiled import Refused, compiled, json_schema

SEED_CASE = json.loads((Path(__file__).parents[2] / "registry" / "demo" / "seed-case.json").read_text())
SEED_FOLLOW_UP = json.loads((Path(__file__).parents[2] / "registry" / "demo" / "seed-case-follow-up.json").read_text())
SCHEMAS = (OperationInputSchema, BulkOperationSchema)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def from_json_schema(schema: dict, root: dict | None = None) -> st.SearchStrategy:
    """Documents valid by the JSON Schema's own keywords (as apispec writes them), and some not:
    optional properties come and go, dates may lie in the future, text holds any character."""
    root = root or schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return st.deferred(lambda: from_json_schema(target, root))
    if "anyOf" in schema:
        return st.one_of([from_json_schema(option, root) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return st.one_of([_of_type(kind, schema, root) for kind in types])


def _of_type(kind: str, schema: dict, root: dict) -> st.SearchStrategy:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.one_of(st.integers(0, 60), st.floats(schema.get("minimum"), schema.get("maximum"),
                                                       allow_nan=False))
    if kind == "string" and schema.get("format") == "date":
        return st.dates(dt.date(1890, 1, 1), dt.date.today() + dt.timedelta(days=3)).map(dt.date.isoformat)
    if kind == "string":  # mostly plain words (refs must be), sometimes any character at all
        plain = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .-]{0,8}[A-Za-z0-9]", fullmatch=True)
        return st.one_of(plain, plain, st.text(min_size=schema.get("minLength", 0),
                                               max_size=min(schema.get("maxLength", 20), 20)))
    if kind == "array":
        return st.lists(from_json_schema(schema["items"], root), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    required = set(schema.get("required", ()))
    properties = {name: from_json_schema(value, root) for name, value in schema["properties"].items()}
    return st.fixed_dictionaries({name: properties[name] for name in required},
                                 optional={name: value for name, value in properties.items() if name not in required})


def _answer(load, raw):
    """What /v1 would make of `raw`: ("loaded", document) or ("refused", problem+json errors)."""
    try:
        return "loaded", load(raw)
    except ma.ValidationError as error:
        return "refused", flatten_messages(error.messages, "json")


def _fast(schema_class, raw):
    try:
        return "loaded", compiled(schema_class).fast_load(copy.deepcopy(raw))
    except Refused:
        return "refused", None


def assert_same_judgement(schema_class, raw, *, fast_path_decides: bool):
    """Both paths answer alike; with `fast_path_decides`, the fast path alone reaches marshmallow's decision."""
    schema = schema_class()
    by_marshmallow = _answer(schema.marshmallow_load, copy.deepcopy(raw))
    assert _answer(schema.load, copy.deepcopy(raw)) == by_marshmallow
    decision, loaded = _fast(schema_class, raw)
    if decision == "loaded":  # never more lenient than marshmallow, and the same document
        assert by_marshmallow == ("loaded", loaded)
    elif fast_path_decides:
        assert by_marshmallow[0] == "refused", "the fast path refused a document marshmallow accepts"


def _bulk_seed():
    return dict(SEED_CASE, follow_ups=[dict(SEED_FOLLOW_UP, local_ref="FU-1")])


@pytest.mark.parametrize("schema_class", SCHEMAS)
def test_the_seed_case_loads_alike_on_the_fast_path(schema_class):
    document = _bulk_seed() if schema_class is BulkOperationSchema else SEED_CASE
    decision, loaded = _fast(schema_class, document)
    assert decision == "loaded"
    assert loaded == schema_class().marshmallow_load(copy.deepcopy(document))
    assert loaded["operation_date"] == dt.date(2016, 1, 1) and loaded["levels"] == {"from_": "C3", "to": "C6"}


@pytest.mark.parametrize("schema_class", SCHEMAS)
def test_documents_generated_from_the_published_schema_are_judged_alike(schema_class):
    seed = _bulk_seed() if schema_class is BulkOperationSchema else SEED_CASE

    @QUICK
    @given(from_json_schema(json_schema(schema_class)), st.data())
    def check(generated, data):
        # a whole generated document, or the seed case with some members generated (mostly accepted)
        members = data.draw(st.sets(st.sampled_from(sorted(generated))) if generated else st.just(set()))
        document = data.draw(st.sampled_from([generated, {**seed, **{name: generated[name] for name in members}}]))
        assert_same_judgement(schema_class, document, fast_path_decides=True)

    check()


# --- mutations of a valid document: each breaks one rule ------------------------------------------

TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()
WRONG_VALUES = [None, True, False, 0, -1, 12.0, 12.5, 1e300, 2**70, "", " ", "12", "x" * 5000, "C3\x00", "\ud800",
                [], ["a", "a"], {}, {"unknown": 1}, TOMORROW, "1899-12-31", "2016-02-30", "not-a-date"]

MUTATIONS = {
    "breakage without its instrument": lambda d: d["intraop_events"][0].pop("instrument"),
    "fragment on a dural tear": lambda d: d["intraop_events"][0].update(type="dural_tear"),
    "levels upside down": lambda d: d.update(levels={"from": "C6", "to": "C3"}),
    "levels off the column": lambda d: d.update(levels={"from": "C3", "to": "C9"}),
    "spinal region without levels": lambda d: d.pop("levels"),
    "both patient and patient_id": lambda d: d.update(patient_id=3),
    "neither patient nor patient_id": lambda d: d.pop("patient"),
    "operation tomorrow": lambda d: d.update(operation_date=TOMORROW),
    "born next year": lambda d: d["patient"].update(birth_year=dt.date.today().year + 1),
    "JOA in quarter points": lambda d: d.update(preop_scores={"joa": 10.25}),
    "JOA as a boolean": lambda d: d.update(preop_scores={"joa": True}),
    "blood loss as a float": lambda d: d.update(blood_loss_ml=300.0),
    "duration out of range": lambda d: d.update(duration_min=0),
    "implant of zero diameter": lambda d: d["instrumentation"]["implants"][0].update(diameter_mm=0),
    "implant diameter as text": lambda d: d["instrumentation"]["implants"][0].update(diameter_mm="4.5"),
    "a code twice": lambda d: d.update(procedures=["fusion", "fusion"]),
    "no procedures": lambda d: d.update(procedures=[]),
    "unknown field": lambda d: d.update(surgeon="Dr X"),
    "unknown nested field": lambda d: d["patient"].update(name="Jane"),
    "ref with a trailing space": lambda d: d["patient"].update(ref="TJH-P-0001 "),
    "ref with a zero-width space": lambda d: d["patient"].update(ref="TJH\u200bP"),
    "full-width ref": lambda d: d["patient"].update(ref="ＴＪＨ－０１"),
    "note with NUL": lambda d: d.update(notes="a\x00b"),
    "note with a tab": lambda d: d.update(notes="a\tb"),
    "missing local_ref": lambda d: d.pop("local_ref"),
    "events listed but said none": lambda d: d.update(intraop_events_status="none"),
    "complications occurred but none listed": lambda d: d.update(postop_complications_status="occurred"),
    "complications not recorded, list left out": lambda d: d.update(postop_complications_status="not_recorded")
    or d.pop("postop_complications"),
    "Bridwell I but not fused": lambda d: d.update(
        follow_ups=[dict(SEED_FOLLOW_UP, local_ref="F", fusion_status="not_fused", bridwell_grade="I")]),
    "Bridwell IV and not fused": lambda d: d.update(
        follow_ups=[dict(SEED_FOLLOW_UP, local_ref="F", fusion_status="not_fused", bridwell_grade="IV")]),
    "Bridwell without a fusion status": lambda d: d.update(
        follow_ups=[dict(SEED_FOLLOW_UP, local_ref="F", fusion_status=None, bridwell_grade="II")]),
    "SAVES grade 7": lambda d: d["intraop_events"][0].update(saves_grade="7"),
    "reported by someone unknown": lambda d: d["intraop_events"][0].update(reported_by="the janitor"),
    "revision not recorded": lambda d: d.update(
        follow_ups=[dict(SEED_FOLLOW_UP, local_ref="F", revision_surgery=None)]),
    "JOA without its version": lambda d: d.update(baseline_scores=[{"instrument": "joa", "value": 10}]),
    "JOA 17-point above 17": lambda d: d.update(baseline_scores=[{"instrument": "joa", "version": "17-point",
                                                                   "value": 18}]),
    "JOA 29-point below -6": lambda d: d.update(baseline_scores=[{"instrument": "joa", "version": "29-point",
                                                                   "value": -7}]),
    "NDI points in halves": lambda d: d.update(baseline_scores=[{"instrument": "ndi", "version": "50-point",
                                                                  "value": 12.5}]),
    "ODI with a wrong maximum": lambda d: d.update(baseline_scores=[{"instrument": "odi", "value": 40,
                                                                      "maximum": 50}]),
    "EQ-5D-5L index without its value set": lambda d: d.update(baseline_scores=[
        {"instrument": "eq5d5l_index", "value": 0.7}]),
    "NRS with a value set": lambda d: d.update(baseline_scores=[{"instrument": "pain_nrs", "value": 7,
                                                                  "value_set": "england"}]),
    "an instrument twice": lambda d: d.update(baseline_scores=[{"instrument": "pain_nrs", "value": 7, "site": "leg"},
                                                               {"instrument": "pain_nrs", "value": 5, "site": "leg"}]),
    "NRS without its site": lambda d: d.update(baseline_scores=[{"instrument": "pain_nrs", "value": 7}]),
    "ODI with a pain site": lambda d: d.update(baseline_scores=[{"instrument": "odi", "value": 40, "site": "back"}]),
    "NRS with an unknown site": lambda d: d.update(baseline_scores=[{"instrument": "pain_nrs", "value": 7,
                                                                     "site": "knee"}]),
    "legacy JOA disagreeing with the list": lambda d: d.update(preop_scores={"joa": 9}),
    "follow-up JOA disagreeing with its list": lambda d: d.update(follow_ups=[dict(
        SEED_FOLLOW_UP, local_ref="F", joa=13)]),
    "follow-up NRS above 10": lambda d: d.update(follow_ups=[dict(
        SEED_FOLLOW_UP, local_ref="F", scores=[{"instrument": "pain_nrs", "value": 11}])]),
    "not an object": lambda d: d.clear() or d.update({"__list__": True}),
}


@pytest.mark.parametrize("schema_class", SCHEMAS)
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_document_broken_on_purpose_is_judged_alike(schema_class, name):
    document = copy.deepcopy(_bulk_seed() if schema_class is BulkOperationSchema else SEED_CASE)
    MUTATIONS[name](document)
    raw = [] if "__list__" in document else document
    assert_same_judgement(schema_class, raw, fast_path_decides=False)


def _paths(node, path=()):
    """Every (path, value) of a JSON document, objects and lists included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, path + (index,))


def _with(document, path, value):
    document = copy.deepcopy(document)
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


_DELETE = object()


@QUICK
@given(st.data())
def test_any_member_of_a_valid_document_replaced_or_removed_is_judged_alike(data):
    document = _bulk_seed()
    paths = [path for path, _ in _paths(document) if path]
    path = data.draw(st.sampled_from(paths), label="path")
    value = data.draw(st.sampled_from([_DELETE, *WRONG_VALUES]), label="value")
    assert_same_judgement(BulkOperationSchema, _with(document, path, value), fast_path_decides=False)


@QUICK
@given(st.data())
def test_follow_ups_broken_on_purpose_are_judged_alike(data):
    follow_up = dict(SEED_FOLLOW_UP, local_ref="FU-1")
    name = data.draw(st.sampled_from(sorted(follow_up)), label="field")
    value = data.draw(st.sampled_from([_DELETE, *WRONG_VALUES]), label="value")
    broken = {key: val for key, val in follow_up.items() if key != name or value is _DELETE}
    if value is not _DELETE:
        broken[name] = value
    if data.draw(st.booleans(), label="revision reason without revision"):
        broken.update(revision_surgery=False, revision_reason="loosening")
    assert_same_judgement(BulkOperationSchema, dict(SEED_CASE, follow_ups=[broken]), fast_path_decides=False)


# --- the answer: a stored document dumped by the compiled dumper and by marshmallow ----------------

def _stored(document: dict, patient: dict) -> dict:
    """The document as the registry answers it after storing (without a database: the same functions)."""
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    columns, children = service.columns_and_children(document, patient["birth_year"])
    row = columns | {"id": 7, "centre_id": 1, "patient_id": patient["id"], "version": 2, "created_at": now,
                     "updated_at": now}
    return store.row_to_document(row, children, patient)


PATIENT = {"id": 3, "centre_id": 1, "sex": "female", "birth_year": 1961, "diagnosis": "ado_ii", "diagnosis_note": None,
           "genes": ["CLCN7"], "inheritance": None, "family_history": None, "consent": "active", "version": 1,
           "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
           "updated_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)}


@QUICK
@given(from_json_schema(json_schema(OperationInputSchema)), st.data())
def test_a_stored_document_is_answered_alike(generated, data):
    members = data.draw(st.sets(st.sampled_from(sorted(generated))) if generated else st.just(set()))
    sent = {**SEED_CASE, **{name: generated[name] for name in members}}
    try:
        document = OperationInputSchema().marshmallow_load(copy.deepcopy(sent))
    except ma.ValidationError:
        return
    patient = data.draw(st.sampled_from([PATIENT, dict(PATIENT, ref="TJH-P-0001", birth_year=None)]))
    stored = _stored(document, patient)
    schema = OperationSchema()
    assert json.dumps(schema.dump(stored)) == json.dumps(schema.marshmallow_dump(stored))

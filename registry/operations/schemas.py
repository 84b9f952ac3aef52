"""Wire contract for an operation document: the operation with its implants, intraoperative
events and postoperative complications, as a hospital system sends it in one piece.

Validation here is the product: every rule names its field, so a data manager can fix the
record. Derived values (vertebra and segment counts, instrumented, age at surgery) are
computed by the registry and returned, never accepted.
"""

import marshmallow as ma
from marshmallow import validate

from registry import vocabulary as v
from registry.fields import Code, Codes, HalfPointScore, Integer, PastDate, Ref, StrictBoolean, Text
from registry.patients.schemas import PatientInputSchema, PatientSchema
from registry.validation import rules
from registry.validation.compiled import CompiledDumping, CompiledLoading

MAX_IMPLANTS = 200
MAX_EVENTS = 50
# The lists whose assessment is stated by a `<list>_status` field (vocabulary.RECORDING_STATUS).
RECORDED_LISTS = ("intraop_events", "postop_complications")


def _raise(errors: dict[str, str]) -> None:
    """A cross-field rule's errors (registry.validation.rules) as marshmallow reports them."""
    if errors:
        raise ma.ValidationError({field: [message] for field, message in errors.items()})


class LevelsSchema(ma.Schema):
    """A range on the spinal column, OC, C1–C7, T1–T12, L1–L5, S1, S2, pelvis; from ≤ to."""

    from_ = Code(v.SPINAL_LEVEL, required=True, data_key="from")
    to = Code(v.SPINAL_LEVEL, required=True)

    @ma.validates_schema
    def ordered(self, data, **kwargs):
        _raise(rules.levels_ordered(data))


class ImplantSchema(ma.Schema):
    kind = Code(v.IMPLANT_KIND, required=True)
    level = Code(v.SPINAL_LEVEL, allow_none=True)
    side = Code(v.SIDE, allow_none=True)
    count = Integer(1, 100, load_default=1)
    diameter_mm = ma.fields.Float(validate=validate.Range(0, 50, min_inclusive=False), allow_nan=False, allow_none=True)
    length_mm = ma.fields.Float(validate=validate.Range(0, 1000, min_inclusive=False), allow_nan=False, allow_none=True)
    note = Text(500, allow_none=True)


class InstrumentationSchema(ma.Schema):
    system = Text(200, allow_none=True, metadata={"description": "e.g. VERTEX"})
    manufacturer = Text(200, allow_none=True, metadata={"description": "e.g. Medtronic Sofamor Danek"})
    implants = ma.fields.List(ma.fields.Nested(ImplantSchema), load_default=list,
                              validate=validate.Length(max=MAX_IMPLANTS))


class PreopScoresSchema(ma.Schema):
    joa = HalfPointScore(17, allow_none=True, metadata={"description": "JOA score, 0–17"})
    mjoa = Integer(0, 18, allow_none=True, metadata={"description": "Modified JOA score, 0–18"})


class ScoreSchema(ma.Schema):
    """One outcome score at one timepoint, on its instrument's version (vocabulary.SCORE_SCALES)."""

    instrument = Code(v.SCORE_INSTRUMENT, required=True)
    version = Code(v.SCORE_VERSION, allow_none=True, metadata={
        "description": "Required where an instrument's versions differ in scale (JOA 17-point or 29-point, NDI "
                       "50-point or percent); filled in for single-version instruments; ODI: 2.0 or 2.1a, "
                       "null when not recorded"})
    value = ma.fields.Float(required=True, allow_nan=False, validate=validate.Range(-1000, 1000),
                            metadata={"description": "On the version's scale (range and step checked)"})
    maximum = ma.fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(-1000, 1000), metadata={
        "description": "The scale's maximum: derived from instrument and version; if sent, must agree"})
    value_set = Code(v.EQ5D_VALUE_SET, allow_none=True, metadata={
        "description": "EQ-5D-5L index only (required there): the value set that produced the index"})
    site = Code(v.PAIN_SITE, allow_none=True, metadata={
        "description": "Pain NRS only (required there): where the pain is; records stored before it may lack it"})

    @ma.validates_schema
    def on_its_scale(self, data, **kwargs):
        _raise(rules.score_on_its_scale(data))


def score_list(description: str):
    return ma.fields.List(ma.fields.Nested(ScoreSchema), validate=validate.Length(max=len(v.SCORE_SCALES) + len(v.PAIN_SITE)),
                          metadata={"description": description})


class ImmobilizationSchema(ma.Schema):
    type = Code(v.IMMOBILIZATION, required=True)
    weeks = Integer(0, 104, allow_none=True)


class IntraopEventSchema(ma.Schema):
    type = Code(v.INTRAOP_EVENT, required=True)
    instrument = Code(v.INSTRUMENT, allow_none=True, metadata={"description": "Required for instrument_breakage"})
    instrument_detail = Text(500, allow_none=True, metadata={"description": "e.g. 2 mm drill bit, System 6 power drill"})
    retained_fragment = StrictBoolean(allow_none=True, metadata={"description": "Breakage only: fragment left in situ"})
    level = Code(v.SPINAL_LEVEL, allow_none=True)
    side = Code(v.SIDE, allow_none=True)
    site = Code(v.ANATOMIC_SITE, allow_none=True, metadata={"description": "e.g. lateral_mass"})
    grade = Code(v.CLASSINTRA_GRADE, allow_none=True, metadata={"description": "ClassIntra grade I–V"})
    saves_grade = Code(v.SAVES_GRADE, allow_none=True, metadata={"description": "SAVES-V2 grade 1–6"})
    reported_by = Code(v.REPORTED_BY, allow_none=True, metadata={"description": "Who reported it; null: not recorded"})
    management = Text(2000, allow_none=True)
    description = Text(2000, allow_none=True)

    @ma.validates_schema
    def breakage_names_its_instrument(self, data, **kwargs):
        _raise(rules.breakage_names_its_instrument(data))


class PostopComplicationSchema(ma.Schema):
    type = Code(v.POSTOP_COMPLICATION, required=True)
    days_after = Integer(0, 3650, allow_none=True, metadata={"description": "Days after the operation"})
    grade = Code(v.CLAVIEN_DINDO_GRADE, required=True, metadata={"description": "Clavien-Dindo grade"})
    saves_grade = Code(v.SAVES_GRADE, allow_none=True, metadata={"description": "SAVES-V2 grade 1–6"})
    reported_by = Code(v.REPORTED_BY, allow_none=True, metadata={"description": "Who reported it; null: not recorded"})
    management = Text(2000, allow_none=True)
    description = Text(2000, allow_none=True)


class OperationFieldsSchema(ma.Schema):
    """The fields of an operation document, inputs and outputs alike."""

    local_ref = Ref(required=True, metadata={"description": "The centre's own operation id: resubmitting it updates"})
    operation_date = PastDate(required=True)
    date_precision = Code(v.DATE_PRECISION, load_default="day",
                          metadata={"description": "How much of operation_date is known"})
    indication = Code(v.INDICATION, allow_none=True)
    indication_note = Text(500, allow_none=True)
    region = Code(v.REGION, required=True)
    approach = Code(v.APPROACH, allow_none=True)
    procedures = Codes(v.PROCEDURE, min_items=1, max_items=20, required=True)
    levels = ma.fields.Nested(LevelsSchema, allow_none=True,
                              metadata={"description": "Required for spinal regions"})
    instrumentation = ma.fields.Nested(InstrumentationSchema, allow_none=True)
    bone_graft = Codes(v.BONE_GRAFT, max_items=10, load_default=list)
    duration_min = Integer(1, 2880, allow_none=True, metadata={"description": "Skin to skin, minutes"})
    blood_loss_ml = Integer(0, 50000, allow_none=True, metadata={"description": "Estimated blood loss, mL"})
    transfusion = StrictBoolean(allow_none=True, metadata={"description": "true, false, or null: not recorded"})
    preop_scores = ma.fields.Nested(PreopScoresSchema, allow_none=True, metadata={
        "description": "Legacy form of baseline_scores: joa is its JOA 17-point score, mjoa its mJOA"})
    baseline_scores = score_list("Outcome scores before surgery, one per instrument; the JOA 17-point and "
                                 "mJOA entries are also read and written as preop_scores.joa / .mjoa")
    immobilization = ma.fields.Nested(ImmobilizationSchema, allow_none=True)
    intraop_events_status = Code(v.RECORDING_STATUS, metadata={"description": (
        "Were intraoperative events assessed? none, occurred (listed in intraop_events) or not_recorded. "
        "Left out: occurred when events are listed, none when intraop_events is sent empty, not_recorded "
        "when intraop_events is left out.")})
    intraop_events = ma.fields.List(ma.fields.Nested(IntraopEventSchema), validate=validate.Length(max=MAX_EVENTS))
    postop_complications_status = Code(v.RECORDING_STATUS, metadata={"description": (
        "Were postoperative complications assessed? none, occurred (listed in postop_complications) or "
        "not_recorded. Left out: as for intraop_events_status.")})
    postop_complications = ma.fields.List(ma.fields.Nested(PostopComplicationSchema),
                                          validate=validate.Length(max=MAX_EVENTS))
    notes = Text(4000, allow_none=True)

    @ma.validates_schema
    def spinal_regions_need_levels(self, data, **kwargs):
        _raise(rules.spinal_regions_need_levels(data))

    @ma.validates_schema
    def recording_status_agrees_with_lists(self, data, **kwargs):
        _raise(rules.recording_status_agrees_with_list(data, "intraop_events"))
        _raise(rules.recording_status_agrees_with_list(data, "postop_complications"))

    @ma.validates_schema
    def one_score_per_instrument(self, data, **kwargs):
        _raise(rules.one_score_per_instrument(data.get("baseline_scores"), "baseline_scores"))
        _raise(rules.scores_agree_with_legacy(data.get("preop_scores") or {}, data.get("baseline_scores"),
                                              "preop_scores."))

    @ma.post_load
    def scores_merged(self, data, **kwargs):
        """Every loaded document states its scores both ways: the full list, and the legacy fields."""
        if "baseline_scores" in data or "preop_scores" in data:
            data["baseline_scores"] = rules.merged_scores(data.get("preop_scores") or {}, data.get("baseline_scores"))
            legacy = rules.legacy_scores(data["baseline_scores"])
            data["preop_scores"] = legacy if any(value is not None for value in legacy.values()) else None
        return data

    @ma.post_load
    def recording_status_filled(self, data, **kwargs):
        """Every loaded document states both statuses, and both lists (empty when none)."""
        for name in RECORDED_LISTS:
            data[f"{name}_status"] = rules.recording_status(data, name)
            data.setdefault(name, [])
        return data


class OperationInputSchema(CompiledLoading, OperationFieldsSchema):
    """An operation as a centre submits it: the patient inline (by ref) or by registry id.

    A whole document loads through its compiled form (`registry.validation.compiled`): the same
    rules, decision and errors, about a sixth of the CPU."""

    patient = ma.fields.Nested(PatientInputSchema, metadata={"description": (
        "Inline patient, matched by ref. A new ref creates the patient; for a stored one, fields left out keep "
        "their stored value and a field that differs is refused (422) - correct a patient with PUT/PATCH "
        "/v1/patients/{id}. consent 'withdrawn' is applied; 'active' never restores a withdrawn consent.")})
    patient_id = Integer(1, 2**62, metadata={"description": "An existing patient of your centre"})

    @ma.validates_schema
    def one_patient(self, data, **kwargs):
        _raise(rules.one_patient(data))


class OperationSchema(CompiledDumping, OperationFieldsSchema):
    """A stored operation document, with the values the registry derives (dumped by its compiled
    form, `registry.validation.compiled.compiled_dumper`: the same document, about a quarter of the CPU)."""

    id = ma.fields.Integer(dump_only=True)
    patient_id = ma.fields.Integer(dump_only=True)
    patient = ma.fields.Nested(PatientSchema, dump_only=True)
    vertebra_count = ma.fields.Integer(dump_only=True, allow_none=True, metadata={"description": "C3–C6 is 4"})
    segment_count = ma.fields.Integer(dump_only=True, allow_none=True, metadata={"description": "C3–C6 is 3"})
    instrumented = ma.fields.Boolean(dump_only=True)
    age_at_surgery = ma.fields.Integer(dump_only=True, allow_none=True,
                                       metadata={"description": "Operation year minus birth year"})
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class OperationQuerySchema(ma.Schema):
    date_from = ma.fields.Date(metadata={"description": "Operations on or after this date"})
    date_to = ma.fields.Date(metadata={"description": "Operations on or before this date"})
    diagnosis = Code(v.DIAGNOSIS)
    approach = Code(v.APPROACH)
    region = Code(v.REGION)
    procedure = Code(v.PROCEDURE)
    patient_id = Integer(1, 2**62, strict=False)
    local_ref = Ref()
    updated_since = ma.fields.AwareDateTime(metadata={"description": "Only operations changed at or after this time"})

    @ma.validates_schema(skip_on_field_errors=False)
    def date_range_ordered(self, data, **kwargs):
        if "date_from" in data and "date_to" in data and data["date_from"] > data["date_to"]:
            raise ma.ValidationError("Must not be before date_from.", "date_to")

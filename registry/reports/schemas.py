"""Wire contract of the reports: query strings in, report documents out."""

import marshmallow as ma
from marshmallow import validate

from registry import vocabulary as v
from registry.reports import definitions as d
from registry.reports import scores
from registry.reports.service import FUNNEL_MEASURES
from registry.reports.store import DIMENSIONS, INTRAOP_EVENT_TYPES, REPORTERS


class CommaList(ma.fields.List):
    """A list given as repeated parameters (`?a=x&a=y`), comma-separated (`?a=x,y`), or both.

    An empty element (`?group_by=`, `?approach=anterior,`) is refused like any value outside
    the list's codes, as the published schema says, rather than read as "not given"."""

    def _deserialize(self, value, attr, data, **kwargs):
        items = value if isinstance(value, (list, tuple)) else [value]
        split = [part.strip() for item in items for part in str(item).split(",")]
        return super()._deserialize(split, attr, data, **kwargs)


def _codes(vocabulary, description):
    return CommaList(ma.fields.String(validate=validate.OneOf(list(vocabulary))),
                     metadata={"description": description + " (repeat or comma-separate for several)"})


# The measures of the complications and fusion rows, for `measure=` (the service checks that
# a name belongs to the report asked for).
MEASURE_NAMES = ["intraop_event", "instrument_breakage", "intraop_event_types", "intraop_events_not_recorded",
                 "intraop_event_by_reporter", "postop_complication", "major_complication",
                 "postop_complications_not_recorded", "postop_complication_by_reporter",
                 "postop_timing_not_recorded", "major_timing_not_recorded", "blood_loss_ml",
                 "duration_min", "fusion_operations", "fusion", "pseudarthrosis", "indeterminate", "not_assessed",
                 "implant_failure", "revision", "implant_survival", "revision_survival"]


class ReportQuerySchema(ma.Schema):
    """Grouping and filters shared by every report."""

    group_by = CommaList(
        ma.fields.String(validate=validate.OneOf(list(DIMENSIONS))),
        validate=validate.Length(max=2, error="Group by at most two dimensions."),
        metadata={"description": "One or two of: " + ", ".join(DIMENSIONS)
                  + ". By procedure, an operation counts in each of its procedures' groups."})
    approach = _codes(v.APPROACH, "Only these approaches")
    region = _codes(v.REGION, "Only these regions")
    procedure = _codes(v.PROCEDURE, "Only operations including one of these procedures")
    diagnosis = _codes(v.DIAGNOSIS, "Only patients with these diagnoses")
    indication = _codes(v.INDICATION, "Only these indications")
    instrumented = ma.fields.Boolean(metadata={"description": "Only instrumented (true) or uninstrumented (false)"})
    levels = CommaList(ma.fields.Integer(validate=validate.Range(0, 30)),
                       metadata={"description": "Only these vertebra counts"})
    year = CommaList(ma.fields.Integer(validate=validate.Range(1900, 2200)),
                     metadata={"description": "Only operations in these years"})
    centre = CommaList(ma.fields.String(validate=validate.Regexp(r"^[A-Z0-9][A-Z0-9_-]{1,31}$",
                                                                 error="Not a centre code.")),
                       metadata={"description": "Only these centres (codes); a submitter may name only its own, "
                                                "an analyst one centre or none (all)"})
    date_from = ma.fields.Date(metadata={"description": "Operations on or after this date "
                                                        "(cross-centre readers: the 1st of a month)"})
    date_to = ma.fields.Date(metadata={"description": "Operations on or before this date "
                                                      "(cross-centre readers: the last day of a month)"})
    unit = ma.fields.String(validate=validate.OneOf(d.UNITS), metadata={
        "description": "Unit of analysis: operation (default, every operation) or patient (each patient's first "
                       "operation). Not for /centres"})
    window = ma.fields.String(validate=validate.OneOf(list(d.WINDOWS)), metadata={
        "description": "Complications only: postoperative complications within 30 or 90 days (days_after), over "
                       "operations at least that old, with complications of unrecorded timing counted apart; "
                       "any (default): at any time, over every operation"})
    major = ma.fields.String(validate=validate.OneOf(d.MAJOR), metadata={
        "description": "Complications only: a major complication is Clavien-Dindo IIIa or worse (clavien, default), "
                       "or also an intraoperative event of ClassIntra III or worse (clavien_or_classintra)"})
    timepoint = ma.fields.String(validate=validate.OneOf(d.TIMEPOINTS), metadata={
        "description": "Outcomes and scores only: latest (default: the latest follow-up recording JOA or mJOA) or 12m "
                       "(the follow-up closest to 12 months within 9-15 months); JOA, mJOA and the recovery rate "
                       "all from that one visit. Scores: each outcome's own latest (or closest to 12 months) "
                       "follow-up that recorded it"})
    reported_by = _codes(v.REPORTED_BY, "Complications only: count only the intraoperative events and postoperative "
                                        "complications reported by these sources (denominators unchanged), to compare "
                                        "surgeon-reported rates with the others")
    measure = CommaList(ma.fields.String(validate=validate.OneOf(MEASURE_NAMES)), metadata={
        "description": "Complications and fusion only: the measures each row carries (default all); one or more of "
                       + ", ".join(MEASURE_NAMES) + " (repeat or comma-separate for several)"})
    format = ma.fields.String(validate=validate.OneOf(["json", "csv", "svg", "png", "fhir"]), metadata={
        "description": "csv for a CSV download (or send Accept: text/csv); svg or png for the report "
                       "drawn as a plot (or send Accept: image/svg+xml or image/png); fhir for a FHIR R4 "
                       "MeasureReport (or send Accept: application/fhir+json)"})

    @ma.validates_schema
    def dates_in_order(self, data, **kwargs):
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ma.ValidationError("Must not be before date_from.", "date_to")

    @ma.validates("group_by")
    def distinct_dimensions(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ma.ValidationError("Name each dimension once.")


class FusionQuerySchema(ReportQuerySchema):
    min_months = ma.fields.Integer(load_default=12, validate=validate.Range(0, 1200), metadata={
        "description": "Follow-ups at or after this many months decide fusion (default 12)"})
    assessment = _codes(v.ASSESSMENT, "Only fusion operations whose deciding follow-up used these methods")
    failure_window = ma.fields.String(validate=validate.OneOf(list(d.FAILURE_WINDOWS)), metadata={
        "description": "Implant failure and revision within 12, 24 or 60 months (over operations whose status "
                       "then is known: the event by then, or a follow-up at or after it); any (default): at any "
                       "follow-up; km: the Kaplan-Meier estimate of freedom from implant failure and from revision at 12, "
                       "24 and 60 months (implant_survival, revision_survival), with its 95 % interval and the "
                       "number at risk"})


class CentresQuerySchema(ReportQuerySchema):
    measure = ma.fields.String(load_default="intraop_event", validate=validate.OneOf(list(FUNNEL_MEASURES)),
                               metadata={"description": "The rate compared across centres"})

    @ma.validates("group_by")
    def one_stratum(self, value, **kwargs):
        if len(value) > 1 or "centre" in value:
            raise ma.ValidationError("Centres are the rows: group by at most one other dimension (a stratum).")


# --- report documents ----------------------------------------------------------------------

class ProportionSchema(ma.Schema):
    numerator = ma.fields.Integer(allow_none=True)
    denominator = ma.fields.Integer(allow_none=True)
    rate = ma.fields.Float(allow_none=True)
    ci_low = ma.fields.Float(allow_none=True, metadata={"description": "Wilson 95 % interval, lower bound"})
    ci_high = ma.fields.Float(allow_none=True, metadata={"description": "Wilson 95 % interval, upper bound"})
    suppressed = ma.fields.String(allow_none=True, metadata={"description": "primary, secondary or null"})


class SummarySchema(ma.Schema):
    n = ma.fields.Integer(allow_none=True)
    mean = ma.fields.Float(allow_none=True)
    median = ma.fields.Float(allow_none=True)
    q1 = ma.fields.Float(allow_none=True, metadata={"description": "First quartile (percentile_cont 0.25)"})
    q3 = ma.fields.Float(allow_none=True, metadata={"description": "Third quartile (percentile_cont 0.75)"})
    suppressed = ma.fields.String(allow_none=True)


class SuppressionSchema(ma.Schema):
    applied = ma.fields.Boolean()
    threshold = ma.fields.Integer()


class DisclosureControlSchema(ma.Schema):
    method = ma.fields.String(metadata={"description": "cell-key perturbation"})
    max_noise = ma.fields.Integer(metadata={"description": "Largest change of a published count"})
    noise_variance = ma.fields.Float(metadata={"description": "Variance of the noise of a count of 2 or more"})
    threshold = ma.fields.Integer(metadata={"description": "Published counts below it (and above 0) are withheld"})
    summary_min_n = ma.fields.Integer(metadata={
        "description": "Published n a summary needs for its mean, median and quartiles (below: n alone)"})
    rates = ma.fields.String(metadata={"description": "Rates, intervals and means use the published counts"})


class RowSchema(ma.Schema):
    group = ma.fields.Dict(metadata={"description": "The group's value of each group_by dimension; null: not recorded"})
    suppressed = ma.fields.String(allow_none=True, metadata={
        "description": "primary (a published count below the threshold) or null"})
    operations = ma.fields.Integer(allow_none=True)


class SurvivalSchema(ma.Schema):
    at_risk = ma.fields.Integer(allow_none=True, metadata={
        "description": "Operations still followed at the time point (published count for cross-centre readers)"})
    events = ma.fields.Integer(allow_none=True, metadata={
        "description": "Events by the time point (submitters only; null for cross-centre readers)"})
    estimate = ma.fields.Float(allow_none=True, metadata={"description": "Kaplan-Meier freedom from the event"})
    ci_low = ma.fields.Float(allow_none=True, metadata={
        "description": "95 % interval, lower bound (Greenwood variance, log-log scale); null when the estimate is 0 or 1"})
    ci_high = ma.fields.Float(allow_none=True, metadata={"description": "95 % interval, upper bound"})
    suppressed = ma.fields.String(allow_none=True)


SurvivalAtSchema = ma.Schema.from_dict({str(t): ma.fields.Nested(SurvivalSchema) for t in d.SURVIVAL_MONTHS},
                                      name="SurvivalAt")


def _survival():
    return ma.fields.Nested(SurvivalAtSchema, metadata={
        "description": "failure_window=km only: Kaplan-Meier at " + ", ".join(map(str, d.SURVIVAL_MONTHS)) + " months"})


def _proportion():
    return ma.fields.Nested(ProportionSchema)


def _summary():
    return ma.fields.Nested(SummarySchema)


class ComplicationsRowSchema(RowSchema):
    intraop_event = _proportion()
    instrument_breakage = _proportion()
    intraop_event_types = ma.fields.Nested(ma.Schema.from_dict(
        {t: _proportion() for t in INTRAOP_EVENT_TYPES}, name="IntraopEventTypes"))
    intraop_events_not_recorded = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations whose intraoperative events were not recorded, over every operation; the "
                       "event rates are over the others"})
    intraop_event_by_reporter = ma.fields.Nested(ma.Schema.from_dict(
        {source: _proportion() for source in REPORTERS}, name="IntraopEventByReporter"), metadata={
        "description": "Operations with >= 1 intraoperative event reported by each source (not_recorded: no source "
                       "given), over the operations whose events were recorded; not with window="})
    postop_complication = _proportion()
    postop_complication_by_reporter = ma.fields.Nested(ma.Schema.from_dict(
        {source: _proportion() for source in REPORTERS}, name="PostopComplicationByReporter"), metadata={
        "description": "Operations with >= 1 postoperative complication reported by each source, over the "
                       "operations whose complications were recorded: surgeon-reported beside the others; "
                       "not with window="})
    major_complication = _proportion()
    postop_complications_not_recorded = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations whose postoperative complications were not recorded, over every operation "
                       "(within a window: over those old enough); the complication rates are over the others"})
    postop_timing_not_recorded = _proportion()
    major_timing_not_recorded = _proportion()
    blood_loss_ml = _summary()
    duration_min = _summary()


class FusionRowSchema(RowSchema):
    fusion_operations = ma.fields.Integer(allow_none=True)
    fusion = _proportion()
    pseudarthrosis = _proportion()
    indeterminate = _proportion()
    not_assessed = _proportion()
    implant_failure = _proportion()
    revision = _proportion()
    implant_survival = _survival()
    revision_survival = _survival()


class OutcomesRowSchema(RowSchema):
    joa_preop = _summary()
    joa_latest = _summary()
    joa_recovery_rate = _summary()
    mjoa_preop = _summary()
    mjoa_latest = _summary()


def _outcome_schema(outcome) -> type:
    fields = {
        "pairs": ma.fields.Integer(allow_none=True, metadata={
            "description": "Operations with a baseline and a follow-up score of this instrument, version, site "
                           "and value set"}),
        "unpaired": ma.fields.Integer(allow_none=True, metadata={
            "description": "Operations with a baseline score but no follow-up score of the same scale"}),
        "baseline": _summary(), "follow_up": _summary(),
        "change": ma.fields.Nested(SummarySchema, metadata={
            "description": "Follow-up minus baseline, signed so that an improvement is positive"}),
    }
    if outcome.mcid:
        fields["reaches_mcid"] = ma.fields.Nested(ProportionSchema, metadata={
            "description": f"Pairs improving by at least {outcome.mcid[0]:g} ({outcome.mcid[2]}), over the pairs"})
    if outcome.recovery:
        fields["recovery_rate"] = ma.fields.Nested(SummarySchema, metadata={
            "description": "Hirabayashi recovery rate (%) on this version's own full score; baseline at the full "
                           "score excluded"})
    return ma.Schema.from_dict(fields, name="ScoreOutcome" + "".join(
        part.capitalize() for part in outcome.name.split("_")))


ScoreOutcomesSchema = ma.Schema.from_dict(
    {outcome.name: ma.fields.Nested(_outcome_schema(outcome), metadata={"description": outcome.label})
     for outcome in scores.OUTCOMES}, name="ScoreOutcomes")


class ScoresRowSchema(RowSchema):
    scores = ma.fields.Nested(ScoreOutcomesSchema, metadata={
        "description": "Per outcome (instrument, version, pain site, EQ-5D-5L value set): baseline, follow-up "
                       "and change over the pairs, the share reaching the MCID, the unpaired baselines"})


class CompletenessRowSchema(RowSchema):
    indication = _proportion()
    approach = _proportion()
    levels = _proportion()
    duration_min = _proportion()
    blood_loss_ml = _proportion()
    preop_joa = _proportion()
    intraop_events = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations whose intraoperative events were recorded (none or occurred)"})
    postop_complications = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations whose postoperative complications were recorded (none or occurred)"})
    transfusion = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations with transfusion true or false"})
    revision_surgery = ma.fields.Nested(ProportionSchema, metadata={
        "description": "Operations followed up with a follow-up recording revision_surgery (true or false), over "
                       "the operations followed up"})
    follow_up = _proportion()
    follow_up_12m = _proportion()


class FunnelLimitsSchema(ma.Schema):
    lower_95 = ma.fields.Float(allow_none=True)
    upper_95 = ma.fields.Float(allow_none=True)
    lower_998 = ma.fields.Float(allow_none=True, data_key="lower_99.8")
    upper_998 = ma.fields.Float(allow_none=True, data_key="upper_99.8")


class CentreRowSchema(RowSchema):
    measure = _proportion()
    pooled_rate = ma.fields.Float(allow_none=True)
    pooled_withheld = ma.fields.String(allow_none=True)
    limits = ma.fields.Nested(FunnelLimitsSchema)
    position = ma.fields.String(allow_none=True, metadata={
        "description": "above_99.8, above_95, within, below_95 or below_99.8"})


class ReportSchema(ma.Schema):
    report = ma.fields.String()
    group_by = ma.fields.List(ma.fields.String())
    filters = ma.fields.Dict()
    scope = ma.fields.String(metadata={"description": "'all centres', or the submitter's centre code"})
    suppression = ma.fields.Nested(SuppressionSchema)
    disclosure_control = ma.fields.Nested(DisclosureControlSchema, allow_none=True, metadata={
        "description": "How cross-centre figures are protected; null: a submitter's own centre, exact"})
    method = ma.fields.String(metadata={"description": "fast (pre-aggregated) or scan"})
    query = ma.fields.Dict(metadata={"description": "Every parameter as understood, defaults included"})
    definitions = ma.fields.Dict(metadata={
        "description": "Each definition used: parameter, value, what was counted over what, and its source"})


def _report_schema(row_schema, name, **extra):
    return type(name, (ReportSchema,), {
        "groups": ma.fields.List(ma.fields.Nested(row_schema)),
        "total": ma.fields.Nested(row_schema, allow_none=True),
        **extra,
    })


ComplicationsReportSchema = _report_schema(ComplicationsRowSchema, "ComplicationsReportSchema")
FusionReportSchema = _report_schema(FusionRowSchema, "FusionReportSchema", min_months=ma.fields.Integer())
OutcomesReportSchema = _report_schema(OutcomesRowSchema, "OutcomesReportSchema")
ScoresReportSchema = _report_schema(ScoresRowSchema, "ScoresReportSchema")
CompletenessReportSchema = _report_schema(CompletenessRowSchema, "CompletenessReportSchema")
CentresReportSchema = _report_schema(CentreRowSchema, "CentresReportSchema", measure=ma.fields.String(),
                                     funnel_method=ma.fields.String())

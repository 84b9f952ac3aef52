"""The clinical definitions a report can be asked for, each a query parameter with a default,
as the SQL a scan adds (a `store.Definition`) and as the `definitions` object the report
carries, which says exactly what was counted and after whom.

- `window` (complications): postoperative complications within 30 or 90 days (`days_after`),
  over operations old enough for the window; complications without `days_after` are counted
  apart as "timing not recorded". Default: any time (every recorded complication).
- `major` (complications): Clavien-Dindo IIIa or worse (default), or also an intraoperative
  event of ClassIntra III or worse.
- `unit` (every report but centres): operations (default) or patients (each patient's first
  operation).
- fusion: the deciding follow-up (latest at >= min_months saying fused or not fused), with
  indeterminate and not assessed counted beside it; `assessment` filters by the imaging method
  of that follow-up; `failure_window` counts implant failure and revision within 12, 24 or 60
  months among operations whose status at that time is known.
- `timepoint` (outcomes): latest (default: the latest visit that recorded JOA or mJOA) or 12m
  (the visit closest to 12 months within 9-15 months); JOA, mJOA and the recovery rate all
  from that one visit.
- completeness: a follow-up at >= 12 months over operations at least 12 months old.

Windows relative to today end, for cross-centre readers, on the last day of a whole month
(the month-grain rule of their date filters), so the operations counted change once a month,
not every day.
"""

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from psycopg import sql

from registry import vocabulary as v
from registry.reports import scores, store

WINDOWS = {"any": None, "30": 30, "90": 90}
FAILURE_WINDOWS = {"any": None, "12": 12, "24": 24, "60": 60, "km": None}  # km: Kaplan-Meier (Choices.survival)
SURVIVAL_MONTHS = (12, 24, 60)
UNITS = ("operation", "patient")
MAJOR = ("clavien", "clavien_or_classintra")
TIMEPOINTS = ("latest", "12m")
CLASSINTRA_MAJOR = ["III", "IV", "V"]
TIMEPOINT_MONTHS, TIMEPOINT_TOLERANCE = 12, 3
COMPLETENESS_MONTHS = 12

# The measures the definitions add to the stored ones (all counts of operations), computed by a scan.
EXTRA_MEASURES = ("postop_eligible", "postop_untimed", "major_untimed", "postop_due", "postop_not_recorded",
                  "implant_known", "revision_known",
                  "due_12m", "followed_12m_of_due",
                  *(f"{event}_at_risk_{t}" for event in ("implant", "revision") for t in SURVIVAL_MONTHS))

SOURCES = {
    "window": "30-day postoperative complications as in ACS NSQIP (complications occurring within "
              "30 days of the operation); 90 days as commonly reported for spine surgery",
    "major": "Clavien-Dindo (Dindo, Demartines, Clavien, Ann Surg 2004;240:205); ClassIntra "
             "(Dell-Kuster et al., BMJ 2020;370:m2917)",
    "reported_by": "who reported a complication changes its rate: surgeons' own reports miss a third or more of "
                   "what patient reports and other sources reveal (Swespine; NORspine)",
    "unit": "one operation per patient (the first) keeps observations independent for the Wilson interval",
    "fusion": "fusion judged at the latest follow-up >= min_months that says fused or not fused",
    "failure_window": "cumulative incidence among operations with a known status at the time point "
                      "(event by then, or followed up to it)",
    "survival": "Kaplan-Meier product-limit estimate (Kaplan and Meier, J Am Stat Assoc 1958;53:457); 95 % "
                "interval from Greenwood's variance (Rep Public Health Med Subj 1926;33) on the log(-log) scale "
                "(Kalbfleisch and Prentice, The Statistical Analysis of Failure Time Data, 1980)",
    "timepoint": "JOA (Japanese Orthopaedic Association, 17 points), mJOA (Benzel 1991, 18 points); "
                 "Hirabayashi recovery rate (Hirabayashi et al., Spine 1981;6:354)",
    "completeness": "follow-up completeness over the operations that could have had the follow-up",
}


@dataclass(frozen=True)
class Choices:
    """The definitions a report query chose (defaults where not given)."""

    window: int | None = None           # days; None: any time
    major: str = "clavien"
    unit: str = "operation"
    timepoint: str = "latest"
    assessment: tuple = ()              # imaging methods of the deciding fusion follow-up
    failure_window: int | None = None   # months; None: any time
    reported_by: tuple = ()             # sources whose events and complications count; (): all
    survival: bool = False              # failure_window=km: Kaplan-Meier at SURVIVAL_MONTHS
    min_months: int = store.STORED_FUSION_MONTHS
    window_cutoff: date | None = None   # operations on or before it are old enough for the window
    due_cutoff: date | None = None      # operations on or before it are >= 12 months old


def today_utc() -> date:
    """Today's date (UTC), the reference of every window relative to today."""
    return datetime.now(timezone.utc).date()


def months_before(day: date, months: int) -> date:
    """The same day `months` months earlier (that month's last day when it has no such day)."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def whole_months(cutoff: date) -> date:
    """The last month end on or before `cutoff`."""
    if (cutoff + timedelta(days=1)).day == 1:
        return cutoff
    return cutoff.replace(day=1) - timedelta(days=1)


def choose(report: str, query: dict, month_grain: bool, today: date) -> Choices:
    """The definitions of a report query; cutoffs relative to `today`, at month grain for
    cross-centre readers."""
    def grain(cutoff):
        return whole_months(cutoff) if month_grain else cutoff

    window = WINDOWS[query.get("window") or "any"]
    return Choices(
        window=window,
        major=query.get("major") or "clavien",
        unit=query.get("unit") or "operation",
        timepoint=query.get("timepoint") or "latest",
        assessment=tuple(query.get("assessment") or ()),
        failure_window=FAILURE_WINDOWS[query.get("failure_window") or "any"],
        reported_by=tuple(query.get("reported_by") or ()),
        survival=query.get("failure_window") == "km",
        min_months=query.get("min_months", store.STORED_FUSION_MONTHS),
        window_cutoff=grain(today - timedelta(days=window)) if window else None,
        due_cutoff=grain(months_before(today, COMPLETENESS_MONTHS)) if report == "completeness" else None,
    )


# --- the SQL of each definition ------------------------------------------------------------

# reported_by=: only the events and complications of these sources count (the windows' and
# ClassIntra's look-ups filter alike; a NULL list: every one)
REPORTED_EVENTS = sql.SQL("""LEFT JOIN (
        SELECT e.centre_id, e.operation_id, array_agg(DISTINCT e.type) AS types FROM intraop_events e
        WHERE e.reported_by = ANY(%(reported_by)s::text[]) GROUP BY e.centre_id, e.operation_id
    ) rb_e ON rb_e.centre_id = m.centre_id AND rb_e.operation_id = m.operation_id""")
REPORTED_COMPLICATIONS = sql.SQL("""LEFT JOIN (
        SELECT c.centre_id, c.operation_id, true AS any_complication,
               bool_or(c.grade = ANY(%(major_grades)s)) AS major
        FROM postop_complications c
        WHERE c.reported_by = ANY(%(reported_by)s::text[]) GROUP BY c.centre_id, c.operation_id
    ) rb_c ON rb_c.centre_id = m.centre_id AND rb_c.operation_id = m.operation_id""")

# Each look-up is one set-based pass over its table, joined by hash to the operations scanned
# (per-operation LATERAL look-ups cost an index probe per operation: 3-10 times slower).
POSTOP_IN_WINDOW = sql.SQL("""LEFT JOIN (
        SELECT c.centre_id, c.operation_id,
               bool_or(c.days_after <= %(window_days)s) AS within,
               bool_or(c.days_after <= %(window_days)s AND c.grade = ANY(%(major_grades)s)) AS major_within,
               bool_or(c.days_after IS NULL) AS untimed,
               bool_or(c.days_after IS NULL AND c.grade = ANY(%(major_grades)s)) AS major_untimed
        FROM postop_complications c
        WHERE (%(reported_by)s::text[] IS NULL OR c.reported_by = ANY(%(reported_by)s::text[]))
        GROUP BY c.centre_id, c.operation_id
    ) pc ON pc.centre_id = m.centre_id AND pc.operation_id = m.operation_id""")
SEVERE_INTRAOP = sql.SQL("""LEFT JOIN (
        SELECT DISTINCT e.centre_id, e.operation_id, true AS severe FROM intraop_events e
        WHERE e.grade = ANY(%(classintra_major)s) 
          AND (%(reported_by)s::text[] IS NULL OR e.reported_by = ANY(%(reported_by)s::text[]))
    ) ci ON ci.centre_id = m.centre_id AND ci.operation_id = m.operation_id""")
# The deciding fusion follow-up: the latest at >= min_months saying fused or not fused; when
# none does, the latest at >= min_months (indeterminate or not assessed).
FUSION_FOLLOW_UP = sql.SQL("""LEFT JOIN (
        SELECT DISTINCT ON (f.centre_id, f.operation_id) f.centre_id, f.operation_id, true AS found,
               f.fusion_status AS status, f.assessment
        FROM follow_ups f WHERE f.months_after >= %(min_months)s
        ORDER BY f.centre_id, f.operation_id, f.fusion_status IN ('fused', 'not_fused') DESC NULLS LAST,
                 f.follow_up_date DESC, f.months_after DESC, f.id DESC
    ) fz ON fz.centre_id = m.centre_id AND fz.operation_id = m.operation_id AND m.fusion_operations = 1""")
FAILURE_TIMES = sql.SQL("""LEFT JOIN (
        SELECT f.centre_id, f.operation_id,
               min(f.months_after) FILTER (WHERE f.implant_status = ANY(%(failure_statuses)s)) AS failure_at,
               min(f.months_after) FILTER (WHERE f.revision_surgery) AS revision_at,
               max(f.months_after) AS last_seen,
               max(f.months_after) FILTER (WHERE f.revision_surgery IS NOT NULL) AS revision_last_seen
        FROM follow_ups f GROUP BY f.centre_id, f.operation_id
    ) fw ON fw.centre_id = m.centre_id AND fw.operation_id = m.operation_id""")
# timepoint=12m: the one visit JOA, mJOA and the recovery rate are all taken from, among those
# that recorded JOA or mJOA within 12 +- 3 months: the closest to 12 months (ties: the later,
# then by date and id). timepoint=latest is stored: the latest visit that recorded
# JOA or mJOA (by date, then months after, then id), the facts' latest_joa and latest_mjoa.
TIMEPOINT_VISIT = sql.SQL("""LEFT JOIN (
        SELECT DISTINCT ON (f.centre_id, f.operation_id) f.centre_id, f.operation_id, f.joa, f.mjoa
        FROM follow_ups f
        WHERE (f.joa IS NOT NULL OR f.mjoa IS NOT NULL)
          AND f.months_after BETWEEN %(timepoint_from)s AND %(timepoint_to)s
        ORDER BY f.centre_id, f.operation_id, abs(f.months_after - %(timepoint)s), f.months_after DESC,
                 f.follow_up_date DESC, f.id DESC
    ) tp ON tp.centre_id = m.centre_id AND tp.operation_id = m.operation_id""")
# A patient's first operation: the earliest by date, then id.
FIRST_OPERATION = sql.SQL("""(m.centre_id, m.operation_id) IN (
        SELECT DISTINCT ON (o.centre_id, o.patient_id) o.centre_id, o.id FROM operations o
        ORDER BY o.centre_id, o.patient_id, o.operation_date, o.id)""")


def scan_definition(report: str, choices: Choices) -> store.Definition:
    """The SQL a scan adds for these choices; empty when the stored definitions serve them."""
    d = store.Definition()
    if choices.unit == "patient":
        d.where.append(FIRST_OPERATION)
    if report == "complications":
        _complications(d, choices)
    elif report == "fusion":
        _fusion(d, choices)
    elif report == "outcomes" and choices.timepoint == "12m":
        # timepoint=latest is stored (the facts' latest scores are from one visit, migration 0014)
        d.joins.append(TIMEPOINT_VISIT)
        d.params.update(timepoint=TIMEPOINT_MONTHS, timepoint_from=TIMEPOINT_MONTHS - TIMEPOINT_TOLERANCE,
                        timepoint_to=TIMEPOINT_MONTHS + TIMEPOINT_TOLERANCE)
        d.measures.update(
            joa_post_n=sql.SQL("(tp.joa IS NOT NULL)::int"),
            mjoa_post_n=sql.SQL("(tp.mjoa IS NOT NULL)::int"),
            recovery_n=sql.SQL("coalesce(m.preop_joa < 17 AND tp.joa IS NOT NULL, false)::int"))
        d.metrics.update(
            joa_post=(sql.SQL("tp.joa::float8"), sql.SQL("0::float8")),
            mjoa_post=(sql.SQL("tp.mjoa::float8"), sql.SQL("0::float8")),
            joa_pair=(sql.SQL("CASE WHEN m.preop_joa < 17 AND tp.joa IS NOT NULL THEN m.preop_joa::float8 END"),
                      sql.SQL("tp.joa::float8")))
    elif report == "scores":
        scores.add_to(d, choices.timepoint)
        d.params.update(timepoint=TIMEPOINT_MONTHS, timepoint_from=TIMEPOINT_MONTHS - TIMEPOINT_TOLERANCE,
                        timepoint_to=TIMEPOINT_MONTHS + TIMEPOINT_TOLERANCE)
    elif report == "completeness":
        # stored counts over the operations old enough (the fast path subtracts the recent ones)
        d.before.update(due_12m="operations", followed_12m_of_due="followed_12m")
        d.cutoff = choices.due_cutoff
    return d


def _complications(d, choices):
    d.params["reported_by"] = list(choices.reported_by) or None
    if choices.reported_by:
        _reported_by(d)
    severe = sql.SQL("")
    if choices.major == "clavien_or_classintra":
        d.joins.append(SEVERE_INTRAOP)
        d.params["classintra_major"] = CLASSINTRA_MAJOR
        severe = sql.SQL(" OR ci.severe IS NOT NULL")
    # a major complication is counted over the operations whose complications were recorded,
    # a severe intraoperative event too (else a rate could pass 1)
    if choices.window is None:
        major = sql.SQL("coalesce(rb_c.major, false)" if choices.reported_by else "m.major_complication = 1")
        if choices.major == "clavien_or_classintra":
            d.measures["major_complication"] = sql.SQL(
                "(m.postop_recorded = 1 AND ({}{}))::int").format(major, severe)
        return
    d.joins.append(POSTOP_IN_WINDOW)
    d.params.update(window_days=choices.window, window_cutoff=choices.window_cutoff,
                    major_grades=sorted(v.MAJOR_CLAVIEN_DINDO))
    due = sql.SQL("m.operation_date <= %(window_cutoff)s")
    eligible = sql.SQL("({} AND m.postop_recorded = 1)").format(due)
    major = sql.SQL("(coalesce(pc.major_within, false){})").format(severe)
    d.measures.update(
        postop_due=sql.SQL("({})::int").format(due),
        postop_not_recorded=sql.SQL("({} AND m.postop_recorded = 0)::int").format(due),
        postop_eligible=sql.SQL("({})::int").format(eligible),
        postop_complication=sql.SQL("({} AND coalesce(pc.within, false))::int").format(eligible),
        postop_untimed=sql.SQL("({} AND NOT coalesce(pc.within, false) AND coalesce(pc.untimed, false))::int")
        .format(eligible),
        major_complication=sql.SQL("({} AND {})::int").format(eligible, major),
        major_untimed=sql.SQL("({} AND NOT {} AND coalesce(pc.major_untimed, false))::int").format(eligible, major))


def _reported_by(d):
    """Numerators of the events and complications of the chosen sources only; the denominators
    (operations where each was recorded) stay."""
    d.joins += [REPORTED_EVENTS, REPORTED_COMPLICATIONS]
    d.params["major_grades"] = sorted(v.MAJOR_CLAVIEN_DINDO)
    d.measures["intraop_event"] = sql.SQL("(rb_e.types IS NOT NULL)::int")
    for event_type in store.INTRAOP_EVENT_TYPES:
        d.measures[f"ev_{event_type}"] = sql.SQL("coalesce({} = ANY(rb_e.types), false)::int").format(
            sql.Literal(event_type))
    d.measures["postop_complication"] = sql.SQL("coalesce(rb_c.any_complication, false)::int")
    d.measures["major_complication"] = sql.SQL("coalesce(rb_c.major, false)::int")


def _fusion(d, choices):
    if choices.min_months != store.STORED_FUSION_MONTHS or choices.assessment:
        _fusion_decision(d, choices)  # else the stored measures at 12 months serve (migration 0010)
    if choices.failure_window is not None:
        _failure_window(d, choices)
    if choices.survival:
        _survival(d)


def _fusion_decision(d, choices):
    d.joins.append(FUSION_FOLLOW_UP)
    method = sql.SQL("true")
    if choices.assessment:
        method = sql.SQL("fz.assessment = ANY(%(assessment)s)")
        d.params["assessment"] = list(choices.assessment)

    def flag(condition):
        return sql.SQL("coalesce({} AND {}, false)::int").format(sql.SQL(condition), method)

    d.measures.update(
        fusion_followed=flag("fz.found"),
        fusion_assessed=flag("fz.status IN ('fused', 'not_fused')"),
        fusion_fused=flag("fz.status = 'fused'"),
        fusion_indeterminate=flag("fz.status = 'indeterminate'"),
        fusion_not_assessed=flag("fz.found AND coalesce(fz.status, 'not_assessed') = 'not_assessed'"))


def _failure_window(d, choices):
    d.joins.append(FAILURE_TIMES)
    d.params.update(failure_window=choices.failure_window,
                    failure_statuses=sorted(v.IMPLANT_FAILURE_STATUSES))
    failed = "coalesce(fw.failure_at <= %(failure_window)s, false)"
    revised = "coalesce(fw.revision_at <= %(failure_window)s, false)"
    seen = "coalesce(fw.last_seen >= %(failure_window)s, false)"
    # revision is known at a follow-up that recorded it (yes or no), not at every follow-up
    revision_seen = "coalesce(fw.revision_last_seen >= %(failure_window)s, false)"
    d.measures.update(
        implant_failure=sql.SQL(f"(m.instrumented AND {failed})::int"),
        implant_known=sql.SQL(f"(m.instrumented AND ({failed} OR {seen}))::int"),
        revision=sql.SQL(f"({revised})::int"),
        revision_known=sql.SQL(f"({revised} OR {revision_seen})::int"))


def _survival(d):
    """Per operation the months to the first follow-up reporting the event, else to the last
    follow-up (censored): histogram values (time, event) for the Kaplan-Meier estimate, and the
    number at risk (time >= t) at each time point as a count (perturbed like any other)."""
    d.joins.append(FAILURE_TIMES)
    d.params["failure_statuses"] = sorted(v.IMPLANT_FAILURE_STATUSES)
    implant_time = "CASE WHEN m.instrumented THEN coalesce(fw.failure_at, fw.last_seen) END"
    revision_time = "coalesce(fw.revision_at, fw.revision_last_seen)"  # censored at the last that recorded it
    d.metrics.update(
        implant_km=(sql.SQL(f"({implant_time})::float8"), sql.SQL("(fw.failure_at IS NOT NULL)::int::float8")),
        revision_km=(sql.SQL(f"({revision_time})::float8"), sql.SQL("(fw.revision_at IS NOT NULL)::int::float8")))
    for t in SURVIVAL_MONTHS:
        d.measures[f"implant_at_risk_{t}"] = sql.SQL(f"coalesce({implant_time} >= {t}, false)::int")
        d.measures[f"revision_at_risk_{t}"] = sql.SQL(f"coalesce({revision_time} >= {t}, false)::int")


# --- what the report says it used -----------------------------------------------------------

def describe(report: str, choices: Choices, month_grain: bool) -> dict:
    """The `definitions` object of a report: each definition with its parameter, the value
    used, what it means and where it comes from."""
    grain = " (cross-centre readers: the last whole month end on or before it)" if month_grain else ""
    described = {"unit": {
        "parameter": "unit", "value": choices.unit,
        "definition": ("each patient's first operation (earliest date, then lowest id), whatever the filters"
                       if choices.unit == "patient" else "every operation"),
        "source": SOURCES["unit"]}}
    if report == "complications":
        if choices.window is None:
            window = {"parameter": "window", "value": "any",
                      "definition": "postoperative complications recorded at any time after the operation, "
                                    "whether or not days_after is recorded; denominator: every operation whose "
                                    "complications were recorded (postop_complications_status none or occurred); "
                                    "those not recorded are counted apart, never as none"}
        else:
            window = {"parameter": "window", "value": str(choices.window),
                      "definition": f"a complication with days_after <= {choices.window}; denominator: operations "
                                    f"whose complications were recorded, at least {choices.window} days old "
                                    f"(on or before {choices.window_cutoff}"
                                    f"{grain}); an operation whose only complications in question have no "
                                    "days_after is counted as timing not recorded, never as none",
                      "cutoff": choices.window_cutoff.isoformat()}
        described["window"] = {**window, "source": SOURCES["window"]}
        described["reported_by"] = {
            "parameter": "reported_by", "value": list(choices.reported_by) or "any",
            "definition": ("only the intraoperative events and postoperative complications reported by "
                           + ", ".join(choices.reported_by) + " count; the denominators are unchanged"
                           if choices.reported_by else "every event and complication, whoever reported it"),
            "source": SOURCES["reported_by"]}
        described["major"] = {
            "parameter": "major", "value": choices.major,
            "definition": "Clavien-Dindo IIIa or worse" + (
                ", or an intraoperative event of ClassIntra III or worse"
                if choices.major == "clavien_or_classintra" else "")
            + "; over the operations whose postoperative complications were recorded",
            "source": SOURCES["major"]}
    elif report == "fusion":
        described["fusion"] = {
            "parameter": "min_months, assessment", "value": {"min_months": choices.min_months,
                                                             "assessment": list(choices.assessment) or "any"},
            "definition": f"fusion operations with a follow-up at >= {choices.min_months} months: the latest of "
                          "them saying fused or not fused decides (fusion rate = fused / decided); when none "
                          "does, the latest counts as indeterminate or not assessed, reported beside the rate "
                          "over all fusion operations so followed" + (
                              "; only operations whose deciding follow-up used " + ", ".join(choices.assessment)
                              if choices.assessment else ""),
            "source": SOURCES["fusion"]}
        if choices.survival:
            failure = {"value": "km",
                       "definition": "Kaplan-Meier estimate of freedom from implant failure (instrumented operations) "
                                     "and from revision at " + ", ".join(map(str, SURVIVAL_MONTHS)) + " months, "
                                     "with its 95 % interval and the number at risk then (operations still followed: "
                                     "time >= t); time: months from the operation to the first follow-up reporting "
                                     "the event, censored at the last follow-up otherwise; operations without a "
                                     "follow-up are not counted" + (
                                         ". Cross-centre readers get the number at risk only, perturbed (cell key, "
                                         "like every count) and withheld below the threshold: an exact estimate "
                                         "beside it would give away the exact number of events, so the estimate, "
                                         "its interval and the events are a submitter's, for its own centre"
                                         if month_grain else ""),
                       "source": SOURCES["survival"]}
        elif choices.failure_window is None:
            failure = {"value": "any", "definition": "implant failure (loosening, migration, breakage) or revision "
                                                     "reported at any follow-up; denominator: operations (implant "
                                                     "failure: instrumented ones) with >= 1 follow-up (revision: "
                                                     "one that recorded revision_surgery, true or false)"}
        else:
            failure = {"value": str(choices.failure_window),
                       "definition": f"first reported at a follow-up <= {choices.failure_window} months; "
                                     "denominator: operations (implant failure: instrumented ones) with the "
                                     f"event by {choices.failure_window} months or a follow-up at >= "
                                     f"{choices.failure_window} months (status known then)"}
        described["failure_window"] = {"parameter": "failure_window", "source": SOURCES["failure_window"], **failure}
    elif report == "outcomes":
        described["timepoint"] = {
            "parameter": "timepoint", "value": choices.timepoint,
            "definition": (f"the follow-up closest to {TIMEPOINT_MONTHS} months within {TIMEPOINT_MONTHS} ± "
                           f"{TIMEPOINT_TOLERANCE} months that recorded JOA or mJOA (ties: the later); JOA, mJOA "
                           "and the recovery rate all from that visit"
                           if choices.timepoint == "12m" else
                           "the latest follow-up that recorded JOA or mJOA (by date, then months after); JOA, "
                           "mJOA and the recovery rate all from that visit (a score it did not record is "
                           "missing, not taken from an earlier visit)"),
            "source": SOURCES["timepoint"]}
    elif report == "scores":
        described.update(scores.describe(choices.timepoint, TIMEPOINT_MONTHS, TIMEPOINT_TOLERANCE))
    elif report == "completeness":
        described["follow_up_12m"] = {
            "parameter": None, "value": "fixed",
            "definition": "a follow-up at >= 12 months, over operations at least 12 months old (on or before "
                          f"{choices.due_cutoff}{grain}); the other shares are over every operation",
            "cutoff": choices.due_cutoff.isoformat(),
            "source": SOURCES["completeness"]}
    return described

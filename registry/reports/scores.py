"""The outcome scores report (issue 15): each instrument's change from baseline and the share of
operations reaching its minimal clinically important difference (registry.reports.mcid).

An outcome is one instrument on one scale: instrument and version, plus the site of a pain NRS
(neck, arm, back and leg pain are separate outcomes) and the value set of an EQ-5D-5L index
(each country's tariff is its own scale). A *pair* is one operation's baseline value and its
follow-up value of the same outcome, never across versions, sites or value sets. The follow-up
value is each outcome's own: the latest follow-up that recorded it (timepoint=latest), or the
one closest to 12 months within 12 ± 3 months (timepoint=12m; ties: the later).

The figures are counts and histograms of a scan (a `store.Definition`) over the stored
per-operation rows: the facts carry each outcome's baseline value (`baseline_<name>`) and its
value at the latest follow-up that recorded it (`latest_<name>`, migration 0015), so
timepoint=latest needs no join; timepoint=12m joins the follow-ups' scores within the window,
one set-based pass hashed to the operations scanned. So they pass the one publication rule of
every report (cell-key perturbation, primary suppression, the submitter's exact figures), and
an operation with changes the maintainer has not folded yet counts as it is now (its live
facts), like every scanned figure.
"""

from dataclasses import dataclass

from psycopg import sql

from registry import vocabulary as v
from registry.reports import mcid


@dataclass(frozen=True)
class Outcome:
    name: str           # the figure's name in a report row, and the stem of its measures
    instrument: str
    version: str | None
    qualifier: str | None   # pain NRS: site; EQ-5D-5L: value set
    label: str

    @property
    def key(self) -> str:
        """The outcome as the scan spells it: instrument|version|site or value set."""
        return f"{self.instrument}|{self.version or ''}|{self.qualifier or ''}"

    @property
    def mcid(self):
        value_set = self.qualifier if self.instrument == "eq5d5l_index" else None
        return mcid.mcid_of(self.instrument, self.version, value_set)

    @property
    def recovery(self) -> bool:
        return (self.instrument, self.version) in mcid.RECOVERY_FULL_SCORE


def _version_name(version: str | None) -> str:
    return {"17-point": "17", "29-point": "29", "18-point": "18", "50-point": "50", None: "unversioned"}.get(
        version, (version or "").replace(".", "_"))


SHORT_NAMES = {"joa": "JOA", "mjoa": "mJOA", "ndi": "NDI", "odi": "ODI"}


def _outcomes() -> tuple:
    outcomes = []
    for instrument, version in v.SCORE_SCALES:
        if instrument == "pain_nrs":
            for site in v.PAIN_SITE:
                outcomes.append(Outcome(f"pain_nrs_{site}", instrument, version, site, f"{site.capitalize()} pain NRS"))
            # pain NRS stored before the site existed: site unknown, an outcome of its own
            outcomes.append(Outcome("pain_nrs_site_unknown", instrument, version, None, "Pain NRS, site unknown"))
        elif instrument == "eq5d5l_index":
            for value_set, label in v.EQ5D_VALUE_SET.items():
                outcomes.append(Outcome(f"eq5d5l_{value_set}", instrument, version, value_set,
                                        f"EQ-5D-5L index, {label.split(' (')[0]} value set"))
        else:
            outcomes.append(Outcome(f"{instrument}_{_version_name(version)}", instrument, version, None,
                                    f"{SHORT_NAMES[instrument]} {version or '(version not recorded)'}"))
    return tuple(outcomes)


OUTCOMES = _outcomes()


def measures() -> list[str]:
    """The count measures of the report: per outcome its pairs, its unpaired baselines, (with
    an MCID) the pairs reaching it and (JOA) the pairs with a recovery rate."""
    names = []
    for outcome in OUTCOMES:
        names += [f"{outcome.name}_pairs", f"{outcome.name}_unpaired"]
        if outcome.mcid:
            names.append(f"{outcome.name}_mcid")
        if outcome.recovery:
            names.append(f"{outcome.name}_recovery_n")
    return names


def metrics() -> list[str]:
    """The histograms: per outcome (baseline, follow-up) of each pair; baseline, follow-up,
    change and recovery rate are all read from it."""
    return [f"{outcome.name}_pair" for outcome in OUTCOMES]


# Every score of a follow-up, legacy columns (JOA 17-point, mJOA) included, as (key, value); the
# facts' stored form of the same (migration 0015) covers the baselines and the latest visit.
_ENTRY_KEY = sql.SQL("e->>'instrument' || '|' || coalesce(e->>'version', '') || '|' "
                     "|| coalesce(e->>'site', e->>'value_set', '')")
SCORES_OF_FOLLOW_UP = sql.SQL("""
            SELECT 'joa|17-point|' AS key, f.joa::float8 AS value WHERE f.joa IS NOT NULL
            UNION ALL SELECT 'mjoa|18-point|', f.mjoa::float8 WHERE f.mjoa IS NOT NULL
            UNION ALL SELECT {key}, (e->>'value')::float8 FROM jsonb_array_elements(f.scores) e""").format(
    key=_ENTRY_KEY)

# timepoint=12m: one row per operation with a score in the window, each outcome's value
# (at_<name>) at its follow-up closest to the timepoint. Set-based (one pass over the
# follow-ups, hashed to the operations scanned).
AT_TIMEPOINT = """LEFT JOIN (
        SELECT v.centre_id, v.operation_id, {columns}
        FROM (
            SELECT DISTINCT ON (f.centre_id, f.operation_id, s.key) f.centre_id, f.operation_id, s.key, s.value
            FROM follow_ups f CROSS JOIN LATERAL ({follow_up}) s
            WHERE (f.joa IS NOT NULL OR f.mjoa IS NOT NULL OR f.scores <> '[]')
              AND f.months_after BETWEEN %(timepoint_from)s AND %(timepoint_to)s
            ORDER BY f.centre_id, f.operation_id, s.key, abs(f.months_after - %(timepoint)s), f.months_after DESC,
                     f.follow_up_date DESC, f.id DESC
        ) v
        GROUP BY v.centre_id, v.operation_id
    ) tp ON tp.centre_id = m.centre_id AND tp.operation_id = m.operation_id"""


def _at_timepoint_join() -> sql.Composable:
    columns = sql.SQL(", ").join(
        sql.SQL("max(v.value) FILTER (WHERE v.key = {key}) AS {column}").format(
            key=sql.Literal(outcome.key), column=sql.Identifier(f"at_{outcome.name}"))
        for outcome in OUTCOMES)
    return sql.SQL(AT_TIMEPOINT).format(columns=columns, follow_up=SCORES_OF_FOLLOW_UP)


def add_to(d, timepoint: str) -> None:
    """What the scores report adds to a scan (`store.Definition` d)."""
    if timepoint == "12m":
        d.joins.append(_at_timepoint_join())
    for outcome in OUTCOMES:
        baseline = sql.SQL("m.{}").format(sql.Identifier(f"baseline_{outcome.name}"))
        follow_up = (sql.SQL("tp.{}").format(sql.Identifier(f"at_{outcome.name}")) if timepoint == "12m" else
                     sql.SQL("m.{}").format(sql.Identifier(f"latest_{outcome.name}")))
        paired = sql.SQL("({} IS NOT NULL AND {} IS NOT NULL)").format(baseline, follow_up)
        d.measures[f"{outcome.name}_pairs"] = sql.SQL("{}::int").format(paired)
        d.measures[f"{outcome.name}_unpaired"] = sql.SQL("({} IS NOT NULL AND {} IS NULL)::int").format(
            baseline, follow_up)
        if outcome.mcid:
            threshold, direction, _ = outcome.mcid
            improvement = sql.SQL("({} - {})" if direction == mcid.HIGHER_IS_BETTER else "({1} - {0})").format(
                follow_up, baseline)
            # rounded as mcid.reaches_mcid does: 0.663 - 0.6 must reach 0.063 despite float arithmetic
            d.measures[f"{outcome.name}_mcid"] = sql.SQL("coalesce({} AND round({}::numeric, 9) >= {}, false)::int"
                                                        ).format(paired, improvement, sql.Literal(threshold))
        if outcome.recovery:
            # Hirabayashi's rate is undefined at the full score
            full = mcid.RECOVERY_FULL_SCORE[outcome.instrument, outcome.version]
            d.measures[f"{outcome.name}_recovery_n"] = sql.SQL("coalesce({} AND {} < {}, false)::int").format(
                paired, baseline, sql.Literal(full))
        d.metric_rows[f"{outcome.name}_pair"] = (sql.SQL("CASE WHEN {} THEN {} END").format(paired, baseline),
                                                 follow_up)


def describe(timepoint: str, months: int, tolerance: int) -> dict:
    """The `definitions` entries of the scores report."""
    visit = (f"the follow-up closest to {months} months within {months} ± {tolerance} months that recorded it "
             "(ties: the later)" if timepoint == "12m" else
             "the latest follow-up that recorded it (by date, then months after)")
    sources = {outcome.name: outcome.mcid[2] for outcome in OUTCOMES if outcome.mcid}
    return {
        "timepoint": {
            "parameter": "timepoint", "value": timepoint,
            "definition": "a pair is an operation's baseline score and its follow-up score of the same instrument, "
                          "version, pain site and EQ-5D-5L value set, never across them; the follow-up score is "
                          f"{visit}. baseline, follow_up and change (follow-up minus baseline, signed so that an "
                          "improvement is positive) are over the pairs; unpaired counts baselines without such a "
                          "follow-up score",
            "source": "Hirabayashi recovery rate (Hirabayashi et al., Spine 1981;6:354) on the JOA 17-point "
                      "and 29-point scales, each over its own full score"},
        "mcid": {
            "parameter": None, "value": {outcome.name: outcome.mcid[0] for outcome in OUTCOMES if outcome.mcid},
            "definition": "reaches_mcid: pairs whose change is at least the instrument's minimal clinically "
                          "important difference, over the pairs; an outcome without an MCID the registry is "
                          "confident of reports its change only",
            "source": "; ".join(f"{name}: {source}" for name, source in sources.items())},
    }

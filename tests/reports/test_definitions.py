"""Issue 18, definitions a clinical statistician would sign: each definition on a small registry
built by hand, whose right answer is known by hand. A submitter gets the exact figures; an
analyst the same counts through the one publication path (perturbed by the cell key of exactly
the operations counted, withheld below the threshold as published or as true).

Dates are relative to today: the windows are.
"""

import datetime as dt
import math
import uuid

import psycopg
import pytest
from psycopg import sql

from registry import create_app
from registry.reports.definitions import months_before, whole_months
from registry.reports.suppression import perturb
from tests.conftest import Tokens, _with_database, make_settings

THRESHOLD = 5
TODAY = dt.datetime.now(dt.timezone.utc).date()


def days_ago(days):
    return TODAY - dt.timedelta(days=days)


class Registry:
    """Centre A's operations, added one by one; each op's (centre, id) and record key kept by name."""

    def __init__(self, conn, centre_id):
        self.conn, self.centre_id, self.ids = conn, centre_id, {}

    def patient(self):
        return self.conn.execute(
            "INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, %s, 'ado_ii') RETURNING id",
            (self.centre_id, uuid.uuid4().bytes)).fetchone()["id"]

    def operation(self, name, date, patient=None, procedures=("laminectomy",), instrumented=False, preop_joa=None,
                  complications=(), events=(), follow_ups=()):
        """complications: (days_after, Clavien-Dindo grade); events: ClassIntra grades; follow_ups:
        dicts with months and any of fusion_status, assessment, implant_status, joa, mjoa, revision."""
        patient = patient or self.patient()
        operation = self.conn.execute(
            "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
            " instrumented, preop_joa) VALUES (%s, %s, %s, %s, 'cervical', 'posterior', %s, %s, %s)"
            " RETURNING id, record_key",
            (self.centre_id, patient, name, date, list(procedures), instrumented, preop_joa)).fetchone()
        for position, (days_after, grade) in enumerate(complications):
            self.conn.execute("INSERT INTO postop_complications (centre_id, operation_id, position, type, grade,"
                              " days_after) VALUES (%s, %s, %s, 'other', %s, %s)",
                              (self.centre_id, operation["id"], position, grade, days_after))
        for position, grade in enumerate(events):
            self.conn.execute("INSERT INTO intraop_events (centre_id, operation_id, position, type, grade)"
                              " VALUES (%s, %s, %s, 'dural_tear', %s)",
                              (self.centre_id, operation["id"], position, grade))
        for f in follow_ups:
            self.conn.execute(
                "INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, fusion_status,"
                " assessment, implant_status, joa, mjoa, revision_surgery) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                (self.centre_id, operation["id"], date + dt.timedelta(days=f["months"] * 30 + 1), f["months"],
                 f.get("fusion_status"), f.get("assessment"), f.get("implant_status"), f.get("joa"), f.get("mjoa"),
                 f.get("revision", False)))
        self.ids[name] = (operation["id"], operation["record_key"])
        return patient

    def keys(self, names):
        return sum(self.ids[name][1] for name in names)


@pytest.fixture(scope="module")
def world(server_url, template_database):
    """One database for the module (the tests only read): the hand-built registry, an app at
    threshold 5 and a token of each role."""
    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                      sql.Identifier(template_database)))
    url = _with_database(server_url, name)
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        tokens = Tokens(conn)
        registry = Registry(conn, tokens.centre_a["id"])
        build(registry)
        # centre B: three operations, fewer than the threshold
        small = Registry(conn, tokens.centre_b["id"])
        for n in range(3):
            small.operation(f"b{n}", days_ago(400), complications=[(5, "I")])
        app = create_app(make_settings(suppression_threshold=THRESHOLD), url)
        app.config["TESTING"] = True
        yield app.test_client(), tokens, registry
        app.extensions["database"].close()
        app.extensions["reports_database"].close()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


FILLER = [f"filler{n}" for n in range(10)]


def build(r):
    # complications (each its own patient)
    r.operation("young", days_ago(20), complications=[(5, "I")])            # too young for 30 and 90 days
    r.operation("day45", days_ago(200), complications=[(45, "IIIb")])       # at 90 days, not at 30; major
    r.operation("untimed", days_ago(200), complications=[(None, "II")])     # timing not recorded
    r.operation("mixed", days_ago(200), complications=[(10, "I"), (None, "IVa")])  # minor at 10 days, major untimed
    r.operation("classintra", days_ago(200), events=["III"])                # ClassIntra III, no complication
    r.operation("day60", days_ago(60), complications=[(20, "I")])           # in the 30-day cohort only
    # fusion (each its own patient): the deciding follow-up at >= 12 months
    fusion = ("fusion",)
    r.operation("f_fused_ct", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 12, "fusion_status": "fused", "assessment": "ct"}])
    r.operation("f_late_nonunion", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 12, "fusion_status": "indeterminate", "assessment": "xray"},
                            {"months": 24, "fusion_status": "not_fused", "assessment": "xray"}])
    r.operation("f_indeterminate", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 13, "fusion_status": "indeterminate", "assessment": "ct"}])
    r.operation("f_not_assessed", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 14, "fusion_status": "not_assessed", "assessment": "clinical"}])
    r.operation("f_too_early", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 6, "fusion_status": "fused", "assessment": "ct"}])
    r.operation("f_fused_then_unclear", days_ago(900), procedures=fusion,
                follow_ups=[{"months": 12, "fusion_status": "fused", "assessment": "ct"},
                            {"months": 24, "fusion_status": "indeterminate", "assessment": "mri"}])
    # implants (instrumented, not fusion)
    r.operation("i_early_failure", days_ago(1200), instrumented=True,
                follow_ups=[{"months": 6, "implant_status": "loosening"}, {"months": 30, "implant_status": "intact"}])
    r.operation("i_late_failure", days_ago(1200), instrumented=True,
                follow_ups=[{"months": 12, "implant_status": "intact"},
                            {"months": 30, "implant_status": "breakage", "revision": True}])
    r.operation("i_short", days_ago(1200), instrumented=True, follow_ups=[{"months": 6, "implant_status": "intact"}])
    # outcomes: the visit closest to 12 months within 9-15
    r.operation("o_eleven", days_ago(2000), preop_joa=10, follow_ups=[
        {"months": 6, "joa": 12, "mjoa": 13}, {"months": 11, "joa": 13, "mjoa": 14},
        {"months": 14, "joa": 15}, {"months": 48, "joa": 16, "mjoa": 17}])
    r.operation("o_tie", days_ago(2000), preop_joa=8, follow_ups=[
        {"months": 9, "joa": 10, "mjoa": 12}, {"months": 15, "joa": 12, "mjoa": 13}])
    r.operation("o_outside", days_ago(2000), preop_joa=12, follow_ups=[{"months": 6, "joa": 11, "mjoa": 13},
                                                                        {"months": 16, "joa": 14}])
    # JOA at 3 months, then mJOA only at 12: at the latest visit JOA was not recorded
    r.operation("o_mjoa_only", days_ago(2000), follow_ups=[{"months": 3, "joa": 11}, {"months": 12, "mjoa": 15}])
    # one patient, two operations: per patient only the first counts
    patient = r.operation("p_first", days_ago(500))
    r.operation("p_second", days_ago(300), patient=patient, complications=[(3, "I")])
    # old operations with nothing to report: make the totals larger than the threshold
    for name in FILLER:
        r.operation(name, days_ago(1500))


def ask(client, tokens, report, who="submitter_a", status=200, **query):
    response = client.get(f"/v1/reports/{report}", query_string=query, headers=tokens.header(who))
    assert response.status_code == status, response.json
    return response.json


def names(registry, prefix=""):
    return [name for name in registry.ids if name.startswith(prefix)]


def published(registry, counted):
    """What an analyst sees of the count of these operations."""
    return perturb(len(counted), registry.keys(counted))


def assert_proportion(figure, registry, numerator, denominator, who):
    """The figure counts exactly these operations: exact for a submitter; for an analyst each count
    perturbed by its own operations' keys, withheld when the denominator is small (as published or true)."""
    if who == "submitter_a":
        assert (figure["numerator"], figure["denominator"]) == (len(numerator), len(denominator)), figure
        return
    n = published(registry, denominator)
    if 0 < n < THRESHOLD or 0 < len(denominator) < THRESHOLD:
        assert figure["suppressed"] == "primary" and figure["numerator"] is None, figure
        return
    assert figure["denominator"] == n, figure
    assert figure["numerator"] == min(published(registry, numerator), n), figure


ALL = ["young", "day45", "untimed", "mixed", "classintra", "day60"]
WHO = ["submitter_a", "analyst"]


def everything_but(registry, *excluded):
    return [name for name in registry.ids if name not in excluded]


# --- postoperative complications within a window ----------------------------------------------

@pytest.mark.parametrize("who", WHO)
def test_thirty_days_counts_only_operations_old_enough_and_complications_by_day_30(world, who):
    client, tokens, registry = world
    body = ask(client, tokens, "complications", who, window="30", centre="CENTRE-A")
    total = body["total"]
    old_enough = everything_but(registry, "young")   # 20 days old: not in the 30-day denominator
    assert_proportion(total["postop_complication"], registry, ["mixed", "day60", "p_second"], old_enough, who)
    # day 45 is not within 30 days; a complication with no days_after is not "none"
    assert_proportion(total["postop_timing_not_recorded"], registry, ["untimed"], old_enough, who)
    assert_proportion(total["major_complication"], registry, [], old_enough, who)
    assert_proportion(total["major_timing_not_recorded"], registry, ["mixed"], old_enough, who)
    window = body["definitions"]["window"]
    assert window["value"] == "30" and "NSQIP" in window["source"]
    expected_cutoff = days_ago(30) if who == "submitter_a" else whole_months(days_ago(30))
    assert window["cutoff"] == expected_cutoff.isoformat()


@pytest.mark.parametrize("who", WHO)
def test_ninety_days_counts_the_day_45_complication(world, who):
    client, tokens, registry = world
    total = ask(client, tokens, "complications", who, window="90", centre="CENTRE-A")["total"]
    old_enough = everything_but(registry, "young", "day60")
    assert_proportion(total["postop_complication"], registry, ["day45", "mixed", "p_second"], old_enough, who)
    assert_proportion(total["major_complication"], registry, ["day45"], old_enough, who)
    assert_proportion(total["postop_timing_not_recorded"], registry, ["untimed"], old_enough, who)


@pytest.mark.parametrize("who", WHO)
def test_any_time_is_the_default_and_counts_every_complication(world, who):
    client, tokens, registry = world
    body = ask(client, tokens, "complications", who, centre="CENTRE-A")
    total = body["total"]
    assert_proportion(total["postop_complication"], registry,
                      ["young", "day45", "untimed", "mixed", "day60", "p_second"], list(registry.ids), who)
    assert "postop_timing_not_recorded" not in total
    assert body["definitions"]["window"]["value"] == "any"
    assert body["method"] == "fast"


@pytest.mark.parametrize("who", WHO)
def test_major_may_include_classintra_three_or_worse(world, who):
    client, tokens, registry = world
    total = ask(client, tokens, "complications", who, centre="CENTRE-A", major="clavien_or_classintra")["total"]
    assert_proportion(total["major_complication"], registry, ["day45", "mixed", "classintra"], list(registry.ids), who)
    total = ask(client, tokens, "complications", who, centre="CENTRE-A", major="clavien_or_classintra",
                window="30")["total"]
    assert_proportion(total["major_complication"], registry, ["classintra"], everything_but(registry, "young"), who)


# --- unit of analysis -----------------------------------------------------------------------

@pytest.mark.parametrize("who", WHO)
def test_per_patient_counts_each_patients_first_operation(world, who):
    client, tokens, registry = world
    body = ask(client, tokens, "complications", who, centre="CENTRE-A", unit="patient")
    first_only = everything_but(registry, "p_second")
    assert_proportion(body["total"]["postop_complication"], registry,
                      ["young", "day45", "untimed", "mixed", "day60"], first_only, who)
    assert body["definitions"]["unit"]["value"] == "patient"


# --- completeness -------------------------------------------------------------------------------

@pytest.mark.parametrize("who", WHO)
def test_twelve_month_follow_up_is_over_operations_at_least_12_months_old(world, who):
    client, tokens, registry = world
    body = ask(client, tokens, "completeness", who, centre="CENTRE-A")
    row = body["groups"][0]
    due = everything_but(registry, "young", "day45", "untimed", "mixed", "classintra", "day60", "p_second")
    followed_12m = ["f_fused_ct", "f_late_nonunion", "f_indeterminate", "f_not_assessed", "f_fused_then_unclear",
                    "i_early_failure", "i_late_failure", "o_eleven", "o_tie", "o_outside", "o_mjoa_only"]
    assert_proportion(row["follow_up_12m"], registry, followed_12m, due, who)
    definition = body["definitions"]["follow_up_12m"]
    cutoff = months_before(TODAY, 12)
    assert definition["cutoff"] == (cutoff if who == "submitter_a" else whole_months(cutoff)).isoformat()


# --- fusion -------------------------------------------------------------------------------------

FUSION_FOLLOWED = ["f_fused_ct", "f_late_nonunion", "f_indeterminate", "f_not_assessed", "f_fused_then_unclear"]
DECIDED = ["f_fused_ct", "f_late_nonunion", "f_fused_then_unclear"]


@pytest.mark.parametrize("who", WHO)
def test_fusion_reports_indeterminate_and_not_assessed_beside_the_rate(world, who):
    client, tokens, registry = world
    body = ask(client, tokens, "fusion", who, centre="CENTRE-A")
    total = body["total"]
    assert_proportion(total["fusion"], registry, ["f_fused_ct", "f_fused_then_unclear"], DECIDED, who)
    assert_proportion(total["indeterminate"], registry, ["f_indeterminate"], FUSION_FOLLOWED, who)
    assert_proportion(total["not_assessed"], registry, ["f_not_assessed"], FUSION_FOLLOWED, who)


def test_fusion_by_imaging_method_of_the_deciding_follow_up(world):
    client, tokens, registry = world
    total = ask(client, tokens, "fusion", centre="CENTRE-A", assessment="ct")["total"]
    # decided by CT: the fused ones; the later MRI follow-up of f_fused_then_unclear does not decide
    assert_proportion(total["fusion"], registry, ["f_fused_ct", "f_fused_then_unclear"],
                      ["f_fused_ct", "f_fused_then_unclear"], "submitter_a")
    assert_proportion(total["indeterminate"], registry, ["f_indeterminate"],
                      ["f_fused_ct", "f_fused_then_unclear", "f_indeterminate"], "submitter_a")
    total = ask(client, tokens, "fusion", centre="CENTRE-A", assessment="xray")["total"]
    assert_proportion(total["pseudarthrosis"], registry, ["f_late_nonunion"], ["f_late_nonunion"], "submitter_a")


def test_implant_failure_and_revision_within_24_months(world):
    client, tokens, registry = world
    body = ask(client, tokens, "fusion", centre="CENTRE-A", instrumented="true", failure_window="24")
    total = body["total"]
    # i_short (6 months, intact) has an unknown status at 24 months: not in the denominator
    assert_proportion(total["implant_failure"], registry, ["i_early_failure"],
                      ["i_early_failure", "i_late_failure"], "submitter_a")
    assert_proportion(total["revision"], registry, [], ["i_early_failure", "i_late_failure"], "submitter_a")
    total = ask(client, tokens, "fusion", centre="CENTRE-A", instrumented="true", failure_window="60")["total"]
    assert_proportion(total["implant_failure"], registry, ["i_early_failure", "i_late_failure"],
                      ["i_early_failure", "i_late_failure"], "submitter_a")
    # revised at 30 months: known at 60; i_early_failure, last seen at 30 months, is not
    assert_proportion(total["revision"], registry, ["i_late_failure"], ["i_late_failure"], "submitter_a")
    assert body["definitions"]["failure_window"]["value"] == "24"


# --- Kaplan-Meier freedom from implant failure and revision ---------------------------------

def test_kaplan_meier_of_the_instrumented_operations_by_hand(world):
    client, tokens, registry = world
    body = ask(client, tokens, "fusion", centre="CENTRE-A", instrumented="true", failure_window="km")
    total = body["total"]
    # implant failure, (months, event): i_early_failure (6, yes), i_short (6, censored: a tie, at risk
    # at 6), i_late_failure (30, yes). S(6) = 1 - 1/3; at 12 and 24 one at risk (i_late_failure);
    # Greenwood 1 / (3 * 2); at 60 nobody at risk: no estimate
    survival = 2 / 3
    spread = 1.959964 * (1 / 6) ** 0.5 / -math.log(survival)
    for t in ("12", "24"):
        figure = total["implant_survival"][t]
        assert (figure["at_risk"], figure["events"], figure["suppressed"]) == (1, 1, None)
        assert figure["estimate"] == pytest.approx(survival)
        assert figure["ci_low"] == pytest.approx(survival ** math.exp(spread))
        assert figure["ci_high"] == pytest.approx(survival ** math.exp(-spread))
    assert total["implant_survival"]["60"] == {"at_risk": 0, "events": 2, "estimate": None, "ci_low": None,
                                               "ci_high": None, "suppressed": None}
    # revision: i_short censored at 6, i_early_failure censored at 30, i_late_failure revised at 30
    revision = total["revision_survival"]
    assert (revision["12"]["at_risk"], revision["12"]["estimate"], revision["12"]["ci_low"]) == (2, 1.0, None)
    assert (revision["60"]["at_risk"], revision["60"]["events"], revision["60"]["estimate"]) == (0, 1, None)
    # the any-time figures stay beside the estimates
    assert total["implant_failure"]["numerator"] == 2
    definition = body["definitions"]["failure_window"]
    assert definition["value"] == "km" and "Greenwood" in definition["source"]
    for output in ("csv", "svg"):   # the other formats of the same report take the new fields
        response = client.get("/v1/reports/fusion", headers=tokens.header("submitter_a"), query_string={
            "centre": "CENTRE-A", "instrumented": "true", "failure_window": "km", "format": output})
        assert response.status_code == 200, response.data[:300]
        if output == "csv":
            assert "implant_survival_12_estimate" in response.data.decode().splitlines()[0]


def test_an_analyst_gets_the_number_at_risk_of_a_kaplan_meier_and_never_the_estimate(world):
    client, tokens, registry = world
    body = ask(client, tokens, "fusion", "analyst", centre="CENTRE-A", failure_window="km")
    total = body["total"]
    # one instrumented operation at risk at 12 months: withheld, the number at risk too
    assert total["implant_survival"]["12"] == {"at_risk": None, "events": None, "estimate": None, "ci_low": None,
                                               "ci_high": None, "suppressed": "primary"}
    # revision at 12 months: the operations followed to >= 12 months, at risk as a perturbed count
    at_risk = ["f_fused_ct", "f_late_nonunion", "f_indeterminate", "f_not_assessed", "f_fused_then_unclear",
               "i_early_failure", "i_late_failure", "o_eleven", "o_tie", "o_outside", "o_mjoa_only"]
    figure = total["revision_survival"]["12"]
    assert figure["at_risk"] == published(registry, at_risk) and figure["suppressed"] is None
    # no estimate, interval or event count for an analyst: exact beside a published number at
    # risk, the estimate would give away the exact number of events
    assert (figure["estimate"], figure["ci_low"], figure["ci_high"], figure["events"]) == (None, None, None, None)
    assert "perturbed" in body["definitions"]["failure_window"]["definition"]
    # the submitter of the centre gets the estimate (no revision in this registry: 1)
    own = ask(client, tokens, "fusion", centre="CENTRE-A", failure_window="km")
    assert own["total"]["revision_survival"]["12"]["estimate"] == 1.0


# --- outcomes at a time point ---------------------------------------------------------------

def test_outcomes_at_12_months_take_the_closest_visit_within_9_to_15_months(world):
    client, tokens, registry = world
    body = ask(client, tokens, "outcomes", centre="CENTRE-A", timepoint="12m")
    total = body["total"]
    # o_eleven: the 11-month visit (13, 14), not the 14-month one; o_tie: 9 and 15 tie, the later
    # (12, 13); o_outside: none within 9-15; o_mjoa_only: mJOA 15 and no JOA from its 12-month visit
    assert (total["joa_latest"]["n"], total["joa_latest"]["mean"]) == (2, 12.5)
    assert (total["mjoa_latest"]["n"], total["mjoa_latest"]["mean"]) == (3, 14)
    recovery = [(13 - 10) / (17 - 10) * 100, (12 - 8) / (17 - 8) * 100]
    assert total["joa_recovery_rate"]["n"] == 2
    assert total["joa_recovery_rate"]["mean"] == pytest.approx(sum(recovery) / 2)
    assert body["definitions"]["timepoint"]["value"] == "12m"


def test_outcomes_at_the_latest_visit_take_both_scores_from_that_one_visit(world):
    client, tokens, registry = world
    body = ask(client, tokens, "outcomes", centre="CENTRE-A")
    latest = body["total"]
    # latest visits: o_eleven 48 months (16, 17), o_tie 15 (12, 13), o_outside 16 (JOA 14, no mJOA:
    # not its 6-month mJOA 13), o_mjoa_only 12 (mJOA 15, no JOA: not its 3-month JOA 11)
    assert (latest["joa_latest"]["n"], latest["joa_latest"]["mean"]) == (3, (16 + 12 + 14) / 3)
    assert (latest["mjoa_latest"]["n"], latest["mjoa_latest"]["mean"]) == (3, (17 + 13 + 15) / 3)
    recovery = [(16 - 10) / (17 - 10) * 100, (12 - 8) / (17 - 8) * 100, (14 - 12) / (17 - 12) * 100]
    assert latest["joa_recovery_rate"]["mean"] == pytest.approx(sum(recovery) / 3)
    assert body["definitions"]["timepoint"]["value"] == "latest"
    assert "that visit" in body["definitions"]["timepoint"]["definition"]


@pytest.mark.parametrize("who", WHO)
def test_the_default_outcomes_are_the_same_by_the_fast_path_and_by_a_scan(world, who):
    """The stored latest scores are the one latest visit's (migration 0014): the default report
    reads the tallies, and a scan of the stored measures gives the same figures, keys and all."""
    client, tokens, registry = world
    fast = ask(client, tokens, "outcomes", who, centre="CENTRE-A")
    scan = ask(client, tokens, "outcomes", who, centre="CENTRE-A", date_from="1900-01-01")
    assert (fast["method"], scan["method"]) == ("fast", "scan")
    assert fast["total"] == scan["total"]
    if who == "submitter_a":
        assert (fast["total"]["joa_latest"]["n"], fast["total"]["mjoa_latest"]["n"]) == (3, 3)


def test_an_analyst_gets_the_time_point_through_the_same_rule(world):
    client, tokens, registry = world
    total = ask(client, tokens, "outcomes", "analyst", centre="CENTRE-A", timepoint="12m")["total"]
    # 2 JOA values: the n is withheld as any count below the threshold
    assert total["joa_latest"]["suppressed"] == "primary" and total["joa_latest"]["n"] is None


# --- withheld the same way everywhere --------------------------------------------------------

@pytest.mark.parametrize("query", [{"window": "30"}, {"window": "90", "major": "clavien_or_classintra"},
                                   {"unit": "patient"}])
def test_a_small_centre_is_withheld_under_every_definition(world, query):
    client, tokens, registry = world
    body = ask(client, tokens, "complications", "analyst", centre="CENTRE-B", **query)
    assert body["total"] is None or body["total"]["suppressed"] == "primary"
    if body["total"]:
        assert body["total"]["postop_complication"]["numerator"] is None


# --- measure=, parameters --------------------------------------------------------------------

def test_measure_selects_the_rows_measures_and_is_echoed(world):
    client, tokens, registry = world
    body = ask(client, tokens, "complications", "analyst", group_by="centre",
               measure="postop_complication,major_complication")
    assert body["query"]["measure"] == ["postop_complication", "major_complication"]
    for row in [*body["groups"], body["total"]]:
        assert set(row) == {"group", "suppressed", "operations", "postop_complication", "major_complication"}
    fusion = ask(client, tokens, "fusion", measure="fusion,indeterminate")
    assert set(fusion["total"]) == {"group", "suppressed", "operations", "fusion", "indeterminate"}


@pytest.mark.parametrize("report, query, field", [
    ("complications", {"measure": "happiness"}, "measure.0"),
    ("complications", {"measure": "fusion"}, "measure"),
    ("complications", {"measure": "postop_timing_not_recorded"}, "measure"),   # only with a window
    ("outcomes", {"measure": "fusion"}, "measure"),
    ("complications", {"window": "45"}, "window"),
    ("outcomes", {"window": "30"}, "window"),
    ("complications", {"timepoint": "12m"}, "timepoint"),
    ("outcomes", {"timepoint": "24m"}, "timepoint"),
    ("complications", {"unit": "centre"}, "unit"),
    ("centres", {"unit": "patient"}, "unit"),
    ("complications", {"major": "minor"}, "major"),
    ("fusion", {"assessment": "ultrasound"}, "assessment.0"),
    ("fusion", {"failure_window": "36"}, "failure_window"),
    ("complications", {"failure_window": "24"}, "failure_window"),
    ("outcomes", {"failure_window": "km"}, "failure_window"),
    ("fusion", {"failure_window": "kaplan"}, "failure_window"),
    ("fusion", {"measure": "implant_survival"}, "measure"),          # only with failure_window=km
])
def test_a_definition_parameter_is_checked_naming_it(world, report, query, field):
    client, tokens, registry = world
    body = ask(client, tokens, report, "analyst", status=422, **query)
    assert field in [error["field"] for error in body["errors"]]


@pytest.mark.parametrize("who", WHO)
def test_completeness_is_the_same_by_the_fast_path_and_by_a_scan(world, who):
    """The fast path subtracts the operations younger than 12 months from the stored tallies;
    a scan counts the old ones directly: the same figures, keys and all."""
    client, tokens, registry = world
    fast = ask(client, tokens, "completeness", who, centre="CENTRE-A")
    scan = ask(client, tokens, "completeness", who, centre="CENTRE-A", group_by="centre,approach")
    assert (fast["method"], scan["method"]) == ("fast", "scan")
    assert fast["groups"][0]["follow_up_12m"] == scan["total"]["follow_up_12m"]

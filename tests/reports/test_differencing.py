"""Issue 18: an analyst who asks two or three ordinary questions recovers nothing exact.

The attacks, each as a test: the union of centres (refused), shifted month ranges, and a count
that is a numerator in one report and a denominator in another. Then a property-based test
over generated pairs of queries (see its docstring for exactly what it checks).
"""

import calendar
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from registry.reports.suppression import KEY_SPACE, MAX_NOISE, perturb
from tests.conftest import make_settings
from tests.reports import dataset
from tests.reports.conftest import assert_same

THRESHOLD = 5
PERTURBED = dataset.perturbed_at(THRESHOLD)
REPORTS = ["complications", "fusion", "outcomes", "completeness"]


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=THRESHOLD)


def ask(client, tokens, report, who="analyst", **query):
    response = client.get(f"/v1/reports/{report}", query_string=query, headers=tokens.header(who))
    assert response.status_code == 200, response.json
    return response.json


def month_end(year, month):
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def add_operation(db, centre_id, date, blood_loss, follow_up=False, approach="posterior"):
    patient = db.execute(
        "INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, decode(md5(random()::text), 'hex'),"
        " 'ado_ii') RETURNING id", (centre_id,)).fetchone()["id"]
    operation = db.execute(
        "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
        " blood_loss_ml) VALUES (%s, %s, md5(random()::text), %s, 'lumbar', %s, '{fusion}', %s) RETURNING id",
        (centre_id, patient, date, approach, blood_loss)).fetchone()["id"]
    if follow_up:
        db.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, fusion_status,"
                   " revision_surgery) VALUES (%s, %s, %s, 12, 'fused', false)",
                   (centre_id, operation, date + dt.timedelta(days=370)))
    return operation


# --- union of centres -------------------------------------------------------------------------

@pytest.mark.parametrize("report", [*REPORTS, "centres"])
def test_a_union_of_centres_is_refused(client, tokens, report):
    response = client.get(f"/v1/reports/{report}", query_string={"centre": "CENTRE-A,CENTRE-B"},
                          headers=tokens.header("analyst"))
    assert response.status_code == 422
    assert [error["field"] for error in response.json["errors"]] == ["centre"]


# --- shifted month ranges ---------------------------------------------------------------------

@pytest.fixture
def months(db, tokens):
    """Centre A: 30 operations in January and February 2016, and 2 in March (the target)."""
    a = tokens.centre_a["id"]
    for n in range(30):
        add_operation(db, a, dt.date(2016, 1 + n % 2, 1 + n % 28), 100 + 10 * n)
    march = [add_operation(db, a, dt.date(2016, 3, 10), 900), add_operation(db, a, dt.date(2016, 3, 20), 1500)]
    return a, march


def difference(client, tokens, who="analyst"):
    """What differencing January-March and January-February gives: March's operations and blood loss."""
    longer = ask(client, tokens, "complications", who, date_from="2016-01-01", date_to="2016-03-31")["total"]
    shorter = ask(client, tokens, "complications", who, date_from="2016-01-01", date_to="2016-02-29")["total"]

    def blood_loss_sum(total):
        return total["blood_loss_ml"]["mean"] * total["blood_loss_ml"]["n"]

    return (longer["operations"] - shorter["operations"],
            round(blood_loss_sum(longer) - blood_loss_sum(shorter), 6))


def test_shifted_month_ranges_do_not_isolate_a_month(db, client, tokens, months):
    centre, march = months
    # exact figures (the centre's own submitter) give March away: 2 operations, 2400 ml
    assert difference(client, tokens, "submitter_a") == (2, 2400)
    # an analyst's differences depend on the record keys of March's operations, which the
    # analyst does not know: the same two operations give different differences
    estimates = set()
    for key in range(0, KEY_SPACE, 16):
        db.execute("UPDATE operations SET record_key = %s WHERE centre_id = %s AND id = %s", (key, centre, march[0]))
        estimates.add(difference(client, tokens))
    assert len({count for count, _ in estimates}) >= 3, estimates
    assert len({total for _, total in estimates}) >= 3, estimates
    assert any(estimate != (2, 2400) for estimate in estimates)
    # and every estimate of the count is within the noise of the two figures it subtracts
    assert all(abs(count - 2) <= 2 * MAX_NOISE for count, _ in estimates)


def test_a_year_and_its_twelve_months_are_the_same_figures(client, tokens, months):
    """The same operations asked for in other words get the same figures: no averaging."""
    by_year = ask(client, tokens, "complications", year="2016", group_by="approach")
    by_months = ask(client, tokens, "complications", date_from="2016-01-01", date_to="2016-12-31",
                    group_by="approach")
    assert by_year["groups"] == by_months["groups"] and by_year["total"] == by_months["total"]
    total = ask(client, tokens, "complications")["total"]
    assert by_year["total"] == total  # every operation is in 2016
    posterior = ask(client, tokens, "complications", approach="posterior")["total"]
    assert [g for g in by_year["groups"] if g["group"]["approach"] == "posterior"][0] == \
        {**posterior, "group": {"approach": "posterior"}}


def test_the_same_query_twice_gives_the_same_answer(db, client, tokens, months):
    first = ask(client, tokens, "complications", group_by="approach")
    assert ask(client, tokens, "complications", group_by="approach") == first
    # a write elsewhere (another approach, another centre) leaves these operations' figures alone
    add_operation(db, tokens.centre_b["id"], dt.date(2016, 5, 1), 200, approach="anterior")
    again = ask(client, tokens, "complications", group_by="approach")
    assert [g for g in again["groups"] if g["group"]["approach"] == "posterior"] == \
        [g for g in first["groups"] if g["group"]["approach"] == "posterior"]


# --- one figure across reports ----------------------------------------------------------------

@pytest.fixture
def follow_ups(db, tokens):
    """Centre A: 30 operations, 20 followed up; centre B: 12 operations, 2 followed up."""
    for centre, operations, followed in ((tokens.centre_a["id"], 30, 20), (tokens.centre_b["id"], 12, 2)):
        for n in range(operations):
            add_operation(db, centre, dt.date(2016, 1 + n % 12, 1), 300, follow_up=n < followed)


@pytest.mark.parametrize("key", [0, 100, 250])
def test_operations_with_a_follow_up_are_one_figure_in_every_report(db, client, tokens, follow_ups, key):
    """Completeness publishes "operations with a follow-up" as a numerator; fusion and the
    funnel use it as the denominator of revision. It is one published number, withheld alike."""
    # one of centre B's two followed operations gets each key in turn: B's count of 2 is
    # published as 0 or as a small count, which every report must treat the same way
    db.execute("UPDATE operations SET record_key = %s WHERE (centre_id, id) = (SELECT centre_id, operation_id"
               " FROM follow_ups WHERE centre_id = %s ORDER BY id LIMIT 1)", (key, tokens.centre_b["id"]))
    completeness = {g["group"]["centre"]: g["follow_up"] for g in
                    ask(client, tokens, "completeness", group_by="centre")["groups"]}
    fusion = {g["group"]["centre"]: g["revision"] for g in ask(client, tokens, "fusion", group_by="centre")["groups"]}
    funnel = {g["group"]["centre"]: g["measure"] for g in
              ask(client, tokens, "centres", measure="revision")["groups"]}
    followed = {code: [o for o in dataset.counted(dataset.load(db)) if o["centre"] == code and o["follow_ups"]]
                for code in ("CENTRE-A", "CENTRE-B")}
    for code, ops in followed.items():
        published = dataset.perturbed(ops)
        assert completeness[code]["numerator"] == fusion[code]["denominator"] == funnel[code]["denominator"]
        assert completeness[code]["suppressed"] == fusion[code]["suppressed"] == funnel[code]["suppressed"]
        if 0 < published < THRESHOLD or 0 < len(ops) < THRESHOLD:
            assert completeness[code]["suppressed"] == "primary" and completeness[code]["numerator"] is None
        else:
            assert completeness[code]["numerator"] == published
    assert completeness["CENTRE-A"]["numerator"] == dataset.perturbed(followed["CENTRE-A"])


def test_blood_losses_recorded_are_one_figure_in_completeness_and_complications(client, tokens, months):
    completeness = ask(client, tokens, "completeness", group_by="centre")["groups"][0]["blood_loss_ml"]
    complications = ask(client, tokens, "complications", group_by="centre")["groups"][0]["blood_loss_ml"]
    assert completeness["numerator"] == complications["n"] is not None


# --- generated pairs of queries ---------------------------------------------------------------

def candidates(published: int) -> set:
    """The true counts the perturbation table maps to `published` for some cell key."""
    return {c for c in range(max(0, published - MAX_NOISE), published + MAX_NOISE + 1)
            if any(perturb(c, key) == published for key in range(KEY_SPACE))}


MONTHS = [(year, month) for year in range(2012, 2022) for month in range(1, 13)]  # the registry's years
# Each filter absent more often than not, so that pairs share cells with a few operations' difference.
FILTERS = st.fixed_dictionaries({
    "centre": st.sampled_from([None, None, "CENTRE-A", "CENTRE-B", "CENTRE-C"]),
    "months": st.tuples(st.sampled_from(MONTHS), st.sampled_from(MONTHS)).map(sorted) | st.none(),
    "year": st.sampled_from([None, None, None, 2014, 2016, 2018]),
    "approach": st.sampled_from([None, None, "posterior", "anterior"]),
    "min_months": st.sampled_from([12, 13, 24]),
    # the definitions (issue 18), each applying to its report only
    "unit": st.sampled_from([None, None, "patient"]),
    "window": st.sampled_from([None, None, "30", "90"]),
    "major": st.sampled_from([None, None, "clavien_or_classintra"]),
    "timepoint": st.sampled_from([None, "12m"]),
    "assessment": st.sampled_from([None, None, "ct", "xray"]),
    "failure_window": st.sampled_from([None, None, "24"]),
})
DEFINITIONS = {"unit": REPORTS, "window": ["complications"], "major": ["complications"], "timepoint": ["outcomes"],
               "assessment": ["fusion"], "failure_window": ["fusion"]}


def neighbours(report, filters):
    """Filters that select a few operations fewer or more than `filters`: a month range
    shortened at either end, a filter dropped, another fusion threshold."""
    found = [{**filters, "min_months": months} for months in (12, 13, 24)
             if report == "fusion" and months != filters["min_months"]]
    found += [{**filters, name: None} for name in ("centre", "year", "approach") if filters[name]]
    # another definition of the same figures: a pair that differs by the operations (or the
    # follow-ups) one definition counts and the other does not
    found += [{**filters, name: None} for name, reports in DEFINITIONS.items()
              if filters[name] and report in reports]
    if report == "complications" and filters["window"]:
        found.append({**filters, "window": "90" if filters["window"] == "30" else "30"})
    if report == "fusion" and filters["assessment"]:
        found.append({**filters, "assessment": "xray" if filters["assessment"] == "ct" else "ct"})
    if filters["months"]:
        start, end = filters["months"]
        if start < end:
            found.append({**filters, "months": [start, MONTHS[MONTHS.index(end) - 1]]})
            found.append({**filters, "months": [MONTHS[MONTHS.index(start) + 1], end]})
        found.append({**filters, "months": None})
    return found or [{**filters, "months": [MONTHS[0], MONTHS[-2]]}]  # no filter: all but the last month


QUERIES = st.tuples(st.sampled_from(REPORTS), st.sampled_from([None, "approach", "centre", "year", "region"]),
                    FILTERS).flatmap(lambda query: st.tuples(*map(st.just, query), st.sampled_from(neighbours(query[0], query[2]))))


def as_query(report, group_by, filters):
    query = {}
    if group_by:
        query["group_by"] = group_by
    if filters["centre"]:
        query["centre"] = filters["centre"]
    if filters["months"]:
        (y1, m1), (y2, m2) = filters["months"]
        query["date_from"], query["date_to"] = dt.date(y1, m1, 1).isoformat(), month_end(y2, m2).isoformat()
    if filters["year"]:
        query["year"] = str(filters["year"])
    if filters["approach"]:
        query["approach"] = filters["approach"]
    if report == "fusion":
        query["min_months"] = filters["min_months"]
    for name, reports in DEFINITIONS.items():
        if filters[name] and report in reports:
            query[name] = filters[name]
    return query


def oracle_options(report, query):
    """The reference computation's options for a query's definitions."""
    options = {}
    if report == "fusion":
        options["min_months"] = query["min_months"]
        if "assessment" in query:
            options["assessment"] = [query["assessment"]]
        if "failure_window" in query:
            options["failure_window"] = int(query["failure_window"])
    if report == "complications":
        if "window" in query:
            days = int(query["window"])
            options["window"] = days
            # the generated operations are years old: any cutoff in the last months selects them all
            options["window_cutoff"] = dt.date.today() - dt.timedelta(days=days)
        if "major" in query:
            options["major"] = query["major"]
    if report == "outcomes" and "timepoint" in query:
        options["timepoint"] = query["timepoint"]
    return options


def selected(operations, query):
    """The operations a query's filters select, from the raw records."""
    chosen = []
    first = dataset.first_operations(operations)
    for o in operations:
        if query.get("unit") == "patient" and (o["centre_id"], o["id"]) not in first:
            continue
        if "centre" in query and o["centre"] != query["centre"]:
            continue
        if "date_from" in query and not (query["date_from"] <= o["operation_date"].isoformat() <= query["date_to"]):
            continue
        if "year" in query and o["operation_date"].year != int(query["year"]):
            continue
        if "approach" in query and o["approach"] != query["approach"]:
            continue
        chosen.append(o)
    return chosen


def counts_of(figures, path=""):
    """{path: count} of every count in a row: operations, numerators, denominators, n."""
    found = {}
    for key, value in figures.items():
        if key in ("group", "suppressed"):
            continue
        if isinstance(value, dict):
            found.update(counts_of(value, f"{path}{key}."))
        elif key in ("operations", "fusion_operations", "numerator", "denominator", "n"):
            found[f"{path}{key}"] = value
    return found


# figures that are a group of proportions (one per event type, one per source that reported)
FIGURE_GROUPS = ("intraop_event_types", "intraop_event_by_reporter", "postop_complication_by_reporter")


def check_against_oracle(body, operations, report, dims, query):
    """Every listed row and visible figure is the perturbed reference; every withheld one has a
    count below the threshold, as published or as it truly is. Returns {(group key, path):
    published count}."""
    options = oracle_options(report, query)
    compute = dataset.REFERENCE[report]
    groups = dataset.published_groups(operations, dims, PERTURBED)
    expected = {key: compute(ops, count=PERTURBED, **options) for key, ops in groups.items()}
    exact = {key: compute(ops, count=dataset.exact, **options) for key, ops in groups.items()}
    rows = {tuple(g["group"][d] for d in dims): g for g in body["groups"]}
    assert set(rows) == set(expected)
    published = {}
    for key, row in rows.items():
        wanted, true = expected[key], exact[key]
        small_row = 0 < wanted["operations"] < THRESHOLD or 0 < true["operations"] < THRESHOLD
        assert (row["suppressed"] == "primary") == small_row, (key, row["suppressed"], wanted["operations"])
        for name, value in row.items():
            if name in ("group", "suppressed"):
                continue
            grouped = name in FIGURE_GROUPS
            figures = value.items() if grouped else [(name, value)]
            for label, figure in figures:
                reference = wanted[name][label] if grouped else wanted[name]
                true_reference = true[name][label] if grouped else true[name]
                if isinstance(figure, dict) and figure.get("suppressed") and figure.get("n") is not None:
                    # a summary of a published n too small for statistics: the n alone
                    assert 0 < reference["n"] < THRESHOLD + MAX_NOISE
                    assert_same(figure, reference, f"{report}{key}.{label}")
                elif isinstance(figure, dict) and figure.get("suppressed"):
                    bases = [r.get(k) for r in (reference, true_reference)
                             for k in ("denominator", "numerator", "n") if k in r]
                    assert small_row or any(0 < b < THRESHOLD for b in bases), (key, label, reference)
                elif figure is None:
                    assert small_row or 0 < reference < THRESHOLD or 0 < true_reference < THRESHOLD
                else:
                    assert_same(figure, reference, f"{report}{key}.{label}")
        published.update({(key, path): count for path, count in counts_of(row).items() if count is not None})
    return published


@pytest.fixture
def everything(db, registry):
    return dataset.load(db)


@hypothesis_settings(max_examples=100, derandomize=True, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pair=QUERIES)
def test_no_pair_of_queries_determines_a_small_difference(client, tokens, everything, pair):
    """Over a registry of 160 operations in 3 centres, pairs of allowed queries (same report and
    grouping; filters by centre, month range, year, approach, fusion threshold; the definitions:
    unit, complication window and major, outcome time point, imaging method, failure window, each
    dropped or changed in the pair). Checked:

    - every figure of both answers is the reference computation from the raw rows with each
      count perturbed by the cell key of exactly the operations it counts, rates, intervals and
      means from those counts, and the primary rule on them: nothing is published exactly, so a
      difference of two published counts is the true difference plus the noises of two record
      sets, and counts of the same operations (whatever the query) are the same number;
    - for each count in both answers whose true difference isolates 1 .. threshold-1
      operations, the two published counts are consistent with at least two true differences
      (through the public perturbation table, keys unknown): the difference is not determined.
    """
    report, group_by, first, second = pair
    dims = [group_by] if group_by else (["centre"] if report == "completeness" else [])
    answers = []
    for filters in (first, second):
        query = as_query(report, group_by, filters)
        body = ask(client, tokens, report, **query)
        assert body["disclosure_control"]["threshold"] == THRESHOLD
        ops = selected(everything, query)
        answers.append((check_against_oracle(body, ops, report, dims, query),
                        check_exact_counts(ops, report, dims, query)))
    (published_1, true_1), (published_2, true_2) = answers
    for cell in set(published_1) & set(published_2):
        (t1, p1), (t2, p2) = sorted([(true_1[cell], published_1[cell]), (true_2[cell], published_2[cell])],
                                    reverse=True)
        if 0 < t1 - t2 < THRESHOLD:
            possible = {c1 - c2 for c1 in candidates(p1) for c2 in candidates(p2)}
            assert t1 - t2 in possible and len(possible) > 1, (cell, t1 - t2, possible)


def check_exact_counts(ops, report, dims, query):
    """{(group key, path): true count} from the reference computed exactly."""
    options = oracle_options(report, query)
    compute = dataset.REFERENCE[report]
    exact = {}
    for key, group in dataset.groups(ops, dims).items():
        exact.update({(key, path): count for path, count in counts_of(compute(group, **options)).items()})
    return exact

"""Cell-key perturbation: the perturbation table, and the primary rule on published counts.

(Secondary suppression is gone: with every count perturbed, a withheld cell is no longer the
total minus the visible cells; tests/reports/test_differencing.py tests that and the attacks
across queries.)"""

import pytest

from registry.reports import suppression
from registry.reports.suppression import KEY_SPACE, perturb
from tests.conftest import make_settings
from tests.reports import dataset


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=5)


def test_zeros_stay_zero_and_no_count_moves_more_than_two_or_below_zero():
    assert {perturb(0, key) for key in range(KEY_SPACE)} == {0}
    for count in range(1, 60):
        published = [perturb(count, key) for key in range(KEY_SPACE)]
        assert min(published) >= 0
        assert {p - count for p in published} <= set(range(-suppression.MAX_NOISE, suppression.MAX_NOISE + 1))


def test_the_noise_is_unbiased_with_the_documented_variance():
    for count in range(1, 60):
        mean, variance = suppression.noise_moments(count)
        assert mean == 0
        assert sum(perturb(count, key) - count for key in range(KEY_SPACE)) == 0  # the table itself
        assert variance == (232 / 256 if count == 1 else 242 / 256)
    assert suppression.description(5) == {"method": "cell-key perturbation", "max_noise": 2,
                                          "noise_variance": 0.945, "threshold": 5, "summary_min_n": 7,
                                          "rates": "computed from the published counts"}


def test_the_noise_depends_on_the_cell_key_only():
    for count in (1, 2, 7, 300):
        for key_sum in (0, 17, 255, 1000):
            assert perturb(count, key_sum) == perturb(count, key_sum % KEY_SPACE) == perturb(count, key_sum + 256 * 9)


def add_operations(db, centre_id, approach, region, count, blood_loss=300):
    patient = db.execute(
        "INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, decode(md5(random()::text), 'hex'), 'ado_ii')"
        " RETURNING id", (centre_id,)).fetchone()["id"]
    for _ in range(count):
        db.execute("INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach,"
                   " procedures, blood_loss_ml) VALUES (%s, %s, md5(random()::text), '2020-01-01', %s, %s, '{laminectomy}', %s)",
                   (centre_id, patient, region, approach, blood_loss))


def by_approach(db):
    return dataset.groups(dataset.load(db), ["approach"])


def test_api_withholds_small_published_cells_and_nothing_else(db, client, tokens):
    a = tokens.centre_a["id"]
    add_operations(db, a, "posterior", "lumbar", 40)
    add_operations(db, a, "anterior", "cervical", 12)
    add_operations(db, a, "lateral", "lumbar", 2)  # small: 0 to 4 once perturbed
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                      headers=tokens.header("analyst")).json
    assert body["disclosure_control"]["method"] == "cell-key perturbation"
    rows = {g["group"]["approach"]: g for g in body["groups"]}
    groups = by_approach(db)
    # lateral is published as 0 (not listed, like an empty group) or withheld
    assert "lateral" not in rows or rows["lateral"]["suppressed"] == "primary"
    if "lateral" in rows:
        hidden = rows["lateral"]
        assert hidden["operations"] is None
        assert hidden["intraop_event"]["rate"] is None and hidden["intraop_event"]["ci_low"] is None
        assert hidden["blood_loss_ml"]["median"] is None and hidden["blood_loss_ml"]["n"] is None
        assert hidden["intraop_event_types"]["dural_tear"]["numerator"] is None
    # no complement: the other groups are published, each perturbed by its own records' keys
    for approach in ("posterior", "anterior"):
        assert rows[approach]["suppressed"] is None
        assert rows[approach]["operations"] == dataset.perturbed(groups[(approach,)])
    assert body["total"]["operations"] == dataset.perturbed(dataset.counted(dataset.load(db)))
    # the submitter of the centre sees its own figures exact
    own = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                     headers=tokens.header("submitter_a")).json
    assert {g["group"]["approach"]: g["operations"] for g in own["groups"]} == \
        {"posterior": 40, "anterior": 12, "lateral": 2}
    assert own["disclosure_control"] is None


def test_api_two_way_small_cell_is_withheld_and_no_other(db, client, tokens):
    a, b = tokens.centre_a["id"], tokens.centre_b["id"]
    add_operations(db, a, "posterior", "lumbar", 30)
    add_operations(db, a, "posterior", "cervical", 25)
    add_operations(db, b, "anterior", "lumbar", 20)
    add_operations(db, b, "anterior", "cervical", 3)  # small
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach,region"},
                      headers=tokens.header("analyst")).json
    cells = {(g["group"]["approach"], g["group"]["region"]): g for g in body["groups"]}
    small = cells.get(("anterior", "cervical"))
    assert small is None or small["suppressed"] == "primary"
    assert [k for k, g in cells.items() if g["suppressed"]] == ([("anterior", "cervical")] if small else [])


def test_figure_with_a_small_denominator_is_withheld_in_a_visible_cell(db, client, tokens):
    a = tokens.centre_a["id"]
    add_operations(db, a, "posterior", "lumbar", 30, blood_loss=None)
    add_operations(db, a, "posterior", "lumbar", 2, blood_loss=500)  # 2 blood losses recorded
    add_operations(db, a, "anterior", "lumbar", 20, blood_loss=100)
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                      headers=tokens.header("analyst")).json
    rows = {g["group"]["approach"]: g for g in body["groups"]}
    groups = by_approach(db)
    assert rows["posterior"]["suppressed"] is None
    assert rows["posterior"]["operations"] == dataset.perturbed(groups[("posterior",)])
    blood_loss = rows["posterior"]["blood_loss_ml"]
    # two values: published n of 1 to 4 is withheld, a published n of 0 shows an empty summary
    assert blood_loss["median"] is None and blood_loss["mean"] is None
    assert blood_loss["suppressed"] == "primary" or blood_loss["n"] == 0
    # the other group's blood loss is published: it no longer gives the small one away
    recorded = [o for o in groups[("anterior",)] if o["blood_loss_ml"] is not None]
    assert rows["anterior"]["blood_loss_ml"]["suppressed"] is None
    assert rows["anterior"]["blood_loss_ml"]["n"] == dataset.perturbed(recorded)
    assert rows["anterior"]["blood_loss_ml"]["median"] == 100 and rows["anterior"]["blood_loss_ml"]["mean"] == 100


def test_a_summary_shows_statistics_only_of_enough_values(db, client, tokens):
    """Statistics need a published n of threshold + 2: they then describe at least threshold
    values, whatever the noise. Below that, the n is shown alone."""
    a = tokens.centre_a["id"]
    add_operations(db, a, "posterior", "lumbar", 30, blood_loss=None)
    add_operations(db, a, "posterior", "lumbar", 5, blood_loss=400)
    seen = set()
    for key in range(0, KEY_SPACE, 8):  # one value's key, so the cell key of the five, in steps
        db.execute("UPDATE operations SET record_key = %s WHERE centre_id = %s AND id = (SELECT min(id)"
                   " FROM operations WHERE centre_id = %s AND blood_loss_ml IS NOT NULL)", (key, a, a))
        published_n = dataset.perturbed([o for o in dataset.load(db) if o["blood_loss_ml"] is not None])
        total = client.get("/v1/reports/complications", headers=tokens.header("analyst")).json["total"]
        blood_loss = total["blood_loss_ml"]
        if published_n >= 7:
            seen.add("statistics")
            assert blood_loss == {"n": published_n, "mean": 400, "median": 400, "q1": 400, "q3": 400,
                                  "suppressed": None}
        elif published_n >= 5:
            seen.add("n alone")
            assert blood_loss == {"n": published_n, "mean": None, "median": None, "q1": None, "q3": None,
                                  "suppressed": "primary"}
        else:
            seen.add("withheld")
            assert blood_loss["n"] is None and blood_loss["suppressed"] == "primary"
    assert seen == {"statistics", "n alone", "withheld"}

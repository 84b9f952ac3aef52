"""GET /v1/reports/scores (issue 15): each outcome score's change from baseline over the pairs of
the same instrument, version, pain site and EQ-5D-5L value set, and the share reaching its MCID.
Figures computed by hand on operations built for them; submitter figures are exact."""

import pytest

from tests.conftest import make_settings
from tests.records.helpers import operation, seed_follow_up
from tests.reports.maintenance import fold_queued, queued

THRESHOLD = 5


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=THRESHOLD)


def joa(value, version="17-point"):
    return {"instrument": "joa", "version": version, "value": value}


def ndi(value):
    return {"instrument": "ndi", "version": "percent", "value": value}


def pain(value, site):
    return {"instrument": "pain_nrs", "value": value, "site": site}


def eq5d(value, value_set):
    return {"instrument": "eq5d5l_index", "value": value, "value_set": value_set}


def follow_up(local_ref, months, scores):
    return {**seed_follow_up(), "local_ref": local_ref, "months_after": months, "scores": scores}


# local_ref: (baseline scores, [(months after, follow-up scores)])
CASES = {
    # JOA 10 -> 12 at 12 months -> 14 at 48; NDI 40 -> 30 -> 20; neck pain 7 -> 6 -> 3; EQ-5D-5L
    # (England) 0.6 -> 0.663 at 48 months only
    "OP-1": ([joa(10), ndi(40), pain(7, "neck"), eq5d(0.6, "england")],
             [(12, [joa(12), ndi(30), pain(6, "neck")]),
              (48, [joa(14), ndi(20), pain(3, "neck"), eq5d(0.663, "england")])]),
    # lumbar JOA 10 -> 20; an EQ-5D-5L index on the Japanese value set, followed on the English one
    "OP-2": ([joa(10, "29-point"), eq5d(0.5, "japan")],
             [(24, [joa(20, "29-point"), eq5d(0.8, "england")])]),
    # arm pain 8 -> 2; neck pain never scored again
    "OP-3": ([pain(8, "arm"), pain(5, "neck")], [(12, [pain(2, "arm")])]),
    # a 17-point JOA before, only the 29-point lumbar JOA after: never paired across versions
    "OP-4": ([joa(9)], [(24, [joa(15, "29-point")])]),
}


def post_cases(client, tokens, cases=CASES, token="submitter_a"):
    for local_ref, (baseline, visits) in cases.items():
        document = operation(local_ref=local_ref, baseline_scores=baseline)
        document["patient"]["ref"] = f"P-{local_ref}"
        created = client.post("/v1/operations/", json=document, headers=tokens.header(token))
        assert created.status_code == 201, created.json
        for months, scores in visits:
            response = client.post(f"/v1/operations/{created.json['id']}/follow-ups",
                                   json=follow_up(f"{local_ref}-FU{months}", months, scores),
                                   headers=tokens.header(token))
            assert response.status_code == 201, response.json


def scores_report(client, tokens, token="submitter_a", **query):
    response = client.get("/v1/reports/scores", query_string=query, headers=tokens.header(token))
    assert response.status_code == 200, response.json
    return response.json


def summary(figure):
    return {key: figure[key] for key in ("n", "median", "q1", "q3", "mean")}


@pytest.mark.parametrize("query", [{}, {"group_by": "approach"}, {"approach": "posterior"}],
                         ids=["total", "grouped", "filtered"])
def test_latest_pairs_change_and_mcid(client, tokens, query):
    post_cases(client, tokens)
    total = scores_report(client, tokens, **query)["total"]["scores"]
    cervical = total["joa_17"]
    assert (cervical["pairs"], cervical["unpaired"]) == (1, 1)    # OP-1 paired; OP-4 has no 17-point JOA after
    assert summary(cervical["baseline"]) == {"n": 1, "median": 10, "q1": 10, "q3": 10, "mean": 10}
    assert cervical["follow_up"]["median"] == 14                  # the latest visit, not the 12-month one
    assert cervical["change"]["median"] == 4
    assert (cervical["reaches_mcid"]["numerator"], cervical["reaches_mcid"]["denominator"]) == (1, 1)
    assert cervical["recovery_rate"]["median"] == pytest.approx(100 * 4 / 7)
    lumbar = total["joa_29"]
    assert (lumbar["pairs"], lumbar["unpaired"]) == (1, 0)
    assert lumbar["recovery_rate"]["median"] == pytest.approx(100 * 10 / 19)
    assert "reaches_mcid" not in lumbar                           # no MCID the registry is confident of
    # NDI improves by falling: 40 -> 20 is a change of +20, past its MCID of 15
    assert total["ndi_percent"]["change"]["median"] == 20
    assert total["ndi_percent"]["reaches_mcid"]["numerator"] == 1
    # pain by site: neck 7 -> 3 (OP-1) and 5 unpaired (OP-3); arm 8 -> 2 (OP-3)
    neck, arm = total["pain_nrs_neck"], total["pain_nrs_arm"]
    assert (neck["pairs"], neck["unpaired"], neck["change"]["median"]) == (1, 1, 4)
    assert (arm["pairs"], arm["unpaired"], arm["change"]["median"]) == (1, 0, 6)
    # EQ-5D-5L: exactly at the England MCID (0.663 - 0.6) reaches it; a Japanese baseline
    # followed on the English value set is no pair of either
    england = total["eq5d5l_england"]
    assert (england["pairs"], england["change"]["median"]) == (1, pytest.approx(0.063))
    assert england["reaches_mcid"]["numerator"] == 1
    assert (total["eq5d5l_japan"]["pairs"], total["eq5d5l_japan"]["unpaired"]) == (0, 1)
    assert "reaches_mcid" not in total["eq5d5l_japan"]


def test_at_12_months_each_outcome_takes_its_visit_closest_to_12_months(client, tokens):
    post_cases(client, tokens)
    report = scores_report(client, tokens, timepoint="12m")
    total = report["total"]["scores"]
    assert report["definitions"]["timepoint"]["value"] == "12m"
    cervical = total["joa_17"]
    assert (cervical["pairs"], cervical["change"]["median"]) == (1, 2)       # 10 -> 12
    assert cervical["reaches_mcid"]["numerator"] == 0                        # 2 < 2.5
    assert (total["ndi_percent"]["change"]["median"], total["ndi_percent"]["reaches_mcid"]["numerator"]) == (10, 0)
    assert total["eq5d5l_england"]["unpaired"] == 1                         # scored at 48 months only
    assert total["joa_29"]["pairs"] == 0                                    # 24 months is outside 9-15


def test_figures_count_changes_the_maintainer_has_not_folded(client, tokens, db):
    post_cases(client, tokens)
    assert queued(db) > 0
    before_fold = scores_report(client, tokens)
    fold_queued(db)
    assert queued(db) == 0
    assert scores_report(client, tokens)["total"] == before_fold["total"]
    # a change queued again counts at once: OP-3's arm pain rescored at a later visit
    created = client.get("/v1/operations/", query_string={"local_ref": "OP-3"}, headers=tokens.header("submitter_a"))
    op3 = created.json["items"][0]["id"]
    response = client.post(f"/v1/operations/{op3}/follow-ups", json=follow_up("OP-3-FU36", 36, [pain(6, "arm")]),
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 201, response.json
    assert queued(db) > 0
    arm = scores_report(client, tokens)["total"]["scores"]["pain_nrs_arm"]
    assert arm["change"]["median"] == 2 and arm["reaches_mcid"]["numerator"] == 1


def test_withdrawn_consent_counts_nowhere(client, tokens, db):
    post_cases(client, tokens)
    db.execute("UPDATE patients SET consent = 'withdrawn' WHERE id IN (SELECT patient_id FROM operations "
               "WHERE local_ref = 'OP-1')")
    total = scores_report(client, tokens)["total"]["scores"]
    assert (total["joa_17"]["pairs"], total["joa_17"]["unpaired"]) == (0, 1)
    assert total["ndi_percent"]["pairs"] == 0


def test_an_analyst_sees_small_cells_withheld_and_a_centre_its_own_exactly(client, tokens):
    post_cases(client, tokens)
    own = scores_report(client, tokens)["total"]
    assert own["scores"]["joa_17"]["change"]["median"] == 4
    analyst = scores_report(client, tokens, token="analyst")
    total = analyst["total"]
    assert analyst["suppression"] == {"applied": True, "threshold": THRESHOLD}
    # 4 operations: the whole row is below the threshold, every figure of it withheld
    assert total["suppressed"] == "primary" and total["operations"] is None
    cervical = total["scores"]["joa_17"]
    assert cervical["pairs"] is None and cervical["change"]["median"] is None
    assert cervical["reaches_mcid"]["rate"] is None and cervical["reaches_mcid"]["suppressed"]


def test_many_pairs_are_published_and_few_withheld_for_an_analyst(client, tokens):
    # twelve operations with a JOA pair, two with a neck pain pair
    cases = {f"MANY-{i}": ([joa(8 + i % 4)] + ([pain(7, "neck")] if i < 2 else []),
                           [(24, [joa(14)] + ([pain(2, "neck")] if i < 2 else []))]) for i in range(12)}
    post_cases(client, tokens, cases)
    total = scores_report(client, tokens, token="analyst")["total"]["scores"]
    assert total["joa_17"]["pairs"] is not None and abs(total["joa_17"]["pairs"] - 12) <= 2   # perturbed
    assert total["joa_17"]["reaches_mcid"]["rate"] is not None
    assert total["pain_nrs_neck"]["pairs"] is None                         # 2 pairs: withheld
    assert total["pain_nrs_neck"]["change"]["median"] is None


def test_the_report_is_csv_and_a_plot_and_refuses_other_reports_parameters(client, tokens):
    post_cases(client, tokens)
    header = tokens.header("submitter_a")
    csv = client.get("/v1/reports/scores", query_string={"format": "csv"}, headers=header)
    assert csv.status_code == 200
    head, total = csv.get_data(as_text=True).splitlines()[0].split(","), csv.get_data(as_text=True).splitlines()[-1]
    assert total.split(",")[head.index("scores_joa_17_change_median")] == "4.0"
    svg = client.get("/v1/reports/scores", query_string={"format": "svg"}, headers=header)
    assert svg.status_code == 200 and b"JOA 17-point: reaching MCID" in svg.data
    refused = client.get("/v1/reports/scores", query_string={"window": "30"}, headers=header)
    assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "window"


def test_the_seed_case_reads_joa_10_to_14_reaching_the_mcid(client, tokens):
    from tests.records.helpers import seed_case
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    response = client.post(f"/v1/operations/{created.json['id']}/follow-ups", json=seed_follow_up(),
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 201, response.json
    cervical = scores_report(client, tokens)["total"]["scores"]["joa_17"]
    assert (cervical["baseline"]["median"], cervical["follow_up"]["median"], cervical["change"]["median"]) == (10, 14, 4)
    assert cervical["reaches_mcid"]["numerator"] == 1
    assert cervical["recovery_rate"]["median"] == pytest.approx(57.142857, abs=1e-5)

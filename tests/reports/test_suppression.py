"""Primary and secondary suppression: small cells are withheld, and no withheld cell can be
recovered by subtraction from the visible cells and totals."""

from fractions import Fraction

import pytest

from registry.reports.suppression import suppress_one_way, suppress_two_way
from tests.conftest import make_settings


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=5)


def solvable(counts, withheld, row_withheld, column_withheld, total_withheld):
    """Cells whose value the visible figures determine (Gaussian elimination over the line sums)."""
    rows = sorted({r for r, _ in counts})
    columns = sorted({c for _, c in counts})
    unknowns = [("cell", k) for k in counts if k in withheld] + [("row", r) for r in row_withheld] \
        + [("column", c) for c in column_withheld] + ([("total", None)] if total_withheld else [])
    equations = []
    for r in rows:  # sum of row cells - row total = 0
        equations.append({("cell", k): 1 for k in counts if k[0] == r} | {("row", r): -1})
    for c in columns:
        equations.append({("cell", k): 1 for k in counts if k[1] == c} | {("column", c): -1})
    equations.append({("row", r): 1 for r in rows} | {("total", None): -1})
    equations.append({("column", c): 1 for c in columns} | {("total", None): -1})
    matrix = [[Fraction(eq.get(u, 0)) for u in unknowns] for eq in equations]
    # reduced row echelon form; an unknown is determined when a row has it as its only entry
    pivot_row = 0
    for col in range(len(unknowns)):
        pivot = next((r for r in range(pivot_row, len(matrix)) if matrix[r][col] != 0), None)
        if pivot is None:
            continue
        matrix[pivot_row], matrix[pivot] = matrix[pivot], matrix[pivot_row]
        lead = matrix[pivot_row][col]
        matrix[pivot_row] = [x / lead for x in matrix[pivot_row]]
        for r in range(len(matrix)):
            if r != pivot_row and matrix[r][col] != 0:
                factor = matrix[r][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[pivot_row])]
        pivot_row += 1
    determined = set()
    for row in matrix:
        nonzero = [i for i, x in enumerate(row) if x != 0]
        if len(nonzero) == 1:
            determined.add(unknowns[nonzero[0]])
    return determined


def test_one_way_small_cell_gets_a_complement():
    withheld = suppress_one_way({"a": 3, "b": 40, "c": 12, "d": 50}, 5)
    assert withheld == {"a": "primary", "c": "secondary"}


def test_one_way_complement_gives_a_wide_enough_range():
    # two cells of 1: each would be known to be 1 from their sum of 2 (a listed cell holds >= 1)
    withheld = suppress_one_way({"a": 1, "b": 1, "c": 6, "d": 30}, 5)
    assert withheld == {"a": "primary", "b": "primary", "c": "secondary"}


def test_one_way_small_total_withholds_everything():
    assert suppress_one_way({"a": 2, "b": 1}, 5) == {"a": "primary", "b": "primary"}


def test_one_way_nothing_small_nothing_withheld():
    assert suppress_one_way({"a": 5, "b": 9}, 5) == {}


@pytest.mark.parametrize("seed", range(60))
def test_two_way_withheld_cells_cannot_be_solved(seed):
    import random

    rng = random.Random(seed)
    rows, columns = rng.randint(2, 5), rng.randint(2, 5)
    # the full grid, absent combinations as zero cells (as the service passes it)
    counts = {(r, c): rng.choice([1, 2, 3, 4, 6, 9, 15, 30, 80]) if rng.random() < 0.85 else 0
              for r in range(rows) for c in range(columns)}
    row_totals = {r: sum(n for (rr, _), n in counts.items() if rr == r) for r in range(rows)}
    column_totals = {c: sum(n for (_, cc), n in counts.items() if cc == c) for c in range(columns)}
    row_totals = {r: n for r, n in row_totals.items() if n}
    column_totals = {c: n for c, n in column_totals.items() if n}
    row_withheld = suppress_one_way(row_totals, 5)
    column_withheld = suppress_one_way(column_totals, 5)
    total_withheld = sum(counts.values()) < 5
    withheld = suppress_two_way(counts, 5, row_withheld, column_withheld, total_withheld)
    assert all(k in withheld for k, n in counts.items() if 0 < n < 5), "every small cell is withheld"
    sensitive = {("cell", k) for k, reason in withheld.items() if reason == "primary"} \
        | {("row", r) for r, reason in row_withheld.items() if reason == "primary"} \
        | {("column", c) for c, reason in column_withheld.items() if reason == "primary"}
    assert not solvable(counts, withheld, row_withheld, column_withheld, total_withheld) & sensitive, \
        "a small cell can be recovered from the visible figures"


def test_two_way_crafted_table():
    counts = {("a", "x"): 2, ("a", "y"): 20, ("a", "z"): 30,
              ("b", "x"): 25, ("b", "y"): 21, ("b", "z"): 40,
              ("c", "x"): 26, ("c", "y"): 22, ("c", "z"): 50}
    withheld = suppress_two_way(counts, 5, {}, {}, False)
    assert withheld[("a", "x")] == "primary"
    # the cheapest cycle through (a, x): one more cell in its row, its column and the corner
    assert len(withheld) == 4
    assert not solvable(counts, withheld, {}, {}, False) & {("cell", k) for k in withheld}


def add_operations(db, centre_id, approach, region, count, blood_loss=300):
    patient = db.execute(
        "INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, decode(md5(random()::text), 'hex'), 'ado_ii')"
        " RETURNING id", (centre_id,)).fetchone()["id"]
    for _ in range(count):
        db.execute("INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach,"
                   " procedures, blood_loss_ml) VALUES (%s, %s, md5(random()::text), '2020-01-01', %s, %s, '{laminectomy}', %s)",
                   (centre_id, patient, region, approach, blood_loss))


def test_api_withholds_small_cells_and_a_complement(db, client, tokens):
    a = tokens.centre_a["id"]
    add_operations(db, a, "posterior", "lumbar", 40)
    add_operations(db, a, "anterior", "cervical", 12)
    add_operations(db, a, "lateral", "lumbar", 2)  # small: primary
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                      headers=tokens.header("analyst")).json
    rows = {g["group"]["approach"]: g for g in body["groups"]}
    assert rows["lateral"]["suppressed"] == "primary"
    assert rows["anterior"]["suppressed"] == "secondary"  # else lateral = total - the rest
    assert rows["posterior"]["suppressed"] is None and rows["posterior"]["operations"] == 40
    for hidden in (rows["lateral"], rows["anterior"]):
        assert hidden["operations"] is None
        assert hidden["intraop_event"]["rate"] is None and hidden["intraop_event"]["ci_low"] is None
        assert hidden["blood_loss_ml"]["median"] is None and hidden["blood_loss_ml"]["n"] is None
        assert hidden["intraop_event_types"]["dural_tear"]["numerator"] is None
    assert body["total"]["operations"] == 54
    # the submitter of the centre sees its own figures unsuppressed
    own = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                     headers=tokens.header("submitter_a")).json
    assert {g["group"]["approach"]: g["operations"] for g in own["groups"]} == \
        {"posterior": 40, "anterior": 12, "lateral": 2}


def test_api_two_way_margins_are_protected(db, client, tokens):
    a, b = tokens.centre_a["id"], tokens.centre_b["id"]
    add_operations(db, a, "posterior", "lumbar", 30)
    add_operations(db, a, "posterior", "cervical", 25)
    add_operations(db, b, "anterior", "lumbar", 20)
    add_operations(db, b, "anterior", "cervical", 3)  # small
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach,region"},
                      headers=tokens.header("analyst")).json
    cells = {(g["group"]["approach"], g["group"]["region"]): g for g in body["groups"]}
    assert cells[("anterior", "cervical")]["suppressed"] == "primary"
    hidden = {k for k, g in cells.items() if g["suppressed"]}
    # every row and column holding a withheld cell holds at least two
    for key in hidden:
        assert sum(1 for k in hidden if k[0] == key[0]) >= 2
        assert sum(1 for k in hidden if k[1] == key[1]) >= 2


def test_figure_with_a_small_denominator_is_withheld_in_a_visible_cell(db, client, tokens):
    a = tokens.centre_a["id"]
    add_operations(db, a, "posterior", "lumbar", 30, blood_loss=None)
    add_operations(db, a, "posterior", "lumbar", 2, blood_loss=500)  # 2 blood losses recorded
    add_operations(db, a, "anterior", "lumbar", 20, blood_loss=100)
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                      headers=tokens.header("analyst")).json
    rows = {g["group"]["approach"]: g for g in body["groups"]}
    assert rows["posterior"]["suppressed"] is None and rows["posterior"]["operations"] == 32
    assert rows["posterior"]["blood_loss_ml"]["suppressed"] == "primary"
    assert rows["posterior"]["blood_loss_ml"]["median"] is None
    # with only two groups, the other's blood loss would give it away by subtraction
    assert rows["anterior"]["blood_loss_ml"]["suppressed"] == "secondary"

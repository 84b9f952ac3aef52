"""Dashboard fixtures: a registry of five centres large enough to publish, one centre too small
to publish (withheld), and bulk submissions with rejected rows in centres A and B."""

import uuid

import psycopg
import pytest
from psycopg import sql

from registry import create_app
from registry.centres.store import add_centre
from tests.conftest import Tokens, _with_database, make_settings
from tests.reports import dataset
from tests.reports.test_suppression import add_operations

HEADER = ("local_ref,patient.ref,patient.sex,patient.birth_year,patient.diagnosis,operation_date,region,approach,"
          "procedures,levels.from,levels.to")
GOOD_ROW = "{ref},{ref}-P,male,1973,ado_ii,2016-01-01,cervical,posterior,laminectomy;fusion,C3,C6"
BAD_REGION_ROW = "{ref},{ref}-P,male,1973,ado_ii,2016-01-01,elbow-of-doom,posterior,laminectomy,,"
BAD_YEAR_ROW = "{ref},{ref}-P,male,1873,ado_ii,2016-01-01,cervical,posterior,laminectomy,C3,C4"

# centre B's refs: a submitter of centre A must never see them
B_REJECTED_REF = "B-SECRET-REJECT-7"
A_REJECTED_REFS = ("A-BAD-REGION-1", "A-BAD-YEAR-2")


def submit_csv(client, header: dict, rows: list[str]):
    body = "\n".join([HEADER, *rows]) + "\n"
    answer = client.post("/v1/submissions/?mode=partial", data=body.encode(),
                         headers={**header, "Content-Type": "text/csv"})
    assert answer.status_code == 201, answer.data
    return answer.json


def populate(db, tokens, client) -> dict:
    """Centres A-E with about 45 operations each, TINY with 4 (always withheld for analysts),
    and one partially rejected CSV submission in each of A and B."""
    centre_c = add_centre(db, "CENTRE-C", "Centre C")
    centre_d = add_centre(db, "CENTRE-D", "Centre D")
    centre_e = add_centre(db, "CENTRE-E", "Centre E")
    tiny = add_centre(db, "TINY", "A centre with four operations")
    big = [tokens.centre_a["id"], tokens.centre_b["id"], centre_c["id"], centre_d["id"], centre_e["id"]]
    dataset.generate(db, big, seed=3, operations=220, withdrawn_share=0.0)
    add_operations(db, tiny["id"], "posterior", "cervical", 4)
    submission_a = submit_csv(client, tokens.header("submitter_a"), [
        GOOD_ROW.format(ref="A-GOOD-1"), BAD_REGION_ROW.format(ref=A_REJECTED_REFS[0]),
        BAD_YEAR_ROW.format(ref=A_REJECTED_REFS[1])])
    submission_b = submit_csv(client, tokens.header("submitter_b"), [
        GOOD_ROW.format(ref="B-GOOD-1"), BAD_REGION_ROW.format(ref=B_REJECTED_REF)])
    return {"submission_a": submission_a["id"], "submission_b": submission_b["id"],
            "published_centres": ["CENTRE-A", "CENTRE-B", "CENTRE-C", "CENTRE-D", "CENTRE-E"], "withheld": "TINY"}


@pytest.fixture(scope="module")
def module_database_url(server_url, template_database):
    """A database of the module's own, for the fixtures shared by its tests."""
    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_database)))
    yield _with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def seeded_app(module_database_url):
    """(app, tokens, what was seeded): the populated registry, shared by a module's tests that
    only read it."""
    app = create_app(make_settings(), module_database_url)
    with psycopg.connect(module_database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        tokens = Tokens(conn)
        seeded = populate(conn, tokens, app.test_client())
    yield app, tokens, seeded
    app.extensions["database"].close()
    app.extensions["reports_database"].close()

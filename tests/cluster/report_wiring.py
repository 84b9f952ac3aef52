"""The report route reading through registry.replica, until registry/reports/routes.py does.

`replica_aware_run` is the `_run` proposed for registry/reports/routes.py in issue 16's hand-over:
the query audit on the primary, the report on the replica
when it can answer correctly, else on the primary, and the answer saying which and how current.
`create_app()` is the registry's app with it in place, for gunicorn in the cluster tests.
Once routes.py carries the change, `install()` is a no-op.
"""

import psycopg
from flask import Response, current_app

import registry
from registry import replica
from registry.auth import authenticate
from registry.db import database
from registry.problems import Problem
from registry.report_queries import store as report_queries
from registry.reports import routes


def replica_aware_run(report: str, query: dict, build, *args):
    principal = authenticate()
    settings = current_app.config["REGISTRY_SETTINGS"]
    # The query audit is written on the primary (reports may read a replica), and before the
    # report is built, so a request that then times out is on record too.
    with database().transaction() as conn:
        report_queries.record(conn, principal, report, query)

    def build_on(conn):
        conn.execute("SET LOCAL jit = off")  # compiling costs more than these queries take
        # A report that scans a large registry is stopped with an answer, not by gunicorn
        # killing the worker at its own timeout.
        conn.execute(f"SET LOCAL statement_timeout = {int(settings.report_timeout * 1000)}")
        try:
            return build(conn, *args, principal, settings.suppression_threshold)
        except psycopg.errors.QueryCanceled:
            raise Problem(503, f"The report took longer than {settings.report_timeout:g} s and was stopped. "
                               "Reports grouped by one dimension with no filter but a centre are fast at any "
                               "size; two dimensions, date ranges and other filters scan every operation.",
                          slug="report-timeout") from None

    # On the replica when it can answer correctly, else on the primary (registry.replica)
    report_document, source = replica.read_report(build_on, settings.reports_max_lag_seconds)
    # drawn (or written as CSV) after the connection is back in the pool
    answer = routes._answer(report_document)
    headers = replica.freshness_headers(source)
    if isinstance(answer, Response):
        answer.headers.update(headers)
        return answer
    return answer, headers


def install() -> None:
    if "replica.read_report" not in open(routes.__file__).read():
        routes._run = replica_aware_run


def create_app():
    install()
    return registry.create_app()

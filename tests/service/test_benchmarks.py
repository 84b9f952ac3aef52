"""The benchmarks of bench/ still run: each is driven end to end at a toy size.

Their figures mean nothing here (they are read from the documented `python -m bench.*` runs);
what is checked is that every command the README gives for them works against the code as it
is, and prints its table.
"""

import psycopg

from bench import generate, ingest, load, reports
from tests.conftest import _with_database


def test_ingest_bench_prints_operations_per_second(server_url, capsys):
    ingest.run(server_url, [3])
    printed = capsys.readouterr().out
    # both floors measured in the same run: COPY with and without the report triggers
    assert "COPY, no report triggers" in printed and "API/COPY no triggers" in printed
    [row] = [line for line in printed.splitlines() if line.split()[:1] == ["3"]]
    assert row.count("ops/s") == 5  # COPY, COPY without triggers, API JSON, resend, API CSV
    assert "targets at 3 operations (issue 14)" in printed


def test_load_bench_prints_its_three_services(server_url, capsys):
    assert load.main(["--database-url", server_url, "--duration", "1", "--warmup", "0.5",
                      "--clients", "2", "--client-processes", "1", "--existing", "40"]) == 0
    printed = capsys.readouterr().out
    for service in ("constant", "raw insert", "registry"):
        assert f"\n{service} " in printed
    assert "registry / raw insert floor, requests/s" in printed


def test_report_bench_runs_on_a_generated_registry(server_url, capsys):
    url = _with_database(server_url, "registry_bench_smoke")
    try:
        generate.main(["--operations", "500", "--database-url", url, "--fresh"])
        reports.main(["--database-url", url, "--requests", "2", "--scan-requests", "1", "--warmup", "1",
                      "--plain-runs", "1"])
        first = capsys.readouterr().out
        # the same reports while a stopped maintainer is 50 operations behind
        reports.main(["--database-url", url, "--requests", "2", "--scan-requests", "1", "--warmup", "1",
                      "--plain-runs", "1", "--backlog", "50", "--only", "complications by approach"])
        behind = capsys.readouterr().out
        with psycopg.connect(url) as conn:
            left_queued = conn.execute("SELECT count(*) FROM report_changes").fetchone()[0]
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS registry_bench_smoke WITH (FORCE)")
    assert "complications by approach " in first and "plain GROUP BY" in first
    assert '"failures": []' in first
    assert "50 operations queued for a stopped maintainer" in behind and "folded the backlog" in behind
    assert '"failures": []' in behind and "complications by approach, 2015" in behind
    assert left_queued == 0

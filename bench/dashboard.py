"""Latency of a report as JSON, the same report drawn as an SVG plot, and the dashboard page
showing it (plot, table and form), measured in the same run against a real gunicorn.

    python -m bench.generate --operations 100000 --fresh \\
        --database-url postgresql://postgres@127.0.0.1:5432/registry_bench_100k
    python -m bench.dashboard --database-url postgresql://postgres@127.0.0.1:5432/registry_bench_100k

The JSON answer is the baseline: the plot should cost little more (target: median under
100 ms), the page a little more again (target: median under 300 ms). Requests are sent one
at a time over one keep-alive connection after a warm-up (the worker warms Vega up before it
serves), and each case is printed with its median, 95th percentile and its ratio to the JSON of
the same query. There is no cache of drawn plots: every SVG is drawn anew. Only the compiled form
of a plot's shape is kept (see plots._vega), so the first SVG of each query, printed apart as
"first SVG", also pays for compiling it. Other processes share the machine: the load average is
printed with the figures.
"""

import argparse
import os
import re
import statistics
import sys
import time

import requests

from bench.reports import free_port, issue_tokens, percentile, start_server

QUERIES = [
    # (label, report path with its query)
    ("funnel, instrument breakage", "centres?measure=instrument_breakage"),
    ("complications by approach", "complications?group_by=approach"),
    ("completeness by centre", "completeness"),
]


def get_ms(session: requests.Session, url: str, **kwargs) -> float:
    started = time.perf_counter()
    answer = session.get(url, allow_redirects=False, **kwargs)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"{url}: HTTP {answer.status_code}: {answer.text[:300]}")
    return elapsed


def interleaved(cases: list, requests_count: int, warmup: int) -> tuple[list[list[float]], list[float]]:
    """Each case's timings, the cases taking turns (one request of each per round), so a change
    in the machine's load during the run weighs on all of them alike; and each case's first
    request (part of the warm-up)."""
    timings = [[] for _ in cases]
    first = []
    for round_number in range(warmup + requests_count):
        for times, (session, url, kwargs) in zip(timings, cases):
            elapsed = get_ms(session, url, **kwargs)
            if round_number == 0:
                first.append(elapsed)
            if round_number >= warmup:
                times.append(elapsed)
    return timings, first


def signed_in(base_url: str, token: str) -> requests.Session:
    """A browser-like session signed in to the dashboard through its form."""
    browser = requests.Session()
    form = browser.get(f"{base_url}/dashboard/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = browser.post(f"{base_url}/dashboard/sign-in", data={"token": token, "csrf_token": csrf},
                          allow_redirects=False)
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: HTTP {answer.status_code}")
    return browser


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    token = issue_tokens(args.database_url)["analyst"]
    port = free_port()
    server = start_server(args.database_url, port, workers=1)  # one worker: every request warm
    base_url = f"http://127.0.0.1:{port}"
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        browser = signed_in(base_url, token)
        print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'case':<32} {'JSON ms':>9} {'SVG ms':>9} {'page ms':>9} {'SVG/JSON':>9} {'page/JSON':>10}"
              f" {'p95 JSON/SVG/page':>20} {'first SVG ms':>13}")
        for label, path in QUERIES:
            (json_ms, svg_ms, page_ms), first = interleaved([
                (api, f"{base_url}/v1/reports/{path}", {}),
                (api, f"{base_url}/v1/reports/{path}", {"headers": {"Accept": "image/svg+xml"}}),
                (browser, f"{base_url}/dashboard/reports/{path}", {})], args.requests, args.warmup)
            medians = [statistics.median(t) for t in (json_ms, svg_ms, page_ms)]
            p95 = "/".join(f"{percentile(t, 0.95):.0f}" for t in (json_ms, svg_ms, page_ms))
            print(f"{label:<32} {medians[0]:>9.1f} {medians[1]:>9.1f} {medians[2]:>9.1f} "
                  f"{medians[1] / medians[0]:>9.2f} {medians[2] / medians[0]:>10.2f} {p95:>20} {first[1]:>13.0f}",
                  flush=True)
        print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("targets: SVG plot median < 100 ms and not much above the JSON; dashboard page median < 300 ms")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())

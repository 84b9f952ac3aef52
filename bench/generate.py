"""Generate a realistic registry for the report benchmark (see registry.reports.synthetic).

    python -m bench.generate --operations 1000000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/registry_bench_1000000 --fresh
"""

import argparse
import sys

import psycopg

from registry import migrate
from registry.reports.synthetic import generate, recreate_database


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    args = parser.parse_args(argv)
    if args.fresh:
        recreate_database(args.database_url)
    migrate.upgrade(args.database_url)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        summary = generate(conn, args.operations, args.seed, log=lambda line: print(line, flush=True))
    print(summary)


if __name__ == "__main__":
    sys.exit(main())

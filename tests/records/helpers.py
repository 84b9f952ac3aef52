"""Documents for the record tests: the published seed case and small variations of it."""

import copy
import json
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent.parent / "registry" / "demo"


def seed_case() -> dict:
    return json.loads((DEMO / "seed-case.json").read_text())


def seed_follow_up() -> dict:
    return json.loads((DEMO / "seed-case-follow-up.json").read_text())


def operation(**changes) -> dict:
    """The seed case with top-level fields replaced (None deletes a field)."""
    document = copy.deepcopy(seed_case())
    for name, value in changes.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def counts(db) -> dict:
    return {table: count(db, table) for table in ("patients", "operations", "implants", "intraop_events",
                                                  "postop_complications", "follow_ups")}

"""Report fixtures: a generated registry over three centres, and a way to compare figures."""

import pytest

from tests.conftest import make_settings
from tests.reports import dataset


@pytest.fixture
def settings():
    # threshold 1: nothing is small, so analysts' figures can be compared number for number
    return make_settings(suppression_threshold=1)


@pytest.fixture
def registry(db, tokens):
    """A seeded random registry in centres A, B and C."""
    from registry.centres.store import add_centre

    centre_c = add_centre(db, "CENTRE-C", "Centre C")
    ids = [tokens.centre_a["id"], tokens.centre_b["id"], centre_c["id"]]
    dataset.generate(db, ids, seed=11, operations=160)
    return ids


def assert_same(actual, expected, path="report"):
    """Every number equal (floats to 1e-9 relative), every key of `expected` present."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_same(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, float):
        assert actual is not None and abs(actual - expected) <= 1e-9 * max(1.0, abs(expected)), \
            f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"

"""Fixtures of the record tests."""

import pytest

from registry import create_app
from tests.conftest import make_settings


@pytest.fixture
def one_connection_app(database_url):
    """The app with a pool of one connection: every statement of a request on the same session."""
    app = create_app(make_settings(pool_min_size=1, pool_max_size=1), database_url)
    app.config["TESTING"] = True
    yield app
    app.extensions["database"].close()

from pathlib import Path

import yaml

from registry.openapi import openapi_document, openapi_yaml

ROOT = Path(__file__).resolve().parent.parent.parent


def test_committed_openapi_matches_the_code():
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == openapi_yaml(), "openapi.yaml is stale: run `make openapi` and commit it"


def test_every_error_response_is_problem_json():
    document = openapi_document()
    for name, response in document["components"]["responses"].items():
        for content_type in response.get("content", {}):
            assert content_type == "application/problem+json", name


def test_every_operation_has_a_summary():
    document = yaml.safe_load(openapi_yaml())
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"

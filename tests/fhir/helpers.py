"""Shared checks of the FHIR tests: every resource the registry emits is validated with a third-party
library, fhir.resources' R4B models (R4B matches R4 for every resource the registry uses)."""

import importlib

from registry.demo.cases import literature_cases, seed_case

FHIR_JSON = "application/fhir+json"


def r4_model(resource_type: str):
    return getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)


def validate(resource: dict) -> dict:
    """Raise unless `resource` is valid R4; each Bundle entry's resource is validated with its own model."""
    r4_model(resource["resourceType"]).model_validate(resource)
    for entry in resource.get("entry", []):
        if "resource" in entry:
            validate(entry["resource"])
        if "response" in entry and "outcome" in entry["response"]:
            validate(entry["response"]["outcome"])
    return resource


def demo_cases() -> list[tuple[str, dict, list[dict]]]:
    """(name, operation document, follow-ups) of the seed case and every demo case."""
    operation, follow_ups = seed_case()
    return [("seed", operation, follow_ups)] + [(operation["local_ref"], operation, follow_ups)
                                                for operation, follow_ups in literature_cases()]


def element_paths(node, path=()) -> list[tuple]:
    """The path of every element of a JSON document (object members and list items), depth first."""
    paths = [path] if path else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        paths += element_paths(child, path + (key,))
    return paths


def every_score_case() -> tuple[dict, list[dict]]:
    """The seed case scored on every instrument but the JOA 17-point: JOA 29-point, mJOA, NDI, ODI,
    EQ-5D-5L index with its value set, and pain NRS at the neck and the arm; before and at follow-up."""
    operation, [follow_up] = seed_case()
    operation = dict(operation, local_ref="SCORES-1", baseline_scores=[
        {"instrument": "joa", "version": "29-point", "value": -2},
        {"instrument": "mjoa", "value": 11},
        {"instrument": "ndi", "version": "percent", "value": 46.5},
        {"instrument": "odi", "version": "2.1a", "value": 38},
        {"instrument": "eq5d5l_index", "value": -0.123, "value_set": "england"},
        {"instrument": "pain_nrs", "value": 7, "site": "neck"},
        {"instrument": "pain_nrs", "value": 5, "site": "arm"},
    ])
    follow_up = dict(follow_up, local_ref="SCORES-1-FU12", scores=[
        {"instrument": "joa", "version": "29-point", "value": 21, "maximum": 29},
        {"instrument": "ndi", "version": "50-point", "value": 9},
        {"instrument": "odi", "value": 12.5},
        {"instrument": "eq5d5l_index", "value": 0.85, "value_set": "japan"},
        {"instrument": "pain_nrs", "value": 2, "site": "neck"},
        {"instrument": "pain_nrs", "value": 0, "site": "arm"},
    ])
    return operation, [follow_up]

"""Hostile input through the FHIR door: never a 500, always FHIR JSON (a Bundle or an OperationOutcome)."""

import pytest


@pytest.mark.parametrize("path, statuses", [
    ("/fhir/CodeSystem?url=%00", {200}),
    ("/fhir/ValueSet?url=%ED%A0%80", {200}),                   # a lone surrogate, UTF-8 encoded
    ("/fhir/CodeSystem?url=" + "x" * 100_000, {200, 414}),
    ("/fhir/CodeSystem/%00", {404}),
    ("/fhir/ValueSet/" + "a" * 5_000, {404}),
    ("/fhir/CodeSystem?_format=%00", {406}),
    ("/fhir/CodeSystem?_count=-1", {400}),
    ("/fhir/CodeSystem/../../v1/centres/", {404}),
])
def test_hostile_fhir_requests_are_answered_in_fhir(client, path, statuses):
    response = client.get(path)
    assert response.status_code in statuses
    assert response.mimetype == "application/fhir+json"
    body = response.json
    assert body["resourceType"] == ("Bundle" if response.status_code == 200 else "OperationOutcome")
    if response.status_code == 200:
        assert body["total"] == 0 and "entry" not in body

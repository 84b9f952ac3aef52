"""The FHIR R4 (4.0.1) door onto the registry, under /fhir (see docs/fhir.md).

A plain Flask blueprint, not flask-smorest: FHIR is described by its own CapabilityStatement
(`GET /fhir/metadata`), not by the registry's OpenAPI document, and its errors are
OperationOutcome resources, not problem+json.
"""

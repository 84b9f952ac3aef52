"""Content negotiation of FHIR JSON on the /v1 door: whether a request asks for the FHIR form.

werkzeug's Accept lookup compares media type parameters, so it gave
`application/fhir+json; fhirVersion=4.0` (the form FHIR defines for asking for R4,
http://hl7.org/fhir/R4/versioning.html#mt-version) no quality at all: FHIR's media types are
matched here by type, with a fhirVersion of R4 or none.
"""

from flask import request
from werkzeug.http import parse_options_header

FHIR_JSON = "application/fhir+json"
# R4's media type, and the pre-R4 name some engines still send
FHIR_MEDIA_TYPES = (FHIR_JSON, "application/json+fhir")
R4_VERSIONS = (None, "4.0", "4.0.1")


def fhir_quality(accept) -> float:
    """The quality Accept gives FHIR JSON named explicitly; a wildcard is plain JSON's, and
    another FHIR version is not this server's."""
    best = 0
    for value, quality in accept:
        media_type, parameters = parse_options_header(value)
        if media_type in FHIR_MEDIA_TYPES and parameters.get("fhirversion") in R4_VERSIONS:
            best = max(best, quality)
    return best


def prefers_fhir() -> bool:
    """Whether the request's Accept prefers FHIR JSON to plain JSON (a tie is plain JSON's)."""
    accept = request.accept_mimetypes
    return fhir_quality(accept) > accept["application/json"]

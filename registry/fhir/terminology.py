"""The registry's own vocabularies (registry.vocabulary) as FHIR CodeSystem and ValueSet resources.

Each vocabulary is one CodeSystem holding every code with its label, as /v1/vocabularies lists
them, and one ValueSet holding all of that CodeSystem. Their canonical URLs are identifiers, the
same on every deployment (a canonical URL must not change with the host that serves it); the
resources are read on any deployment at /fhir/CodeSystem/{id} and /fhir/ValueSet/{id}.
"""

from registry import vocabulary

CANONICAL_BASE = "https://registry.example.org/fhir"

# Codes FHIR needs where the registry has no vocabulary and no standard code was found: the codes
# of the operation's Observations and of implant properties (registry.fhir.mapping). Published as
# one more CodeSystem, next to the vocabularies'.
REGISTRY_ELEMENT = "registry_element"
REGISTRY_ELEMENTS = {
    "blood-loss": "Estimated blood loss during the operation",
    "duration": "Duration of the operation, skin to skin",
    "transfusion": "Blood transfusion during or after the operation",
    "joa": "JOA score (Japanese Orthopaedic Association, 0-17)",
    "mjoa": "Modified JOA score (0-18)",
    "follow-up": "Follow-up assessment of an operation",
    "months-after": "Whole months after the operation",
    "fusion-status": "Fusion status",
    "bridwell-grade": "Bridwell fusion grade (I-IV)",
    "implant-status": "Implant status",
    "revision-surgery": "Revision surgery since the operation",
    "revision-reason": "Reason for revision surgery",
    "diameter": "Implant diameter",
    "length": "Implant length",
}
# Every CodeSystem served: the vocabularies of /v1/vocabularies, then the FHIR-only one
_CODES = {**vocabulary.ALL, REGISTRY_ELEMENT: REGISTRY_ELEMENTS}

# Titles where the wire name does not read as one ("classintra_grade" -> "ClassIntra grade")
_TITLES = {
    "genes": "Genes",
    "date_precision": "Date precision",
    "classintra_grade": "ClassIntra grade",
    "clavien_dindo_grade": "Clavien-Dindo grade",
    "saves_grade": "SAVES-V2 grade",
    "bridwell_grade": "Bridwell fusion grade",
    "immobilization": "Postoperative immobilisation",
    "intraop_event": "Intraoperative event",
    "postop_complication": "Postoperative complication",
    "role": "Token role",
    REGISTRY_ELEMENT: "Registry FHIR elements",
}


def resource_id(name: str) -> str:
    """A FHIR id for a vocabulary: ids take letters, digits, '-' and '.', not '_'."""
    return name.replace("_", "-")


def _computable_name(name: str) -> str:
    # CodeSystem.name must be machine-processable (inv csd-0/vsd-0: starts with a capital letter)
    return "".join(part.capitalize() for part in name.split("_"))


def _title(name: str) -> str:
    return _TITLES.get(name, name.replace("_", " ").capitalize())


def code_system_url(name: str) -> str:
    return f"{CANONICAL_BASE}/CodeSystem/{resource_id(name)}"


def value_set_url(name: str) -> str:
    return f"{CANONICAL_BASE}/ValueSet/{resource_id(name)}"


def _description(name: str) -> str:
    if name == REGISTRY_ELEMENT:
        return ("Codes of the registry's FHIR resources that no vocabulary of /v1 holds and no standard code was "
                "found for: Observation codes of an operation and its follow-ups, implant properties.")
    return f"The registry's `{name}` vocabulary: every code it accepts with its label (as /v1/vocabularies lists it)."


def code_system(name: str) -> dict:
    terms = _CODES[name]
    return {
        "resourceType": "CodeSystem",
        "id": resource_id(name),
        "url": code_system_url(name),
        "name": _computable_name(name),
        "title": _title(name),
        "status": "active",
        "experimental": False,
        "description": _description(name),
        "caseSensitive": True,
        "valueSet": value_set_url(name),
        "content": "complete",
        "count": len(terms),
        "concept": [{"code": code, "display": label} for code, label in terms.items()],
    }


def value_set(name: str) -> dict:
    return {
        "resourceType": "ValueSet",
        "id": resource_id(name),
        "url": value_set_url(name),
        "name": _computable_name(name),
        "title": _title(name),
        "status": "active",
        "experimental": False,
        "description": f"Every code of the registry's `{name}` vocabulary." if name in vocabulary.ALL
                       else "Every code of the registry's FHIR elements.",
        "compose": {"include": [{"system": code_system_url(name)}]},
    }


# Resource id -> vocabulary name, for the reads
_NAMES = {resource_id(name): name for name in _CODES}


def all_code_systems() -> list[dict]:
    return [code_system(name) for name in _CODES]


def all_value_sets() -> list[dict]:
    return [value_set(name) for name in _CODES]


def find_name(resource_id_: str) -> str | None:
    return _NAMES.get(resource_id_)

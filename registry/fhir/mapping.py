"""The two-way mapping between the registry's operation document and FHIR R4 resources.

The operation document is what /v1 takes and returns (registry.operations.schemas): one operation
with its patient, implants, intraoperative events and postoperative complications, plus its
follow-ups (registry.follow_ups.schemas). docs/fhir.md has the table and the seed case worked out.

Document -> FHIR (for writing a Bundle a hospital can POST, for reads, search and $export):

- `operation_to_bundle(document, follow_ups)`: a `transaction` Bundle whose entries are
  conditional on business identifiers (`PUT Procedure?identifier=<OPERATION_IDENTIFIER>|<local_ref>`,
  the Patient as a conditional create `ifNoneExist`), so that POSTing it to /fhir creates the
  operation, and POSTing it again updates it, never duplicates. References between entries are
  `urn:uuid:` fullUrls derived from the local_ref, so the same document always gives the same
  Bundle (byte for byte, docs/fhir-seed-bundle.json is checked against it).
- `operation_to_resources(document, follow_ups)`: the same resources with their server ids
  (`resource_id`) and relative references (`Patient/7`, `Procedure/12`), for GET and search on a
  stored document (one that has `id`, `patient_id`, and follow-ups with `id`).

The patient's ref: a document that carries `patient.ref` (a submission) gives the Patient an
identifier `PATIENT_REF_IDENTIFIER|ref`, used only as the conditional create's key; the
registry hashes it (HMAC) on arrival as /v1 does, and never answers it. A stored document has
no ref (the registry cannot give it back): its Patient entry is `ifNoneExist: _id=<patient_id>`,
which POSTed to this registry attaches the operation to the stored patient (as /v1's
`patient_id`).

FHIR -> document (for POST /fhir): `bundle_to_documents(bundle)` returns (units, errors): each
`Unit` is one operation document in /v1's wire form (or a stored operation named by reference)
with its follow-ups, the Bundle entries it came from, and `sources`, which maps each document
field path (`blood_loss_ml`, `intraop_events.0.instrument`, `patient.birth_year`) to the FHIRPath
of the element it was read from (`Bundle.entry[2].resource.valueQuantity.value`), so the field
errors of /v1's validation can be answered against the Bundle. `errors` are the structural
faults found while reading (not FHIR, a resource type the registry does not take, a reference
to nothing), each with its FHIRPath. Validation itself is /v1's: this module checks no value.
"""

import datetime as dt
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from registry import vocabulary
from registry.fhir.terminology import CANONICAL_BASE, REGISTRY_ELEMENT, REGISTRY_ELEMENTS, code_system_url

# --- identifiers, extensions and code systems ----------------------------------------------

_SID = f"{CANONICAL_BASE}/sid"
# A centre's own operation id (`local_ref`): scoped to the centre of the token that sends it
OPERATION_IDENTIFIER = f"{_SID}/operation-local-ref"
# A centre's own follow-up id (follow-up `local_ref`)
FOLLOW_UP_IDENTIFIER = f"{_SID}/follow-up-local-ref"
# A centre's own patient ref: accepted as a conditional create's key, hashed, never answered
PATIENT_REF_IDENTIFIER = f"{_SID}/patient-ref"
# The parts of an operation (its Observations, Devices, AdverseEvents, Condition): `<local_ref>#<part>`
PART_IDENTIFIER = f"{_SID}/operation-part"

EXTENSION_BASE = f"{CANONICAL_BASE}/StructureDefinition"
EXTENSIONS = {
    "consent": "consent",                          # Patient: valueCoding (consent)
    "inheritance": "inheritance",                  # Condition: valueCoding (inheritance)
    "gene": "gene",                                # Condition, repeated: valueCoding (genes)
    "family_history": "family-history",            # Condition: valueBoolean
    "approach": "approach",                        # Procedure: valueCoding (approach)
    "date_precision": "date-precision",            # Procedure.performedDateTime: valueCode, when not the date's own
    "immobilization_weeks": "immobilization-duration",  # Procedure.followUp: valueDuration (wk)
    "level": "spinal-level",                       # AdverseEvent, Device: valueCoding (spinal_level)
    "side": "laterality",                          # AdverseEvent, Device: valueCoding (side)
    "site": "anatomic-site",                       # AdverseEvent: valueCoding (anatomic_site)
    "retained_fragment": "retained-fragment",      # AdverseEvent (breakage): valueBoolean
    "management": "management",                    # AdverseEvent: valueString
    "description": "description",                  # AdverseEvent: valueString
    "days_after": "days-after-operation",          # AdverseEvent (postoperative): valueDuration (d)
    "count": "implant-count",                      # Device (implant): valueInteger
}


def extension_url(name: str) -> str:
    return f"{EXTENSION_BASE}/{EXTENSIONS[name]}"


UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ORPHANET = "http://www.orpha.net"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"

# The registry's codes for what FHIR needs a code for and no standard code was found for
# (Observation codes, Device properties): published as CodeSystem/registry-element.
ELEMENT_SYSTEM = code_system_url(REGISTRY_ELEMENT)
ELEMENTS = REGISTRY_ELEMENTS

# Standard codes next to the registry's, each checked against a source (docs/fhir.md lists them).
# Only where the concept is the same; a group code (Q78.2 osteopetrosis) is given for each of its types.
STANDARD_CODINGS = {
    ("diagnosis", "ado_ii"): [
        {"system": ORPHANET, "code": "53", "display": "Autosomal dominant osteopetrosis type 2"},
        {"system": SNOMED, "code": "725050005", "display": "Autosomal dominant osteopetrosis type 2"},
        {"system": ICD10, "code": "Q78.2", "display": "Osteopetrosis"},
    ],
    ("diagnosis", "aro"): [{"system": ICD10, "code": "Q78.2", "display": "Osteopetrosis"}],
    ("diagnosis", "iro"): [{"system": ICD10, "code": "Q78.2", "display": "Osteopetrosis"}],
    ("diagnosis", "camurati_engelmann"): [
        {"system": ICD10, "code": "Q78.3", "display": "Progressive diaphyseal dysplasia"}],
}

_VOCABULARY_OF_ELEMENT = {"fusion-status": "fusion_status", "implant-status": "implant_status"}

SUPPORTED_TYPES = ("Patient", "Condition", "Procedure", "Device", "AdverseEvent", "Observation")


def coding(vocabulary_name: str, code: str) -> dict:
    """A Coding of the registry's CodeSystem for one of its vocabularies, with the /v1 label."""
    return {"system": code_system_url(vocabulary_name), "code": code,
            "display": vocabulary.ALL[vocabulary_name][code]}


def concept(vocabulary_name: str, code: str, text: str | None = None) -> dict:
    """A CodeableConcept: the registry's coding first, then the standard codings of the same concept."""
    value = {"coding": [coding(vocabulary_name, code), *STANDARD_CODINGS.get((vocabulary_name, code), [])]}
    if text is not None:
        value["text"] = text
    return value


def element(code: str) -> dict:
    return {"coding": [{"system": ELEMENT_SYSTEM, "code": code, "display": ELEMENTS[code]}]}


def quantity(value, unit: str) -> dict:
    """A UCUM quantity (`mL`, `min`, `d`, `wk`, `mm`, `mo`, `{score}`)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _extension(name: str, value_type: str, value) -> dict:
    return {"url": extension_url(name), value_type: value}


def fhir_date(date, precision: str = "day") -> str:
    """An ISO date cut to the precision the registry knows (`2016` for a year-precise date)."""
    text = date.isoformat() if isinstance(date, dt.date) else str(date)
    return {"year": text[:4], "month": text[:7]}.get(precision, text)


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """`Type?identifier=system|value`, the value escaped as FHIR search (`\\|`, `\\,`, `\\$`) and as a URL."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
    return f"{resource_type}?identifier={quote(system, safe=':/')}|{quote(escaped, safe='')}"


def parse_identifier_query(query: str) -> tuple[str, str] | None:
    """(system, value) of an `identifier=system|value` search; None when it is not one."""
    name, _, text = query.partition("=")
    if name != "identifier" or "&" in text:
        return None
    text = unquote(text)
    system, bar, value = text.partition("|")
    if not bar:
        return None
    unescaped, index = [], 0
    while index < len(value):
        if value[index] == "\\" and index + 1 < len(value):
            index += 1
        elif value[index] in "|,$":
            return None  # an unescaped separator: several values, which a conditional key is not
        unescaped.append(value[index])
        index += 1
    return system, "".join(unescaped)


# --- resource ids (reads) and fullUrls (transactions) ---------------------------------------

def resource_id(operation_id: int, part: str) -> str:
    """The server id of an operation's part: `12-blood-loss`, `12-implant-1`, `12-intraop-event-1`.

    A Procedure's id is the operation id, a Patient's the patient id, a follow-up Observation's
    `follow-up-<id>`; every other resource of an operation is one of its parts."""
    return f"{operation_id}-{part}"


def follow_up_resource_id(follow_up_id: int) -> str:
    return f"follow-up-{follow_up_id}"


def parse_resource_id(resource_type: str, text: str) -> tuple[str, int, str | None] | None:
    """What a server id names: ("operation", id, part or None), ("patient", id, None) or
    ("follow_up", id, None); None when the id names nothing this mapping makes."""
    if resource_type == "Patient":
        return ("patient", int(text), None) if text.isdigit() else None
    if resource_type == "Procedure":
        return ("operation", int(text), None) if text.isdigit() else None
    if resource_type == "Observation" and text.startswith("follow-up-") and text[10:].isdigit():
        return "follow_up", int(text[10:]), None
    number, dash, part = text.partition("-")
    if not (number.isdigit() and dash and part):
        return None
    return "operation", int(number), part


class _Names:
    """How the resources of one operation refer to each other: `urn:uuid:` for a transaction
    (derived from the local_ref, so a document always gives the same Bundle), server ids for reads."""

    def __init__(self, document: dict, server_ids: bool):
        self.document = document
        self.server_ids = server_ids

    def _uuid(self, key: str) -> str:
        return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{OPERATION_IDENTIFIER}|{self.document['local_ref']}"
                                                                f"#{key}"))

    def part(self, resource_type: str, part: str) -> tuple[str | None, str]:
        """(server id or None, reference) of one of the operation's parts."""
        if self.server_ids:
            server_id = resource_id(self.document["id"], part)
            return server_id, f"{resource_type}/{server_id}"
        return None, self._uuid(part)

    def procedure(self) -> tuple[str | None, str]:
        if self.server_ids:
            return str(self.document["id"]), f"Procedure/{self.document['id']}"
        return None, self._uuid("procedure")

    def patient(self) -> tuple[str | None, str]:
        if self.server_ids:
            return str(self.document["patient_id"]), f"Patient/{self.document['patient_id']}"
        return None, self._uuid("patient")

    def follow_up(self, index: int, follow_up: dict) -> tuple[str | None, str]:
        if self.server_ids:
            server_id = follow_up_resource_id(follow_up["id"])
            return server_id, f"Observation/{server_id}"
        key = follow_up.get("local_ref") or str(index)
        return None, "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{FOLLOW_UP_IDENTIFIER}|"
                                                                       f"{self.document['local_ref']}|{key}"))


@dataclass
class _Entry:
    """One resource of an operation, with what a transaction needs to write it."""

    resource: dict
    reference: str                   # fullUrl in a transaction, `Type/id` for reads
    request: dict                    # the transaction entry's request
    server_id: str | None = None


def _part_identifier(document: dict, part: str) -> list[dict]:
    return [{"system": PART_IDENTIFIER, "value": f"{document['local_ref']}#{part}"}]


def _part_request(document: dict, resource_type: str, part: str) -> dict:
    return {"method": "PUT", "url": conditional_url(resource_type, PART_IDENTIFIER, f"{document['local_ref']}#{part}")}


def _operation_entries(document: dict, follow_ups, names: _Names, patient_ref: str | None) -> list[_Entry]:
    entries: list[_Entry] = []
    patient = document.get("patient") or {}
    patient_id, patient_reference = names.patient()
    procedure_id, procedure_reference = names.procedure()
    subject = {"reference": patient_reference}
    procedure_subject = {"reference": procedure_reference}
    performed = fhir_date(document["operation_date"], document.get("date_precision") or "day")

    def add(resource_type: str, part: str, resource: dict, *, first: bool = False) -> str:
        server_id, reference = names.part(resource_type, part)
        identifier = _part_identifier(document, part)
        resource = {"resourceType": resource_type, **({"id": server_id} if server_id else {}),
                    # AdverseEvent has one identifier (0..1), the others a list
                    "identifier": identifier[0] if resource_type == "AdverseEvent" else identifier, **resource}
        entry = _Entry(resource, reference, _part_request(document, resource_type, part), server_id)
        entries.insert(0, entry) if first else entries.append(entry)
        return reference

    # Patient: pseudonymous, birth year only
    patient_resource = {"resourceType": "Patient"}
    if patient_id:
        patient_resource["id"] = patient_id
    ref = patient_ref if patient_ref is not None else patient.get("ref")
    if ref is not None:
        patient_resource["identifier"] = [{"system": PATIENT_REF_IDENTIFIER, "value": ref}]
        patient_request = {"method": "POST", "url": "Patient",
                           "ifNoneExist": conditional_url("Patient", PATIENT_REF_IDENTIFIER, ref).split("?", 1)[1]}
    else:
        patient_request = {"method": "POST", "url": "Patient", "ifNoneExist": f"_id={document['patient_id']}"}
    if patient.get("consent"):
        patient_resource["extension"] = [_extension("consent", "valueCoding", coding("consent", patient["consent"]))]
    if patient.get("sex"):
        patient_resource["gender"] = patient["sex"]  # the registry's codes are administrative-gender's
    if patient.get("birth_year") is not None:
        patient_resource["birthDate"] = str(patient["birth_year"])
    entries.append(_Entry(patient_resource, patient_reference, patient_request, patient_id))

    # Condition: the diagnosis, with the inheritance, genes and family history that qualify it
    if patient.get("diagnosis"):
        extensions = []
        if patient.get("inheritance"):
            extensions.append(_extension("inheritance", "valueCoding", coding("inheritance", patient["inheritance"])))
        extensions += [_extension("gene", "valueCoding", coding("genes", gene)) for gene in patient.get("genes") or []]
        if patient.get("family_history") is not None:
            extensions.append(_extension("family_history", "valueBoolean", patient["family_history"]))
        condition = {"clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                     "code": concept("diagnosis", patient["diagnosis"]), "subject": subject}
        if extensions:
            condition = {"extension": extensions, **condition}
        if patient.get("diagnosis_note"):
            condition["note"] = [{"text": patient["diagnosis_note"]}]
        condition_reference = add("Condition", "diagnosis", condition)
    else:
        condition_reference = None

    # Devices: the instrumentation system (names, manufacturer) and each implant under it
    devices = []
    instrumentation = document.get("instrumentation") or {}
    system_reference = None
    if instrumentation.get("system") or instrumentation.get("manufacturer"):
        system = {}
        if instrumentation.get("manufacturer"):
            system["manufacturer"] = instrumentation["manufacturer"]
        if instrumentation.get("system"):
            system["deviceName"] = [{"name": instrumentation["system"], "type": "model-name"}]
        system_reference = add("Device", "instrumentation", system)
        devices.append(system_reference)
    for number, implant in enumerate(instrumentation.get("implants") or [], start=1):
        extensions = [_extension("count", "valueInteger", implant.get("count") or 1)]
        for name, vocabulary_name in (("level", "spinal_level"), ("side", "side")):
            if implant.get(name):
                extensions.append(_extension(name, "valueCoding", coding(vocabulary_name, implant[name])))
        device = {"extension": extensions, "type": concept("implant_kind", implant["kind"]), "patient": subject}
        properties = [{"type": element(name), "valueQuantity": [quantity(implant[key], "mm")]}
                      for name, key in (("diameter", "diameter_mm"), ("length", "length_mm"))
                      if implant.get(key) is not None]
        if properties:
            device["property"] = properties
        if system_reference:
            device["parent"] = {"reference": system_reference}
        if implant.get("note"):
            device["note"] = [{"text": implant["note"]}]
        devices.append(add("Device", f"implant-{number}", device))

    # Procedure: the operation
    procedure: dict = {"resourceType": "Procedure"}
    if procedure_id:
        procedure["id"] = procedure_id
    if document.get("approach"):
        procedure["extension"] = [_extension("approach", "valueCoding", coding("approach", document["approach"]))]
    procedure["identifier"] = [{"system": OPERATION_IDENTIFIER, "value": document["local_ref"]}]
    procedure["status"] = "completed"
    # One coding per procedure of a combined operation (laminectomy + fusion), in the order sent
    procedure["code"] = {"coding": [coding("procedure", code) for code in document["procedures"]],
                         "text": " + ".join(vocabulary.PROCEDURE[code] for code in document["procedures"])}
    procedure["subject"] = subject
    procedure["performedDateTime"] = performed
    if _as_date(_first_day(performed)) != _as_date(document["operation_date"]):
        # a date that is not the first day of its known month or year: kept whole, with its precision
        procedure["performedDateTime"] = fhir_date(document["operation_date"])
        procedure["_performedDateTime"] = {"extension": [_extension("date_precision", "valueCode",
                                                                    document["date_precision"])]}
    if document.get("indication") or document.get("indication_note"):
        reason = concept("indication", document["indication"]) if document.get("indication") else {}
        if document.get("indication_note"):
            reason["text"] = document["indication_note"]
        procedure["reasonCode"] = [reason]
    if condition_reference:
        procedure["reasonReference"] = [{"reference": condition_reference}]
    body_sites = [concept("region", document["region"])]
    levels = document.get("levels")
    if levels:
        first = vocabulary.level_position(levels.get("from", levels.get("from_")))
        last = vocabulary.level_position(levels["to"])
        body_sites += [concept("spinal_level", level) for level in vocabulary.SPINAL_LEVELS[first:last + 1]]
    procedure["bodySite"] = body_sites
    complications = [concept("intraop_event", event["type"]) for event in document.get("intraop_events") or []]
    complications += [concept("postop_complication", item["type"])
                      for item in document.get("postop_complications") or []]
    if complications:
        procedure["complication"] = complications  # a summary: the AdverseEvents are the record
    immobilization = document.get("immobilization")
    if immobilization:
        follow_up = concept("immobilization", immobilization["type"])
        if immobilization.get("weeks") is not None:
            follow_up = {"extension": [_extension("immobilization_weeks", "valueDuration",
                                                  quantity(immobilization["weeks"], "wk"))], **follow_up}
        procedure["followUp"] = [follow_up]
    if document.get("notes"):
        procedure["note"] = [{"text": document["notes"]}]
    if devices:
        procedure["usedReference"] = [{"reference": reference} for reference in devices]
    if document.get("bone_graft"):
        procedure["usedCode"] = [concept("bone_graft", code) for code in document["bone_graft"]]
    entries.insert(1, _Entry(procedure, procedure_reference,
                             {"method": "PUT", "url": conditional_url("Procedure", OPERATION_IDENTIFIER,
                                                                      document["local_ref"])}, procedure_id))

    # Observations of the operation
    def observation(part: str, code: str, value_type: str, value) -> None:
        add("Observation", part, {"status": "final", "code": element(code), "subject": subject,
                                  "effectiveDateTime": procedure["performedDateTime"],
                                  "partOf": [procedure_subject], value_type: value})

    if document.get("blood_loss_ml") is not None:
        observation("blood-loss", "blood-loss", "valueQuantity", quantity(document["blood_loss_ml"], "mL"))
    if document.get("duration_min") is not None:
        observation("duration", "duration", "valueQuantity", quantity(document["duration_min"], "min"))
    if document.get("transfusion") is not None:
        observation("transfusion", "transfusion", "valueBoolean", document["transfusion"])
    scores = document.get("preop_scores") or {}
    if scores.get("joa") is not None:
        observation("preop-joa", "joa", "valueQuantity", quantity(scores["joa"], "{score}"))
    if scores.get("mjoa") is not None:
        observation("preop-mjoa", "mjoa", "valueInteger", scores["mjoa"])

    # AdverseEvents: intraoperative events (ClassIntra grade) and postoperative complications (Clavien-Dindo)
    for number, event in enumerate(document.get("intraop_events") or [], start=1):
        suspects = [{"instance": procedure_subject}]
        if event.get("instrument") or event.get("instrument_detail"):
            instrument = {}
            if event.get("instrument"):
                instrument["type"] = concept("instrument", event["instrument"])
            if event.get("instrument_detail"):
                instrument["note"] = [{"text": event["instrument_detail"]}]
            suspects.append({"instance": {"reference": add("Device", f"intraop-event-{number}-instrument",
                                                           instrument)}})
        extensions = []
        for name, vocabulary_name in (("level", "spinal_level"), ("side", "side"), ("site", "anatomic_site")):
            if event.get(name):
                extensions.append(_extension(name, "valueCoding", coding(vocabulary_name, event[name])))
        if event.get("retained_fragment") is not None:
            extensions.append(_extension("retained_fragment", "valueBoolean", event["retained_fragment"]))
        for name in ("management", "description"):
            if event.get(name):
                extensions.append(_extension(name, "valueString", event[name]))
        adverse_event = {"actuality": "actual", "event": concept("intraop_event", event["type"]),
                         "subject": subject, "date": procedure["performedDateTime"]}
        if extensions:
            adverse_event = {"extension": extensions, **adverse_event}
        if event.get("grade"):
            adverse_event["seriousness"] = concept("classintra_grade", event["grade"])
        adverse_event["suspectEntity"] = suspects
        add("AdverseEvent", f"intraop-event-{number}", adverse_event)
    for number, complication in enumerate(document.get("postop_complications") or [], start=1):
        extensions = []
        if complication.get("days_after") is not None:
            extensions.append(_extension("days_after", "valueDuration", quantity(complication["days_after"], "d")))
        for name in ("management", "description"):
            if complication.get(name):
                extensions.append(_extension(name, "valueString", complication[name]))
        adverse_event = {"actuality": "actual", "event": concept("postop_complication", complication["type"]),
                         "subject": subject, "seriousness": concept("clavien_dindo_grade", complication["grade"]),
                         "suspectEntity": [{"instance": procedure_subject}]}
        if extensions:
            adverse_event = {"extension": extensions, **adverse_event}
        add("AdverseEvent", f"postop-complication-{number}", adverse_event)

    for index, follow_up in enumerate(follow_ups):
        entries.append(_follow_up_entry(follow_up, index, names, subject, procedure_subject))
    return entries


def _first_day(text: str) -> str:
    """The first day of a FHIR date's period (`2016` -> `2016-01-01`)."""
    return {4: text + "-01-01", 7: text + "-01"}.get(len(text), text[:10])


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _follow_up_entry(follow_up: dict, index: int, names: _Names, subject: dict, procedure: dict) -> _Entry:
    server_id, reference = names.follow_up(index, follow_up)
    resource: dict = {"resourceType": "Observation"}
    if server_id:
        resource["id"] = server_id
    if follow_up.get("local_ref"):
        resource["identifier"] = [{"system": FOLLOW_UP_IDENTIFIER, "value": follow_up["local_ref"]}]
        request = {"method": "PUT", "url": conditional_url("Observation", FOLLOW_UP_IDENTIFIER,
                                                           follow_up["local_ref"])}
    else:
        request = {"method": "POST", "url": "Observation"}  # as /v1: no local_ref, a new follow-up each time
    resource.update(status="final", code=element("follow-up"), subject=subject, partOf=[procedure])
    if follow_up.get("date"):
        resource["effectiveDateTime"] = fhir_date(follow_up["date"])
    if follow_up.get("assessment"):
        resource["method"] = concept("assessment", follow_up["assessment"])
    components = []
    if follow_up.get("months_after") is not None:
        components.append({"code": element("months-after"), "valueQuantity": quantity(follow_up["months_after"], "mo")})
    for name, code in (("fusion_status", "fusion-status"), ("implant_status", "implant-status")):
        if follow_up.get(name):
            components.append({"code": element(code), "valueCodeableConcept": concept(name, follow_up[name])})
    if follow_up.get("joa") is not None:
        components.append({"code": element("joa"), "valueQuantity": quantity(follow_up["joa"], "{score}")})
    if follow_up.get("mjoa") is not None:
        components.append({"code": element("mjoa"), "valueInteger": follow_up["mjoa"]})
    components.append({"code": element("revision-surgery"),
                       "valueBoolean": bool(follow_up.get("revision_surgery"))})
    if follow_up.get("revision_reason"):
        components.append({"code": element("revision-reason"), "valueString": follow_up["revision_reason"]})
    if follow_up.get("notes"):
        resource["note"] = [{"text": follow_up["notes"]}]
    resource["component"] = components
    return _Entry(resource, reference, request, server_id)


def operation_to_bundle(document: dict, follow_ups=(), *, patient_ref: str | None = None) -> dict:
    """A `transaction` Bundle that, POSTed to /fhir, creates or updates this operation and its follow-ups.

    `document` is an operation document as /v1 takes it (with `patient.ref`) or returns it (with
    `patient_id` and the stored patient, no ref); `follow_ups` are follow-ups in /v1's form.
    `patient_ref` gives the ref for a stored document when the caller has it (the registry does not).
    Entries: Patient (conditional create), Procedure (conditional update by local_ref), then the
    operation's Condition, Devices, Observations and AdverseEvents, then one Observation per follow-up.
    """
    names = _Names(document, server_ids=False)
    entries = _operation_entries(document, follow_ups, names, patient_ref)
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": entry.reference, "resource": entry.resource, "request": entry.request}
                      for entry in entries]}


def operation_to_resources(document: dict, follow_ups=()) -> list[dict]:
    """Every resource of a stored operation (and its follow-ups) with its server id, for reads.

    References are relative (`Patient/7`, `Procedure/12`, `Device/12-implant-1`); the Patient
    carries no identifier (the registry keeps no ref to give). Order as in `operation_to_bundle`.
    """
    names = _Names(document, server_ids=True)
    return [entry.resource for entry in _operation_entries(document, follow_ups, names, None)]


def follow_up_to_resource(follow_up: dict, operation_id: int, patient_id: int) -> dict:
    """A stored follow-up (with `id`) as its Observation, for reads."""
    names = _Names({"id": operation_id, "patient_id": patient_id, "local_ref": ""}, server_ids=True)
    return _follow_up_entry(follow_up, 0, names, {"reference": f"Patient/{patient_id}"},
                            {"reference": f"Procedure/{operation_id}"}).resource

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

import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from registry import vocabulary
from registry.fhir.terminology import CANONICAL_BASE, REGISTRY_ELEMENT, REGISTRY_ELEMENTS, code_system_url
from registry.validation import rules

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
    "reported_by": "reported-by",                  # AdverseEvent: valueCoding (reported_by)
    "saves_grade": "saves-grade",                  # AdverseEvent: valueCoding (saves_grade, SAVES-V2)
    "count": "implant-count",                      # Device (implant): valueInteger
    # A score entry (an operation's baseline Observation, a follow-up's component): what its value is read on
    "score_version": "score-version",              # valueCoding (score_version); none for an ODI of unknown version
    "score_maximum": "score-maximum",              # valueDecimal: the maximum of the version's scale
    "value_set": "eq5d-value-set",                 # valueCoding (eq5d_value_set): the EQ-5D-5L index's value set
    "pain_site": "pain-site",                      # valueCoding (pain_site): where a pain NRS was scored
    # Procedure: valueCoding (recording_status), written when not_recorded (none and occurred
    # follow from the AdverseEvents present); read when given, else none or occurred likewise
    "intraop_events_status": "intraop-events-status",
    "postop_complications_status": "postop-complications-status",
}


# A value the record says was not recorded (a yes/no left null): FHIR's data-absent-reason "unknown"
NOT_RECORDED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown",
                            "display": "Unknown"}], "text": "Not recorded"}


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

LOINC = "http://loinc.org"
# Standard codes of a score's instrument (and version: None for all its versions), next to the
# registry's score-instrument coding; only codes checked against a source (docs/fhir.md lists them).
# NDI and JOA have none found: they carry the registry's coding only.
SCORE_STANDARD_CODINGS = {
    ("pain_nrs", "11-point"): [{"system": LOINC, "code": "72514-3",
                                "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported"}],
    ("odi", None): [{"system": LOINC, "code": "97909-6", "display": "Oswestry disability index score ODI"}],
    ("eq5d5l_index", "5L"): [{"system": SNOMED, "code": "736534008",
                              "display": "EuroQol five dimension five level index value (observable entity)"}],
}

_VOCABULARY_OF_ELEMENT = {"fusion-status": "fusion_status", "implant-status": "implant_status",
                          "bridwell-grade": "bridwell_grade"}

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


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() is true of '²' (int() then fails) and of Arabic-Indic
    digits (int() reads them as another number)."""
    return text.isascii() and text.isdigit()


def parse_resource_id(resource_type: str, text: str) -> tuple[str, int, str | None] | None:
    """What a server id names: ("operation", id, part or None), ("patient", id, None) or
    ("follow_up", id, None); None when the id names nothing this mapping makes."""
    if resource_type == "Patient":
        return ("patient", int(text), None) if _digits(text) else None
    if resource_type == "Procedure":
        return ("operation", int(text), None) if _digits(text) else None
    if resource_type == "Observation" and text.startswith("follow-up-") and _digits(text[10:]):
        return "follow_up", int(text[10:]), None
    number, dash, part = text.partition("-")
    if not (_digits(number) and dash and part):
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


def patient_to_resource(patient: dict, *, server_id: str | None = None, ref: str | None = None) -> dict:
    """A patient as its FHIR Patient: pseudonymous, birth year only. The ref is given only while a
    centre's own bundle is written (the registry keeps no ref in clear to give back)."""
    resource = {"resourceType": "Patient"}
    if server_id:
        resource["id"] = server_id
    if ref is not None:
        resource["identifier"] = [{"system": PATIENT_REF_IDENTIFIER, "value": ref}]
    if patient.get("consent"):
        resource["extension"] = [_extension("consent", "valueCoding", coding("consent", patient["consent"]))]
    if patient.get("sex"):
        resource["gender"] = patient["sex"]  # the registry's codes are administrative-gender's
    if patient.get("birth_year") is not None:
        resource["birthDate"] = str(patient["birth_year"])
    return resource


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
    ref = patient_ref if patient_ref is not None else patient.get("ref")
    patient_resource = patient_to_resource(patient, server_id=patient_id, ref=ref)
    if ref is not None:
        patient_request = {"method": "POST", "url": "Patient",
                           "ifNoneExist": conditional_url("Patient", PATIENT_REF_IDENTIFIER, ref).split("?", 1)[1]}
    else:
        patient_request = {"method": "POST", "url": "Patient", "ifNoneExist": f"_id={document['patient_id']}"}
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
    for name in ("intraop_events_status", "postop_complications_status"):
        if document.get(name) == "not_recorded":
            procedure.setdefault("extension", []).append(
                _extension(name, "valueCoding", coding("recording_status", document[name])))
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
        # every level of the range, in order; a reversed range (refused by /v1) is written as sent
        span = vocabulary.SPINAL_LEVELS[first:last + 1] if first <= last else (
            levels.get("from", levels.get("from_")), levels["to"])
        body_sites += [concept("spinal_level", level) for level in span]
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
    # the JOA 17-point and mJOA scores, sent in either form (registry.validation.rules)
    scores = rules.legacy_scores(rules.merged_scores(document.get("preop_scores") or {},
                                                     document.get("baseline_scores")))
    if scores.get("joa") is not None:
        observation("preop-joa", "joa", "valueQuantity", quantity(scores["joa"], "{score}"))
    if scores.get("mjoa") is not None:
        observation("preop-mjoa", "mjoa", "valueInteger", scores["mjoa"])
    # every other score entry: an Observation coded with its instrument, the site as its bodySite
    for entry in rules.other_scores(rules.merged_scores({}, document.get("baseline_scores"))):
        extensions, code, value = _score_elements(entry)
        score = {"extension": extensions, "status": "final", "code": code, "subject": subject,
                 "effectiveDateTime": procedure["performedDateTime"], "partOf": [procedure_subject]}
        if entry.get("site"):
            score["bodySite"] = concept("pain_site", entry["site"])
        add("Observation", baseline_score_part(entry), {**score, "valueQuantity": value})

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
        for name in ("reported_by", "saves_grade"):
            if event.get(name):
                extensions.append(_extension(name, "valueCoding", coding(name, event[name])))
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
        for name in ("reported_by", "saves_grade"):
            if complication.get(name):
                extensions.append(_extension(name, "valueCoding", coding(name, complication[name])))
        adverse_event = {"actuality": "actual", "event": concept("postop_complication", complication["type"]),
                         "subject": subject, "seriousness": concept("clavien_dindo_grade", complication["grade"]),
                         "suspectEntity": [{"instance": procedure_subject}]}
        if extensions:
            adverse_event = {"extension": extensions, **adverse_event}
        add("AdverseEvent", f"postop-complication-{number}", adverse_event)

    for index, follow_up in enumerate(follow_ups):
        entries.append(_follow_up_entry(follow_up, index, names, subject, procedure_subject))
    return entries


def baseline_score_part(entry: dict) -> str:
    """The part name of a baseline score's Observation: `baseline-ndi-percent`, `baseline-pain-nrs-11-point-neck`
    (one per instrument, version and site, as rules.one_score_per_instrument has it)."""
    key = [str(item) for item in (entry.get("instrument"), entry.get("version"), entry.get("site")) if item]
    return "baseline-" + "-".join(key).replace("_", "-")


def _score_elements(entry: dict) -> tuple[list[dict], dict, dict]:
    """(extensions, code, valueQuantity) of a score entry, for an Observation or a follow-up's component:
    the instrument's registry coding first, then its standard ones; what its value is read on as extensions."""
    extensions = []
    if entry.get("version"):
        extensions.append(_extension("score_version", "valueCoding", coding("score_version", entry["version"])))
    extensions.append(_extension("score_maximum", "valueDecimal", entry["maximum"]))
    if entry.get("value_set"):
        extensions.append(_extension("value_set", "valueCoding", coding("eq5d_value_set", entry["value_set"])))
    standard = SCORE_STANDARD_CODINGS.get((entry["instrument"], entry.get("version"))) \
        or SCORE_STANDARD_CODINGS.get((entry["instrument"], None), [])
    code = {"coding": [coding("score_instrument", entry["instrument"]), *standard]}
    return extensions, code, quantity(entry["value"], "{score}")


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
    for name, code in (("fusion_status", "fusion-status"), ("bridwell_grade", "bridwell-grade"),
                       ("implant_status", "implant-status")):
        if follow_up.get(name):
            components.append({"code": element(code), "valueCodeableConcept": concept(name, follow_up[name])})
    legacy = rules.legacy_scores(rules.merged_scores(follow_up, follow_up.get("scores")))
    if legacy["joa"] is not None:
        components.append({"code": element("joa"), "valueQuantity": quantity(legacy["joa"], "{score}")})
    if legacy["mjoa"] is not None:
        components.append({"code": element("mjoa"), "valueInteger": legacy["mjoa"]})
    # every other score entry: a component coded with its instrument (a component has no bodySite:
    # a pain NRS names its site by extension)
    for entry in rules.other_scores(rules.merged_scores({}, follow_up.get("scores"))):
        extensions, code, value = _score_elements(entry)
        if entry.get("site"):
            extensions.append(_extension("pain_site", "valueCoding", coding("pain_site", entry["site"])))
        components.append({"extension": extensions, "code": code, "valueQuantity": value})
    if follow_up.get("revision_surgery") is None:  # not recorded: said so, never written as false
        components.append({"code": element("revision-surgery"), "dataAbsentReason": NOT_RECORDED})
    else:
        components.append({"code": element("revision-surgery"), "valueBoolean": follow_up["revision_surgery"]})
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


# --- FHIR -> document ------------------------------------------------------------------------

# The shape of what the registry reads of each resource: every element it keeps, with its JSON
# type. An element not listed is refused (it would be lost); a value of the wrong type is refused
# before anything is read (so a list where an object belongs is a 400, never a 500).
_NUMBER, _INTEGER = "number", "integer"
_IDENTIFIER = {"system": str, "value": str, "use": str}
_CODING = {"system": str, "code": str, "display": str, "version": str, "userSelected": bool}
_CONCEPT = {"coding": [_CODING], "text": str}
_REFERENCE = {"reference": str, "display": str, "type": str}
_QUANTITY = {"value": _NUMBER, "unit": str, "system": str, "code": str}
_ANNOTATION = {"text": str}
_EXTENSION = {"url": str, "valueCoding": _CODING, "valueBoolean": bool, "valueString": str, "valueInteger": _INTEGER,
              "valueDuration": _QUANTITY, "valueCode": str, "valueDecimal": _NUMBER}
_EXTENDED = {"extension": [_EXTENSION]}
_RESOURCE_SHAPES = {
    "Patient": {"identifier": [_IDENTIFIER], **_EXTENDED, "gender": str, "birthDate": str},
    "Condition": {"identifier": [_IDENTIFIER], **_EXTENDED, "clinicalStatus": _CONCEPT, "code": _CONCEPT,
                  "subject": _REFERENCE, "note": [_ANNOTATION]},
    "Procedure": {"identifier": [_IDENTIFIER], **_EXTENDED, "status": str, "code": _CONCEPT, "subject": _REFERENCE,
                  "performedDateTime": str, "_performedDateTime": _EXTENDED, "reasonCode": [_CONCEPT],
                  "reasonReference": [_REFERENCE], "bodySite": [_CONCEPT], "complication": [_CONCEPT],
                  "followUp": [{**_CONCEPT, **_EXTENDED}], "note": [_ANNOTATION], "usedReference": [_REFERENCE],
                  "usedCode": [_CONCEPT]},
    "Device": {"identifier": [_IDENTIFIER], **_EXTENDED, "type": _CONCEPT, "patient": _REFERENCE,
               "property": [{"type": _CONCEPT, "valueQuantity": [_QUANTITY]}], "parent": _REFERENCE,
               "note": [_ANNOTATION], "manufacturer": str, "deviceName": [{"name": str, "type": str}]},
    "Observation": {"identifier": [_IDENTIFIER], **_EXTENDED, "status": str, "code": _CONCEPT, "subject": _REFERENCE,
                    "effectiveDateTime": str, "partOf": [_REFERENCE], "bodySite": _CONCEPT, "valueQuantity": _QUANTITY,
                    "valueBoolean": bool, "valueInteger": _INTEGER, "method": _CONCEPT,
                    "component": [{**_EXTENDED, "code": _CONCEPT, "valueQuantity": _QUANTITY,
                                   "valueCodeableConcept": _CONCEPT,
                                   "valueInteger": _INTEGER, "valueBoolean": bool, "valueString": str,
                                   "dataAbsentReason": _CONCEPT}],
                    "note": [_ANNOTATION]},
    "AdverseEvent": {"identifier": _IDENTIFIER, **_EXTENDED, "actuality": str, "event": _CONCEPT,
                     "subject": _REFERENCE, "date": str, "seriousness": _CONCEPT,
                     "suspectEntity": [{"instance": _REFERENCE}]},
}
_ACCEPTED_ELEMENTS = {resource_type: set(shape) for resource_type, shape in _RESOURCE_SHAPES.items()}
_REQUEST_SHAPE = {"method": str, "url": str, "ifNoneExist": str, "ifMatch": str}
_TYPE_NAMES = {str: "a string", bool: "true or false", _NUMBER: "a number", _INTEGER: "an integer"}


def _shape_faults(value, shape, path: str) -> list[tuple[str, str, str]]:
    """(FHIRPath, message, issue code) of every part of `value` that does not have `shape`; the
    faulty parts are removed from `value`, so that what remains can be read safely."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [(path, "An object is expected here.", "structure")]
        faults = []
        for name in list(value):
            if name not in shape:
                faults.append((f"{path}.{name}", f"{name} is not read by the registry here: it would be lost, so it "
                                                 "is refused.", "not-supported"))
                del value[name]
                continue
            found = _shape_faults(value[name], shape[name], f"{path}.{name}")
            if found and found[0][0] == f"{path}.{name}" and found[0][2] == "structure":
                del value[name]
            faults += found
        return faults
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [(path, "A list is expected here.", "structure")]
        faults = []
        for number in reversed(range(len(value))):
            found = _shape_faults(value[number], shape[0], f"{path}[{number}]")
            if found and found[0][0] == f"{path}[{number}]":
                del value[number]
            faults = found + faults
        return faults
    if shape == _ANY:
        return []
    if shape is str or shape is bool:
        valid = isinstance(value, shape)
    else:
        valid = isinstance(value, int if shape == _INTEGER else (int, float)) and not isinstance(value, bool)
    return [] if valid else [(path, f"{_TYPE_NAMES[shape]} is expected here.".capitalize(), "structure")]


_IGNORED_ELEMENTS = {"resourceType", "id", "meta", "text"}
_ANY = "any"
_BUNDLE_ELEMENTS = {"resourceType", "id", "meta", "type", "entry", "timestamp", "identifier", "language",
                    "implicitRules"}
_ENTRY_ELEMENTS = {"fullUrl", "resource", "request"}
_EXTENSION_NAMES = {extension_url(name): name for name in EXTENSIONS}
_OBSERVATION_FIELDS = {  # Observation code -> (document field, value element, UCUM unit)
    "blood-loss": ("blood_loss_ml", "valueQuantity", "mL"),
    "duration": ("duration_min", "valueQuantity", "min"),
    "transfusion": ("transfusion", "valueBoolean", None),
    "joa": ("preop_scores.joa", "valueQuantity", "{score}"),
    "mjoa": ("preop_scores.mjoa", "valueInteger", None),
}
_COMPONENT_FIELDS = {  # follow-up component code -> (follow-up field, value element, UCUM unit)
    "months-after": ("months_after", "valueQuantity", "mo"),
    "fusion-status": ("fusion_status", "valueCodeableConcept", None),
    "bridwell-grade": ("bridwell_grade", "valueCodeableConcept", None),
    "implant-status": ("implant_status", "valueCodeableConcept", None),
    "joa": ("joa", "valueQuantity", "{score}"),
    "mjoa": ("mjoa", "valueInteger", None),
    "revision-surgery": ("revision_surgery", "valueBoolean", None),
    "revision-reason": ("revision_reason", "valueString", None),
}
# A standard code standing for exactly one registry code, for senders that give only the standard one
_FROM_STANDARD = {}
for (_name, _code), _codings in STANDARD_CODINGS.items():
    for _coding in _codings:
        _FROM_STANDARD.setdefault((_name, _coding["system"], _coding["code"]), set()).add(_code)
_FROM_STANDARD = {key: codes.pop() for key, codes in _FROM_STANDARD.items() if len(codes) == 1}


@dataclass
class Unit:
    """One operation to write, read from a Bundle, with where each of its fields came from.

    `operation` is the operation document in /v1's wire form (OperationInputSchema loads it), or
    None when the Bundle holds only follow-ups of a stored operation, named by `stored_operation`
    (("id", 12) for `Procedure/12`, ("local_ref", "X") for `Procedure?identifier=...|X`).
    `follow_ups` are follow-ups in /v1's wire form (FollowUpFieldsSchema loads each).
    `sources` maps an operation field path (`intraop_events.0.grade`) to its FHIRPath;
    `follow_up_sources[n]` does the same for follow-up n. `parts` maps each Bundle entry index of
    this unit to the part it holds ("procedure", "patient", "diagnosis", "blood-loss", "implant-1",
    "follow-up-0", ...), the Procedure's (or first follow-up's) entry first.
    """

    operation: dict | None
    stored_operation: tuple[str, object] | None = None
    follow_ups: list[dict] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    follow_up_sources: list[dict[str, str]] = field(default_factory=list)
    parts: dict[int, str] = field(default_factory=dict)

    def source(self, field_path: str, follow_up: int | None = None) -> str:
        """The FHIRPath of a document field (the nearest enclosing element that was read)."""
        sources = self.sources if follow_up is None else self.follow_up_sources[follow_up]
        path = field_path
        while path:
            if path in sources:
                return sources[path]
            path = path.rpartition(".")[0]
        return sources[""]


def _is_object(value) -> bool:
    return isinstance(value, dict)


class _Reader:
    """Reads one Bundle; collects structural errors (each with its FHIRPath) as it goes."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.errors: list[dict] = []
        self.by_full_url: dict[str, int] = {}

    def error(self, entry: int | None, expression: str, diagnostics: str, code: str = "structure") -> None:
        self.errors.append({"entry": entry, "expression": expression, "diagnostics": diagnostics, "code": code})

    # -- shapes

    def entries(self) -> list[tuple[int, dict]]:
        bundle = self.bundle
        if not _is_object(bundle) or bundle.get("resourceType") != "Bundle":
            self.error(None, "Bundle", "The body must be a FHIR Bundle (resourceType: Bundle).")
            return []
        for name in bundle:
            if name not in _BUNDLE_ELEMENTS:
                self.error(None, f"Bundle.{name}", f"Bundle.{name} is not read by this server.", "not-supported")
        if bundle.get("type") not in ("transaction", "batch"):
            self.error(None, "Bundle.type", "Bundle.type must be transaction or batch.", "not-supported")
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            self.error(None, "Bundle.entry", "Bundle.entry must be a list.")
            return []
        good = []
        for index, entry in enumerate(entries):
            path = f"Bundle.entry[{index}]"
            if not _is_object(entry):
                self.error(index, path, "An entry must be an object.")
                continue
            unknown = [name for name in entry if name not in _ENTRY_ELEMENTS]
            for name in unknown:
                self.error(index, f"{path}.{name}", f"{name} is not read by this server.", "not-supported")
            resource, request = entry.get("resource"), entry.get("request")
            if not _is_object(resource):
                self.error(index, f"{path}.resource", "Each entry carries a resource.", "required")
                continue
            resource_type = resource.get("resourceType")
            if not isinstance(resource_type, str) or resource_type not in _RESOURCE_SHAPES:
                self.error(index, f"{path}.resource.resourceType",
                           f"The registry does not take {resource_type!r} resources (it takes "
                           f"{', '.join(SUPPORTED_TYPES)}).", "not-supported")
                continue
            request_faults = _shape_faults(request, _REQUEST_SHAPE, f"{path}.request") if _is_object(request) else []
            if not _is_object(request) or request.get("method") not in ("POST", "PUT") \
                    or not isinstance(request.get("url"), str) or request_faults:
                self.error(index, f"{path}.request", "Each entry needs a request with method POST or PUT and a url "
                                                     "(this server takes only writes in a Bundle).", "not-supported")
                continue
            if not request["url"].split("?", 1)[0].startswith(resource_type):
                self.error(index, f"{path}.request.url", f"The url must name {resource_type}.")
                continue
            shape = dict(_RESOURCE_SHAPES[resource_type], **{name: _ANY for name in _IGNORED_ELEMENTS})
            for fault_path, message, code in _shape_faults(resource, shape, f"{path}.resource"):
                self.error(index, fault_path, message, code)
            # an entry with elements refused is still read, so that only its own faults are answered
            if isinstance(entry.get("fullUrl"), str):
                if entry["fullUrl"] in self.by_full_url:
                    self.error(index, f"{path}.fullUrl", f"Entry {self.by_full_url[entry['fullUrl']]} has this "
                                                         "fullUrl already: each entry needs its own.", "duplicate")
                    continue
                self.by_full_url[entry["fullUrl"]] = index
            good.append((index, entry))
        return good

    def resolve(self, reference, index: int, path: str):
        """What a Reference names: ("entry", n), ("id", type, number), ("identifier", type, system, value),
        or None (with an error) when it names nothing the registry can resolve."""
        text = reference.get("reference") if _is_object(reference) else None
        if not isinstance(text, str):
            self.error(index, path, "A reference (reference: ...) is required here.", "required")
            return None
        if text in self.by_full_url:
            return "entry", self.by_full_url[text]
        resource_type, _, rest = text.partition("?")
        if rest:
            identifier = parse_identifier_query(rest)
            if identifier is not None:
                return ("identifier", resource_type) + identifier
        resource_type, slash, number = text.partition("/")
        if slash and _digits(number):
            return "id", resource_type, int(number)
        self.error(index, f"{path}.reference", f"{text!r} names no entry of this Bundle and no stored resource.",
                   "not-found")
        return None

    # -- values

    def code(self, concept_value, vocabulary_name: str, index: int, path: str, *, many: bool = False):
        """The registry code(s) of a CodeableConcept (its coding of the registry's CodeSystem, or a
        standard coding that stands for one registry code), with the FHIRPath of each."""
        if not _is_object(concept_value) or not isinstance(concept_value.get("coding", []), list):
            self.error(index, path, "A CodeableConcept is expected here.")
            return [] if many else (None, path)
        found = []
        system = code_system_url(vocabulary_name)
        for number, item in enumerate(concept_value.get("coding", [])):
            if not _is_object(item):
                continue
            if item.get("system") == system:
                found.append((item.get("code"), f"{path}.coding[{number}].code"))
            elif (vocabulary_name, item.get("system"), item.get("code")) in _FROM_STANDARD and not many:
                found.append((_FROM_STANDARD[(vocabulary_name, item["system"], item["code"])],
                              f"{path}.coding[{number}].code"))
        if many:
            return found
        if not found:
            self.error(index, path, f"No coding of {system} (the registry's {vocabulary_name} codes) here.",
                       "code-invalid")
            return None, path
        return found[0]

    def extensions(self, holder: dict, index: int, path: str) -> dict[str, list[tuple[dict, str]]]:
        """The holder's registry extensions by name, with the FHIRPath of each; unknown ones refused."""
        found: dict[str, list[tuple[dict, str]]] = {}
        values = holder.get("extension", [])
        if not isinstance(values, list):
            self.error(index, f"{path}.extension", "extension must be a list.")
            return found
        for number, extension in enumerate(values):
            url = extension.get("url") if _is_object(extension) else None
            if url not in _EXTENSION_NAMES:
                self.error(index, f"{path}.extension[{number}]", f"Extension {url!r} is not one the registry reads "
                                                                 "(docs/fhir.md lists them).", "not-supported")
                continue
            found.setdefault(_EXTENSION_NAMES[url], []).append((extension, f"{path}.extension[{number}]"))
        return found

    def note(self, resource: dict, index: int, path: str):
        """(text, FHIRPath) of a resource's one note, or None."""
        notes = resource.get("note")
        if notes is None:
            return None
        if not isinstance(notes, list) or len(notes) != 1 or not _is_object(notes[0]):
            self.error(index, f"{path}.note", "At most one note is kept here.")
            return None
        return notes[0].get("text"), f"{path}.note[0].text"

    def quantity_value(self, value, unit: str, index: int, path: str):
        """The value of a UCUM Quantity in `unit` (a value in another unit is refused, not converted)."""
        if not _is_object(value):
            self.error(index, path, "A Quantity is expected here.")
            return None
        if value.get("code", value.get("unit")) != unit or value.get("system", UCUM) != UCUM:
            self.error(index, f"{path}.code", f"The registry keeps this in UCUM {unit!r}.", "value")
        return value.get("value")


def _copy(document):
    """A deep copy of a JSON document (through the C encoder: ten times copy.deepcopy's speed)."""
    try:
        return json.loads(json.dumps(document))
    except (TypeError, ValueError):
        return copy.deepcopy(document)


def _date_and_precision(text):
    """A FHIR date or dateTime as (ISO date, precision); the text itself when it is none (the schema refuses it)."""
    if not isinstance(text, str):
        return text, None
    date = text[:10]
    if len(text) == 4 and _digits(text):
        return f"{text}-01-01", "year"
    if len(text) == 7 and _digits(text[:4]) and text[4] == "-":
        return f"{text}-01", "month"
    return date if len(text) == 10 or text[10:11] == "T" else text, "day"


class _Operation:
    """The operation document being read from one Procedure and the entries that refer to it."""

    def __init__(self, reader: _Reader, unit: Unit):
        self.reader = reader
        self.unit = unit

    def put(self, field_path: str, value, source: str, follow_up: int | None = None) -> None:
        """Set a (dotted) field of the document or of follow-up n, remembering its FHIRPath."""
        target = self.unit.operation if follow_up is None else self.unit.follow_ups[follow_up]
        *parents, name = field_path.split(".")
        for parent in parents:
            target = target[int(parent)] if isinstance(target, list) else target.setdefault(parent, {})
        target[name] = value
        (self.unit.sources if follow_up is None else self.unit.follow_up_sources[follow_up])[field_path] = source


def bundle_to_documents(bundle) -> tuple[list[Unit], list[dict]]:
    """Read a transaction or batch Bundle into operation documents (see `Unit`) and structural errors.

    Each error is {"entry": index or None, "expression": FHIRPath, "diagnostics": text, "code": an
    issue-type code}. An entry with an error belongs to no Unit; values are not checked here (the
    caller validates the documents with /v1's schemas and answers their errors at `Unit.source`).
    """
    reader = _Reader(_copy(bundle))  # faulty parts are cut from the copy as they are found
    entries = dict(reader.entries())
    resources = {index: entry["resource"] for index, entry in entries.items()}
    used: set[int] = set()
    units: list[Unit] = []
    procedure_unit: dict[int, Unit] = {}

    shared: dict[int, str] = {}  # entries several operations may name: a patient's Patient and Condition

    def take(index: int, unit: Unit, part: str, resource_type: str, path: str) -> dict | None:
        if index not in resources or resources[index]["resourceType"] != resource_type:
            reader.error(index, path, f"The reference must name a {resource_type} entry of this Bundle.")
            return None
        if index in used and not (shared.get(index) == part and part in ("patient", "diagnosis")):
            reader.error(index, f"Bundle.entry[{index}]", "This entry is referred to by two operations.")
            return None
        used.add(index)
        shared[index] = part
        unit.parts[index] = part
        return resources[index]

    for index, resource in resources.items():
        if resource["resourceType"] == "Procedure":
            unit = Unit(operation={}, sources={"": f"Bundle.entry[{index}].resource"})
            used.add(index)
            unit.parts[index] = "procedure"
            _read_procedure(reader, _Operation(reader, unit), index, resource, entries[index]["request"], take)
            units.append(unit)
            procedure_unit[index] = unit
    local_refs: dict[str, int] = {}
    for index, unit in procedure_unit.items():
        local_ref = unit.operation.get("local_ref")
        if isinstance(local_ref, str) and local_refs.setdefault(local_ref, index) != index:
            reader.error(index, f"Bundle.entry[{index}].resource.identifier", f"Entry {local_refs[local_ref]} is "
                         "already this operation (the same local_ref): send each operation once.", "duplicate")

    # Observations and AdverseEvents point at their Procedure (partOf, suspectEntity)
    stored_units: dict[tuple, Unit] = {}
    for index, resource in resources.items():
        path = f"Bundle.entry[{index}].resource"
        if resource["resourceType"] not in ("Observation", "AdverseEvent"):
            continue
        if resource["resourceType"] == "Observation":
            targets = [(reference, f"{path}.partOf[{n}]") for n, reference in enumerate(resource.get("partOf") or [])]
        else:
            targets = [(suspect.get("instance"), f"{path}.suspectEntity[{n}].instance")
                       for n, suspect in enumerate(resource.get("suspectEntity") or []) if _is_object(suspect)]
        procedure = None
        for reference, reference_path in targets:
            named = reader.resolve(reference, index, reference_path)
            if named is None:
                procedure = False
                break
            if named[0] == "entry" and named[1] in procedure_unit:
                procedure = ("entry", named[1])
                break
            if named[0] in ("id", "identifier") and named[1] == "Procedure":
                procedure = named
                break
        if procedure is False:
            continue
        if procedure is None:
            field_name = "partOf" if resource["resourceType"] == "Observation" else "suspectEntity"
            reader.error(index, f"{path}.{field_name}", "It must refer to the Procedure (the operation) it belongs to.",
                         "required")
            continue
        is_follow_up = resource["resourceType"] == "Observation" and _element_code(resource.get("code")) == "follow-up"
        if procedure[0] == "entry":
            unit = procedure_unit[procedure[1]]
            if not _same_subject(reader, index, resources[procedure[1]]):
                used.add(index)
                continue
        elif is_follow_up:
            key = procedure[:1] + procedure[2:]
            stored = ("id", procedure[2]) if procedure[0] == "id" else ("local_ref", procedure[3])
            if procedure[0] == "identifier" and procedure[2] != OPERATION_IDENTIFIER:
                reader.error(index, f"{path}.partOf[0].reference",
                             f"A Procedure is named by identifier system {OPERATION_IDENTIFIER}.", "not-found")
                continue
            unit = stored_units.get(key)
            if unit is None:
                unit = stored_units[key] = Unit(operation=None, stored_operation=stored, sources={"": path})
                units.append(unit)
        else:
            reader.error(index, path, "A part of an operation is sent with its Procedure, in the same Bundle (the "
                                      "operation is written whole, as on /v1).", "not-supported")
            continue
        used.add(index)
        operation = _Operation(reader, unit)
        if is_follow_up:
            unit.parts[index] = f"follow-up-{len(unit.follow_ups)}"
            _read_follow_up(reader, operation, index, resource, entries[index]["request"])
        elif resource["resourceType"] == "Observation":
            unit.parts[index] = _read_observation(reader, operation, index, resource)
        else:
            unit.parts[index] = _read_adverse_event(reader, operation, index, resource, take)

    for unit in units:
        if unit.operation is not None:
            _check_complications(reader, unit)
    for index in resources:
        if index not in used:
            reader.error(index, f"Bundle.entry[{index}].resource", "This resource is not part of an operation: a "
                         "Patient, Condition or Device is sent as the subject, reason or used device of a Procedure.",
                         "not-supported")
    return units, reader.errors


# The statuses that say a thing happened as recorded; any other (not-done, entered-in-error,
# a potential adverse event...) is refused rather than recorded as if it had happened.
_RECORDED_STATUSES = {"Procedure": ("status", {"completed"}),
                      "Observation": ("status", {"final", "amended", "corrected"}),
                      "AdverseEvent": ("actuality", {"actual"})}


def _check_status(reader: _Reader, index: int, resource: dict) -> None:
    element_name, accepted = _RECORDED_STATUSES[resource["resourceType"]]
    value = resource.get(element_name)
    if value is not None and value not in accepted:
        reader.error(index, f"Bundle.entry[{index}].resource.{element_name}",
                     f"The registry records what happened: {element_name} must be {' or '.join(sorted(accepted))}.",
                     "business-rule")


def _same_subject(reader: _Reader, index: int, procedure: dict) -> bool:
    """Whether a part of an operation names the operation's patient, when it names one."""
    resource = reader.bundle["entry"][index]["resource"]
    subject = resource.get("subject")
    if subject is None or subject.get("reference") == (procedure.get("subject") or {}).get("reference"):
        return True
    reader.error(index, f"Bundle.entry[{index}].resource.subject", "The subject must be the patient of the "
                                                                    "operation (its Procedure's subject).", "invariant")
    return False


def _element_code(concept_value) -> str | None:
    if not _is_object(concept_value):
        return None
    for item in concept_value.get("coding") or []:
        if _is_object(item) and item.get("system") == ELEMENT_SYSTEM:
            return item.get("code")
    return None


def _identifier_value(reader: _Reader, resource: dict, system: str, index: int, path: str):
    """(value, FHIRPath) of the resource's identifier of `system`, or None."""
    identifiers = resource.get("identifier")
    identifiers = [identifiers] if _is_object(identifiers) else identifiers if isinstance(identifiers, list) else []
    for number, identifier in enumerate(identifiers):
        if _is_object(identifier) and identifier.get("system") == system:
            suffix = f"[{number}]" if isinstance(resource.get("identifier"), list) else ""
            return identifier.get("value"), f"{path}.identifier{suffix}.value"
    return None


def _conditional_key(reader: _Reader, request: dict, system: str, index: int):
    """The identifier value a conditional request names (PUT url or ifNoneExist), or None."""
    query = request["url"].partition("?")[2] or request.get("ifNoneExist") or ""
    if not query:
        return None
    named = parse_identifier_query(query)
    if named is None or named[0] != system:
        reader.error(index, f"Bundle.entry[{index}].request", f"A conditional request here names "
                                                              f"identifier={system}|<value>.", "not-supported")
        return None
    return named[1]


def _read_procedure(reader: _Reader, operation: _Operation, index: int, procedure: dict, request: dict, take) -> None:
    path = f"Bundle.entry[{index}].resource"
    _check_status(reader, index, procedure)
    put = operation.put
    local_ref = _identifier_value(reader, procedure, OPERATION_IDENTIFIER, index, path)
    key = _conditional_key(reader, request, OPERATION_IDENTIFIER, index)
    if local_ref is None and key is None:
        reader.error(index, f"{path}.identifier", f"The operation's local_ref is its identifier of system "
                                                  f"{OPERATION_IDENTIFIER}.", "required")
    elif local_ref is not None and key is not None and local_ref[0] != key:
        reader.error(index, f"Bundle.entry[{index}].request.url", "The conditional url names another identifier "
                                                                  "than the Procedure's.")
    if local_ref is not None:
        put("local_ref", *local_ref)
    elif key is not None:
        put("local_ref", key, f"Bundle.entry[{index}].request.url")
    extensions = reader.extensions(procedure, index, path)
    for extension, extension_path in extensions.get("approach", []):
        put("approach", (extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
    for name in ("intraop_events_status", "postop_complications_status"):
        for extension, extension_path in extensions.get(name, []):
            put(name, (extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
    performed = procedure.get("performedDateTime")
    date, precision = _date_and_precision(performed)
    put("operation_date", date, f"{path}.performedDateTime")
    given = reader.extensions(procedure.get("_performedDateTime") or {}, index, f"{path}._performedDateTime")
    for extension, extension_path in given.get("date_precision", []):
        precision = extension.get("valueCode")
        put("date_precision", precision, f"{extension_path}.valueCode")
    if precision is not None:
        operation.unit.operation["date_precision"] = precision
        operation.unit.sources.setdefault("date_precision", f"{path}.performedDateTime")
    codes = reader.code(procedure.get("code"), "procedure", index, f"{path}.code", many=True)
    put("procedures", [code for code, _ in codes], f"{path}.code")
    for number, (_, code_path) in enumerate(codes):
        operation.unit.sources[f"procedures.{number}"] = code_path
    reasons = procedure.get("reasonCode") or []
    if isinstance(reasons, list) and len(reasons) > 1:
        reader.error(index, f"{path}.reasonCode", "One indication per operation.")
    elif reasons:
        reason = reasons[0]
        if _is_object(reason) and reason.get("coding"):
            put("indication", *reader.code(reason, "indication", index, f"{path}.reasonCode[0]"))
        if _is_object(reason) and "text" in reason:
            put("indication_note", reason["text"], f"{path}.reasonCode[0].text")
    sites = procedure.get("bodySite") or []
    region = [found for number, site in enumerate(sites)
              for found in reader.code(site, "region", index, f"{path}.bodySite[{number}]", many=True)]
    levels = [found for number, site in enumerate(sites)
              for found in reader.code(site, "spinal_level", index, f"{path}.bodySite[{number}]", many=True)]
    if region:
        put("region", *region[0])
    else:
        operation.unit.sources["region"] = f"{path}.bodySite"
    if levels:
        put("levels.from", *levels[0])
        put("levels.to", *levels[-1])
        operation.unit.sources["levels"] = f"{path}.bodySite"
    else:
        operation.unit.sources["levels"] = f"{path}.bodySite"
    follow_ups = procedure.get("followUp") or []
    if follow_ups:
        follow_up_path = f"{path}.followUp[0]"
        put("immobilization.type", *reader.code(follow_ups[0], "immobilization", index, follow_up_path))
        for extension, extension_path in reader.extensions(follow_ups[0], index, follow_up_path).get(
                "immobilization_weeks", []):
            put("immobilization.weeks", reader.quantity_value(extension.get("valueDuration"), "wk", index,
                                                              f"{extension_path}.valueDuration"),
                f"{extension_path}.valueDuration.value")
        if len(follow_ups) > 1:
            reader.error(index, f"{path}.followUp", "One immobilisation per operation.")
    note = reader.note(procedure, index, path)
    if note:
        put("notes", *note)
    grafts = procedure.get("usedCode") or []
    if grafts:
        found = [reader.code(graft, "bone_graft", index, f"{path}.usedCode[{number}]")
                 for number, graft in enumerate(grafts)]
        put("bone_graft", [code for code, _ in found], f"{path}.usedCode")
        for number, (_, code_path) in enumerate(found):
            operation.unit.sources[f"bone_graft.{number}"] = code_path

    # The patient: the subject, a Patient entry of the Bundle (with its Condition) or a stored one
    named = reader.resolve(procedure.get("subject"), index, f"{path}.subject")
    if named is not None and named[0] == "id" and named[1] == "Patient":
        put("patient_id", named[2], f"{path}.subject.reference")
    elif named is not None and named[0] == "entry":
        patient = take(named[1], operation.unit, "patient", "Patient", f"{path}.subject")
        if patient is not None:
            _read_patient(reader, operation, named[1], patient, take, procedure, index)
    elif named is not None:
        reader.error(index, f"{path}.subject", "The subject is a Patient entry of this Bundle or Patient/<id>.",
                     "not-supported")

    # Devices: the instrumentation system and the implants
    implants = []
    for number, reference in enumerate(procedure.get("usedReference") or []):
        named = reader.resolve(reference, index, f"{path}.usedReference[{number}]")
        if named is None:
            continue
        if named[0] != "entry":
            reader.error(index, f"{path}.usedReference[{number}]", "A used device is a Device entry of this Bundle.",
                         "not-supported")
            continue
        device = take(named[1], operation.unit, f"implant-{len(implants) + 1}", "Device",
                      f"{path}.usedReference[{number}]")
        if device is None:
            continue
        device_path = f"Bundle.entry[{named[1]}].resource"
        if "type" not in device:
            operation.unit.parts[named[1]] = "instrumentation"
            if device.get("manufacturer") is not None:
                put("instrumentation.manufacturer", device["manufacturer"], f"{device_path}.manufacturer")
            for name_number, name in enumerate(device.get("deviceName") or []):
                if _is_object(name) and name.get("type") == "model-name":
                    put("instrumentation.system", name.get("name"), f"{device_path}.deviceName[{name_number}].name")
            continue
        implants.append((named[1], device))
    if implants or "instrumentation" in operation.unit.operation:
        operation.unit.operation.setdefault("instrumentation", {})["implants"] = []
        operation.unit.sources["instrumentation.implants"] = f"{path}.usedReference"
    for number, (device_index, device) in enumerate(implants):
        device_path = f"Bundle.entry[{device_index}].resource"
        operation.unit.operation["instrumentation"]["implants"].append({})
        prefix = f"instrumentation.implants.{number}"
        operation.unit.sources[prefix] = device_path
        put(f"{prefix}.kind", *reader.code(device.get("type"), "implant_kind", device_index, f"{device_path}.type"))
        extensions = reader.extensions(device, device_index, device_path)
        for name in ("level", "side"):
            for extension, extension_path in extensions.get(name, []):
                put(f"{prefix}.{name}", (extension.get("valueCoding") or {}).get("code"),
                    f"{extension_path}.valueCoding.code")
        for extension, extension_path in extensions.get("count", []):
            put(f"{prefix}.count", extension.get("valueInteger"), f"{extension_path}.valueInteger")
        for property_number, device_property in enumerate(device.get("property") or []):
            property_path = f"{device_path}.property[{property_number}]"
            name = {"diameter": "diameter_mm", "length": "length_mm"}.get(_element_code(device_property.get("type")))
            values = device_property.get("valueQuantity") if _is_object(device_property) else None
            if name is None or not isinstance(values, list) or len(values) != 1:
                reader.error(device_index, property_path, "A device property here is a diameter or a length, with "
                                                          "one valueQuantity in mm.", "not-supported")
                continue
            put(f"{prefix}.{name}", reader.quantity_value(values[0], "mm", device_index,
                                                          f"{property_path}.valueQuantity[0]"),
                f"{property_path}.valueQuantity[0].value")
        note = reader.note(device, device_index, device_path)
        if note:
            put(f"{prefix}.note", *note)
    operation.unit.operation.setdefault("intraop_events", [])
    operation.unit.operation.setdefault("postop_complications", [])


def _read_patient(reader: _Reader, operation: _Operation, index: int, patient: dict, take, procedure: dict,
                  procedure_index: int) -> None:
    path = f"Bundle.entry[{index}].resource"
    put = operation.put
    request = reader.bundle["entry"][index]["request"]
    condition_if = request.get("ifNoneExist") or request["url"].partition("?")[2]
    if condition_if.startswith("_id="):
        number = condition_if[4:]
        if _digits(number):
            put("patient_id", int(number), f"Bundle.entry[{index}].request.ifNoneExist")
        else:
            reader.error(index, f"Bundle.entry[{index}].request.ifNoneExist", "_id=<registry patient id>.")
        # a stored patient: /v1 takes the operation's patient by id and changes nothing of it
        for number, reference in enumerate(procedure.get("reasonReference") or []):
            named = reader.resolve(reference, procedure_index, f"Bundle.entry[{procedure_index}].resource."
                                                                f"reasonReference[{number}]")
            if named is not None and named[0] == "entry":
                take(named[1], operation.unit, "diagnosis", "Condition", f"Bundle.entry[{named[1]}].resource")
        return
    operation.unit.operation["patient"] = {}
    operation.unit.sources["patient"] = path
    ref = _identifier_value(reader, patient, PATIENT_REF_IDENTIFIER, index, path)
    key = _conditional_key(reader, request, PATIENT_REF_IDENTIFIER, index)
    if ref is None:
        reader.error(index, f"{path}.identifier", f"The patient's ref is its identifier of system "
                                                  f"{PATIENT_REF_IDENTIFIER} (the registry keeps only a keyed hash).",
                     "required")
    else:
        if key is not None and key != ref[0]:
            reader.error(index, f"Bundle.entry[{index}].request.ifNoneExist", "ifNoneExist names another identifier "
                                                                              "than the Patient's.")
        put("patient.ref", *ref)
    for extension, extension_path in reader.extensions(patient, index, path).get("consent", []):
        put("patient.consent", (extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
    if "gender" in patient:
        put("patient.sex", patient["gender"], f"{path}.gender")
    if "birthDate" in patient:
        birth = patient["birthDate"]
        # the registry keeps the year only: a full birth date gives its year, the rest is not kept
        year = int(birth[:4]) if isinstance(birth, str) and _digits(birth[:4]) else birth
        put("patient.birth_year", year, f"{path}.birthDate")
    conditions = []
    for number, reference in enumerate(procedure.get("reasonReference") or []):
        reference_path = f"Bundle.entry[{procedure_index}].resource.reasonReference[{number}]"
        named = reader.resolve(reference, procedure_index, reference_path)
        if named is not None and named[0] == "entry":
            condition = take(named[1], operation.unit, "diagnosis", "Condition", reference_path)
            if condition is not None:
                conditions.append((named[1], condition))
        elif named is not None:
            reader.error(procedure_index, reference_path, "The diagnosis is a Condition entry of this Bundle.",
                         "not-supported")
    if len(conditions) > 1:
        reader.error(procedure_index, f"Bundle.entry[{procedure_index}].resource.reasonReference",
                     "One diagnosis (Condition) per operation.")
    operation.unit.sources["patient.diagnosis"] = f"Bundle.entry[{procedure_index}].resource.reasonReference"
    for condition_index, condition in conditions[:1]:
        condition_path = f"Bundle.entry[{condition_index}].resource"
        put("patient.diagnosis", *reader.code(condition.get("code"), "diagnosis", condition_index,
                                              f"{condition_path}.code"))
        note = reader.note(condition, condition_index, condition_path)
        if note:
            put("patient.diagnosis_note", *note)
        extensions = reader.extensions(condition, condition_index, condition_path)
        genes = [((extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
                 for extension, extension_path in extensions.get("gene", [])]
        put("patient.genes", [code for code, _ in genes], f"{condition_path}.extension")
        for number, (_, gene_path) in enumerate(genes):
            operation.unit.sources[f"patient.genes.{number}"] = gene_path
        for extension, extension_path in extensions.get("inheritance", []):
            put("patient.inheritance", (extension.get("valueCoding") or {}).get("code"),
                f"{extension_path}.valueCoding.code")
        for extension, extension_path in extensions.get("family_history", []):
            put("patient.family_history", extension.get("valueBoolean"), f"{extension_path}.valueBoolean")


_SCORE_EXTENSIONS = ("score_version", "score_maximum", "value_set", "pain_site")
# What a score's Observation or component holds (a value in another element would be lost)
_SCORE_COMPONENT_ELEMENTS = {"extension", "code", "valueQuantity"}
_SCORE_OBSERVATION_ELEMENTS = _SCORE_COMPONENT_ELEMENTS | _IGNORED_ELEMENTS | {
    "identifier", "status", "subject", "effectiveDateTime", "partOf", "bodySite"}


def _is_score(concept_value) -> bool:
    """Whether a code names a score instrument (a coding of the registry's score-instrument CodeSystem)."""
    system = code_system_url("score_instrument")
    return _is_object(concept_value) and isinstance(concept_value.get("coding"), list) and any(
        _is_object(item) and item.get("system") == system for item in concept_value["coding"])


def _read_score(reader: _Reader, index: int, holder: dict, path: str, put, prefix: str, *, site_element: bool) -> dict:
    """Read one score entry (a baseline Observation, or a follow-up's component) into `prefix`
    (`baseline_scores.0`, `scores.1`); the entry read, for its part name. The pain site is the
    Observation's bodySite, or a component's pain-site extension (`site_element` False)."""
    entry = {}
    read = _SCORE_OBSERVATION_ELEMENTS if site_element else _SCORE_COMPONENT_ELEMENTS
    for name in holder:
        if name not in read:
            reader.error(index, f"{path}.{name}", f"{name} is not read on a score: it would be lost, so it is "
                                                  "refused.", "not-supported")

    def keep(name, value, source):
        entry[name] = value
        put(f"{prefix}.{name}", value, source)

    keep("instrument", *reader.code(holder.get("code"), "score_instrument", index, f"{path}.code"))
    if "valueQuantity" in holder:
        keep("value", reader.quantity_value(holder["valueQuantity"], "{score}", index, f"{path}.valueQuantity"),
             f"{path}.valueQuantity.value")
    else:
        reader.error(index, f"{path}.valueQuantity", "A score gives its value as valueQuantity (UCUM {score}).",
                     "required")
    extensions = reader.extensions(holder, index, path)
    for name, found in extensions.items():
        if name not in _SCORE_EXTENSIONS or (name == "pain_site" and site_element):
            for _, extension_path in found:
                reader.error(index, extension_path, "This extension is not read on a score.", "not-supported")
    for name, field_name in (("score_version", "version"), ("value_set", "value_set")):
        for extension, extension_path in extensions.get(name, []):
            keep(field_name, (extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
    for extension, extension_path in extensions.get("score_maximum", []):
        keep("maximum", extension.get("valueDecimal"), f"{extension_path}.valueDecimal")
    if site_element and "bodySite" in holder:
        keep("site", *reader.code(holder["bodySite"], "pain_site", index, f"{path}.bodySite"))
    for extension, extension_path in extensions.get("pain_site", []) if not site_element else ():
        keep("site", (extension.get("valueCoding") or {}).get("code"), f"{extension_path}.valueCoding.code")
    return entry


def _refuse_unread(reader: _Reader, index: int, holder: dict, path: str, names) -> None:
    """Elements only a score reads (extension, bodySite) are refused elsewhere: they would be lost."""
    for name in names:
        if name in holder:
            reader.error(index, f"{path}.{name}", f"{name} is read only on a score: it would be lost here, so it is "
                                                  "refused.", "not-supported")


def _read_observation(reader: _Reader, operation: _Operation, index: int, observation: dict) -> str:
    path = f"Bundle.entry[{index}].resource"
    _check_status(reader, index, observation)
    if _is_score(observation.get("code")):
        scores = operation.unit.operation.setdefault("baseline_scores", [])
        prefix = f"baseline_scores.{len(scores)}"
        scores.append({})
        operation.unit.sources[prefix] = path
        entry = _read_score(reader, index, observation, path, operation.put, prefix, site_element=True)
        return baseline_score_part(entry)
    _refuse_unread(reader, index, observation, path, ("extension", "bodySite"))
    code = _element_code(observation.get("code"))
    if code not in _OBSERVATION_FIELDS:
        reader.error(index, f"{path}.code", f"An operation's Observation is coded from {ELEMENT_SYSTEM}: one of "
                                            f"{', '.join(_OBSERVATION_FIELDS)} (or follow-up), or is a score coded "
                                            f"from {code_system_url('score_instrument')}.", "code-invalid")
        return "observation"
    field_path, value_element, unit = _OBSERVATION_FIELDS[code]
    if field_path in operation.unit.sources:
        reader.error(index, path, f"A second {code} Observation for the same operation.", "duplicate")
    elif value_element not in observation:
        reader.error(index, f"{path}.{value_element}", f"A {code} Observation gives its value as {value_element}.",
                     "required")
    elif unit:
        operation.put(field_path, reader.quantity_value(observation[value_element], unit, index,
                                                        f"{path}.{value_element}"), f"{path}.{value_element}.value")
    else:
        operation.put(field_path, observation[value_element], f"{path}.{value_element}")
    return {"joa": "preop-joa", "mjoa": "preop-mjoa"}.get(code, code)


def _read_adverse_event(reader: _Reader, operation: _Operation, index: int, event: dict, take) -> str:
    path = f"Bundle.entry[{index}].resource"
    _check_status(reader, index, event)
    put = operation.put
    document = operation.unit.operation
    intraop = reader.code(event.get("event"), "intraop_event", index, f"{path}.event", many=True)
    postop = reader.code(event.get("event"), "postop_complication", index, f"{path}.event", many=True)
    if not intraop and not postop:
        reader.error(index, f"{path}.event", "The event is coded from the registry's intraop-event or "
                                             "postop-complication CodeSystem.", "code-invalid")
        return "adverse-event"
    kind, found = ("intraop_events", intraop) if intraop else ("postop_complications", postop)
    number = len(document[kind])
    document[kind].append({})
    prefix = f"{kind}.{number}"
    operation.unit.sources[prefix] = path
    put(f"{prefix}.type", *found[0])
    extensions = reader.extensions(event, index, path)
    grade = event.get("seriousness")
    if grade is not None:
        put(f"{prefix}.grade", *reader.code(grade, "classintra_grade" if intraop else "clavien_dindo_grade",
                                            index, f"{path}.seriousness"))
    else:
        operation.unit.sources[f"{prefix}.grade"] = f"{path}.seriousness"
    for name in ("management", "description"):
        for extension, extension_path in extensions.get(name, []):
            put(f"{prefix}.{name}", extension.get("valueString"), f"{extension_path}.valueString")
    for name in ("reported_by", "saves_grade"):
        for extension, extension_path in extensions.get(name, []):
            put(f"{prefix}.{name}", (extension.get("valueCoding") or {}).get("code"),
                f"{extension_path}.valueCoding.code")
    if postop:
        for extension, extension_path in extensions.get("days_after", []):
            put(f"{prefix}.days_after", reader.quantity_value(extension.get("valueDuration"), "d", index,
                                                              f"{extension_path}.valueDuration"),
                f"{extension_path}.valueDuration.value")
        return f"postop-complication-{number + 1}"
    for name in ("level", "side", "site"):
        for extension, extension_path in extensions.get(name, []):
            put(f"{prefix}.{name}", (extension.get("valueCoding") or {}).get("code"),
                f"{extension_path}.valueCoding.code")
    for extension, extension_path in extensions.get("retained_fragment", []):
        put(f"{prefix}.retained_fragment", extension.get("valueBoolean"), f"{extension_path}.valueBoolean")
    operation.unit.sources[f"{prefix}.instrument"] = f"{path}.suspectEntity"
    for suspect_number, suspect in enumerate(event.get("suspectEntity") or []):
        suspect_path = f"{path}.suspectEntity[{suspect_number}].instance"
        named = reader.resolve(suspect.get("instance") if _is_object(suspect) else None, index, suspect_path)
        if named is None or named[0] != "entry" or reader.bundle["entry"][named[1]]["resource"].get(
                "resourceType") != "Device":
            continue
        device = take(named[1], operation.unit, f"intraop-event-{number + 1}-instrument", "Device", suspect_path)
        if device is None:
            continue
        device_path = f"Bundle.entry[{named[1]}].resource"
        if "type" in device:
            put(f"{prefix}.instrument", *reader.code(device["type"], "instrument", named[1], f"{device_path}.type"))
        note = reader.note(device, named[1], device_path)
        if note:
            put(f"{prefix}.instrument_detail", *note)
    return f"intraop-event-{number + 1}"


def _read_follow_up(reader: _Reader, operation: _Operation, index: int, observation: dict, request: dict) -> None:
    path = f"Bundle.entry[{index}].resource"
    _check_status(reader, index, observation)
    unit = operation.unit
    number = len(unit.follow_ups)
    unit.follow_ups.append({})
    unit.follow_up_sources.append({"": path})

    def put(field_path, value, source):
        operation.put(field_path, value, source, follow_up=number)

    local_ref = _identifier_value(reader, observation, FOLLOW_UP_IDENTIFIER, index, path)
    key = _conditional_key(reader, request, FOLLOW_UP_IDENTIFIER, index)
    if local_ref is not None:
        put("local_ref", *local_ref)
        if key is not None and key != local_ref[0]:
            reader.error(index, f"Bundle.entry[{index}].request.url", "The conditional url names another identifier "
                                                                      "than the Observation's.")
    elif key is not None:
        put("local_ref", key, f"Bundle.entry[{index}].request.url")
    if "effectiveDateTime" in observation:
        put("date", _date_and_precision(observation["effectiveDateTime"])[0], f"{path}.effectiveDateTime")
    else:
        unit.follow_up_sources[number]["date"] = f"{path}.effectiveDateTime"
    if "method" in observation:
        put("assessment", *reader.code(observation["method"], "assessment", index, f"{path}.method"))
    note = reader.note(observation, index, path)
    if note:
        put("notes", *note)
    _refuse_unread(reader, index, observation, path, ("extension", "bodySite"))
    for component_number, component in enumerate(observation.get("component") or []):
        component_path = f"{path}.component[{component_number}]"
        if _is_object(component) and _is_score(component.get("code")):
            scores = unit.follow_ups[number].setdefault("scores", [])
            prefix = f"scores.{len(scores)}"
            scores.append({})
            unit.follow_up_sources[number][prefix] = component_path
            _read_score(reader, index, component, component_path, put, prefix, site_element=False)
            continue
        if _is_object(component):
            _refuse_unread(reader, index, component, component_path, ("extension",))
        code = _element_code(component.get("code")) if _is_object(component) else None
        if code not in _COMPONENT_FIELDS:
            reader.error(index, f"{component_path}.code", f"A follow-up component is coded from {ELEMENT_SYSTEM}: "
                                                          f"one of {', '.join(_COMPONENT_FIELDS)}, or is a score "
                                                          f"coded from {code_system_url('score_instrument')}.",
                                                          "code-invalid")
            continue
        name, value_element, unit_code = _COMPONENT_FIELDS[code]
        if "dataAbsentReason" in component and value_element not in component:
            put(name, None, f"{component_path}.dataAbsentReason")  # not recorded
        elif value_element not in component:
            reader.error(index, f"{component_path}.{value_element}", f"{code} gives its value as {value_element}.",
                         "required")
        elif value_element == "valueCodeableConcept":
            put(name, *reader.code(component[value_element], _VOCABULARY_OF_ELEMENT[code], index,
                                   f"{component_path}.{value_element}"))
        elif unit_code:
            put(name, reader.quantity_value(component[value_element], unit_code, index,
                                            f"{component_path}.{value_element}"), f"{component_path}.{value_element}.value")
        else:
            put(name, component[value_element], f"{component_path}.{value_element}")


def _check_complications(reader: _Reader, unit: Unit) -> None:
    """Procedure.complication is a summary written on export: it must agree with the AdverseEvents,
    which are what the registry keeps (a complication given only there would be lost)."""
    index = next(index for index, part in unit.parts.items() if part == "procedure")
    procedure = reader.bundle["entry"][index]["resource"]
    if "complication" not in procedure:
        return
    listed = sorted(code for number, item in enumerate(procedure.get("complication") or [])
                    for vocabulary_name in ("intraop_event", "postop_complication")
                    for code, _ in reader.code(item, vocabulary_name, index, f"complication[{number}]", many=True))
    recorded = sorted(item.get("type") for kind in ("intraop_events", "postop_complications")
                      for item in unit.operation.get(kind, []))
    if listed != recorded:
        reader.error(index, f"Bundle.entry[{index}].resource.complication", "Each complication is recorded as an "
                     "AdverseEvent of the operation; Procedure.complication, when given, lists the same events.")

"""The cross-field rules of the record documents, written once as plain functions.

Each takes the loaded data of one object (as its marshmallow schema produces it: `levels` with
`from_`, dates as `datetime.date`) and returns its errors as {field: message}, empty when the
rule holds. The schemas' `@validates_schema` hooks call them, so the marshmallow load and the
compiled path (`registry.validation.compiled`, which runs the same hooks) judge alike.
"""

import datetime as dt

from registry import vocabulary as v


def levels_ordered(levels: dict) -> dict[str, str]:
    """`from` is the upper level: C3 to C6, not C6 to C3."""
    if "from_" in levels and "to" in levels and v.level_position(levels["from_"]) > v.level_position(levels["to"]):
        return {"to": f"{levels['to']} is above {levels['from_']}: give the upper level as `from`."}
    return {}


def breakage_names_its_instrument(event: dict) -> dict[str, str]:
    """An instrument breakage names the instrument; only a breakage leaves a fragment."""
    breakage = event.get("type") == "instrument_breakage"
    if breakage and not event.get("instrument"):
        return {"instrument": "An instrument breakage must name the instrument."}
    if not breakage and event.get("retained_fragment") is not None:
        return {"retained_fragment": "Only an instrument breakage can leave a fragment."}
    return {}


def spinal_regions_need_levels(operation: dict) -> dict[str, str]:
    if operation.get("region") in v.SPINAL_REGIONS and not operation.get("levels"):
        return {"levels": f"Required for an operation in the {operation['region']} region."}
    return {}


def recording_status(operation: dict, list_name: str) -> str:
    """The assessment of a list as the document states it: its `<list>_status` when sent; else
    occurred when items are listed, none when the list is sent empty (the contract before the
    status existed: the list is what happened), not_recorded when the list is left out."""
    status = operation.get(f"{list_name}_status")
    if status is not None:
        return status
    if list_name not in operation:
        return "not_recorded"
    return "occurred" if operation[list_name] else "none"


def recording_status_agrees_with_list(operation: dict, list_name: str) -> dict[str, str]:
    """`occurred` lists at least one item; `none` and `not_recorded` list none."""
    status, items = operation.get(f"{list_name}_status"), operation.get(list_name) or []
    if status == "occurred" and not items:
        return {list_name: f"{list_name}_status is occurred: list at least one."}
    if status in ("none", "not_recorded") and items:
        return {f"{list_name}_status": f"Is {status}, but {list_name} lists {len(items)}: "
                                       "send occurred, or leave the status out."}
    return {}


def one_patient(operation: dict) -> dict[str, str]:
    """An operation document names its patient inline or by id, not both, not neither."""
    if ("patient" in operation) == ("patient_id" in operation):
        return {"patient": "Give either `patient` (inline, with its ref) or `patient_id`."}
    return {}


def birth_year_not_in_future(birth_year: int | None) -> str | None:
    if birth_year is not None and birth_year > dt.date.today().year:
        return "Must not be in the future."
    return None


def follow_up_dated_and_revision_consistent(follow_up: dict) -> dict[str, str]:
    """A follow-up has a date or months_after; a revision reason only with revision surgery."""
    errors = {}
    if "date" not in follow_up and "months_after" not in follow_up:
        errors["date"] = "Give the date of the follow-up or months_after."
    if follow_up.get("revision_reason") and follow_up.get("revision_surgery") is not True:
        errors["revision_reason"] = "Only with revision_surgery: true."
    return errors


def bridwell_grade_agrees_with_fusion_status(follow_up: dict) -> dict[str, str]:
    """A Bridwell grade says whether the fusion took: I and II fused, III indeterminate or not
    fused, IV not fused (vocabulary.BRIDWELL_FUSION_STATUS)."""
    grade = follow_up.get("bridwell_grade")
    if grade is None:
        return {}
    allowed = v.BRIDWELL_FUSION_STATUS[grade]
    status = follow_up.get("fusion_status")
    if status not in allowed:
        return {"bridwell_grade": f"Bridwell {grade} goes with fusion_status {' or '.join(allowed)}, "
                                  f"not {status or 'none'}."}
    return {}


def bulk_follow_ups_have_local_refs(follow_ups: list[dict]) -> dict[int, str]:
    """In a bulk submission each follow-up carries its local_ref: {index: message}."""
    return {index: "Required for a follow-up in a bulk submission: resending the file updates the follow-up "
                   "with this local_ref."
            for index, follow_up in enumerate(follow_ups) if not follow_up.get("local_ref")}


# --- outcome scores (vocabulary.SCORE_SCALES) -----------------------------------------------------

def score_version(entry: dict) -> str | None:
    """The entry's version, or its instrument's only one when left out."""
    return entry.get("version") or v.SCORE_DEFAULT_VERSION.get(entry.get("instrument"))


def score_on_its_scale(entry: dict) -> dict[str, str]:
    """A score names a version of its instrument where the scales differ, lies on that scale
    (range and step), states the scale's maximum if it gives one, and an EQ-5D-5L index names
    its value set (only it does)."""
    instrument, version = entry.get("instrument"), score_version(entry)
    if instrument is None:
        return {}
    if (instrument, version) not in v.SCORE_SCALES:
        known = sorted(str(ver) for inst, ver in v.SCORE_SCALES if inst == instrument and ver)
        return {"version": f"{instrument} is scored on version {' or '.join(known)}: give which."}
    minimum, maximum, step = v.SCORE_SCALES[instrument, version]
    errors = {}
    value = entry.get("value")
    if value is not None:
        if not minimum <= value <= maximum:
            errors["value"] = f"{instrument} {version or ''} runs from {minimum} to {maximum}.".replace("  ", " ")
        elif step is not None and (value / step) != int(value / step):
            errors["value"] = "Must be a whole point." if step == 1 else "Must be a whole or half point."
    if entry.get("maximum") is not None and entry["maximum"] != maximum:
        errors["maximum"] = f"{instrument} {version or ''} has maximum {maximum}.".replace("  ", " ")
    if instrument == "eq5d5l_index" and not entry.get("value_set"):
        errors["value_set"] = "An EQ-5D-5L index names the value set that produced it."
    if instrument != "eq5d5l_index" and entry.get("value_set"):
        errors["value_set"] = "Only for an EQ-5D-5L index."
    if instrument == "pain_nrs" and not entry.get("site"):
        errors["site"] = "A pain NRS names where the pain is (neck, arm, back or leg)."
    if instrument != "pain_nrs" and entry.get("site"):
        errors["site"] = "Only for a pain NRS."
    return errors


def one_score_per_instrument(entries: list[dict], field: str) -> dict[str, str]:
    """A timepoint holds one score per instrument, version and (pain NRS) site."""
    seen = set()
    for index, entry in enumerate(entries or []):
        key = (entry.get("instrument"), score_version(entry), entry.get("site"))
        if key in seen:
            where = f" ({entry['site']})" if entry.get("site") else ""
            return {f"{field}.{index}.instrument": f"{entry['instrument']}{where} is already scored at this timepoint."}
        seen.add(key)
    return {}


# The legacy fields (operation preop_scores.joa / .mjoa, follow-up joa / mjoa) are the JOA
# 17-point and mJOA entries of the score list.
LEGACY_SCORES = {"joa": ("joa", "17-point"), "mjoa": ("mjoa", "18-point")}


def scores_agree_with_legacy(legacy: dict, entries: list[dict], legacy_field: str) -> dict[str, str]:
    """A legacy field sent beside the list agrees with the list's entry of its version. Another
    version of the instrument (a 29-point lumbar JOA beside the 17-point one) is another score."""
    for name, (instrument, version) in LEGACY_SCORES.items():
        if legacy.get(name) is None:
            continue
        for entry in entries or []:
            if entry.get("instrument") == instrument and score_version(entry) == version \
                    and entry.get("value") != legacy[name]:
                return {legacy_field + name: f"Is {legacy[name]}, but the {instrument} {version} score listed is "
                                             f"{entry.get('value')}: send one, or make them agree."}
    return {}


def merged_scores(legacy: dict, entries: list[dict]) -> list[dict]:
    """The full score list: the entries (version and maximum filled in) and the legacy fields
    the list does not already hold. Run on data the rules above accepted."""
    merged = [{"instrument": entry["instrument"], "version": score_version(entry), "value": entry["value"],
               "maximum": v.SCORE_SCALES[entry["instrument"], score_version(entry)][1],
               "value_set": entry.get("value_set"), "site": entry.get("site")} for entry in entries or []]
    listed = {(entry["instrument"], entry["version"]) for entry in merged}
    for name, (instrument, version) in LEGACY_SCORES.items():
        if legacy.get(name) is not None and (instrument, version) not in listed:
            merged.append({"instrument": instrument, "version": version, "value": legacy[name],
                           "maximum": v.SCORE_SCALES[instrument, version][1], "value_set": None,
                           "site": None})
    return merged


def legacy_scores(entries: list[dict]) -> dict:
    """The legacy fields read from a full score list: {joa, mjoa} (None where not scored)."""
    found = {name: None for name in LEGACY_SCORES}
    for entry in entries or []:
        for name, key in LEGACY_SCORES.items():
            if (entry["instrument"], entry["version"]) == key:
                found[name] = int(entry["value"]) if name == "mjoa" else entry["value"]  # mJOA: whole points
    return found


def other_scores(entries: list[dict]) -> list[dict]:
    """The entries the legacy fields do not hold: what the score columns store (the JOA 17-point
    and mJOA scores keep their own columns, which the reports read)."""
    return [entry for entry in entries or [] if (entry["instrument"], entry["version"])
            not in LEGACY_SCORES.values()]


def scores_from_storage(legacy: dict, others: list[dict]) -> list[dict]:
    """The full score list from the legacy columns and the stored others (JOA and mJOA first)."""
    return merged_scores(legacy, []) + list(others or [])

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

"""Documents and CSV files for the bulk submission tests."""

import copy
import csv
import io

from tests.records.helpers import seed_case, seed_follow_up


def document(number: int, **changes) -> dict:
    """A valid operation document with its own local_ref and patient, and one follow-up."""
    sent = copy.deepcopy(seed_case())
    sent["local_ref"] = f"OP-{number}"
    sent["patient"]["ref"] = f"P-{number}"
    sent["follow_ups"] = [dict(seed_follow_up(), local_ref=f"OP-{number}-FU48")]
    for name, value in changes.items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    return sent


CSV_HEADER = ["local_ref", "patient.ref", "patient.sex", "patient.birth_year", "patient.diagnosis", "operation_date",
              "region", "approach", "procedures", "levels.from", "levels.to", "instrumentation.implants.0.kind",
              "instrumentation.implants.0.side", "intraop_events.0.type", "intraop_events.0.instrument",
              "intraop_events.0.level", "intraop_events.0.side", "duration_min", "follow_ups.0.local_ref",
              "follow_ups.0.months_after", "follow_ups.0.joa"]


def csv_row(number: int, **cells) -> dict:
    """A valid CSV row (as a dict by column) for operation OP-<number>."""
    row = {"local_ref": f"OP-{number}", "patient.ref": f"P-{number}", "patient.sex": "male",
           "patient.birth_year": "1973", "patient.diagnosis": "ado_ii", "operation_date": "2016-03-01",
           "region": "cervical", "approach": "posterior", "procedures": "laminectomy;fusion", "levels.from": "C3",
           "levels.to": "C6", "instrumentation.implants.0.kind": "lateral_mass_screw",
           "instrumentation.implants.0.side": "bilateral", "intraop_events.0.type": "instrument_breakage",
           "intraop_events.0.instrument": "drill_bit", "intraop_events.0.level": "C4",
           "intraop_events.0.side": "left", "duration_min": "180", "follow_ups.0.local_ref": f"OP-{number}-FU",
           "follow_ups.0.months_after": "48", "follow_ups.0.joa": "14"}
    row.update(cells)
    return row


def csv_body(rows: list[dict], header: list[str] = CSV_HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()

"""Reports as CSV: one line per group and a last `total` line, nested figures flattened
(`intraop_event_rate`, `blood_loss_ml_median`, ...).

Cells a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return)
are prefixed with a single quote. Numbers the registry computed are written as numbers: a
negative recovery rate such as -12.5 stays numeric, as spreadsheets read it as a number.
"""

import csv
import io
import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def neutralise(cell: str) -> str:
    """Defuse a cell a spreadsheet would evaluate as a formula."""
    if cell.startswith(FORMULA_START) and not NUMBER.match(cell):
        return "'" + cell
    return cell


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def report_csv(report: dict) -> str:
    """The report document as CSV text."""
    dims = list(report["group_by"])
    lines = []
    for kind, rows in (("group", report["groups"]), ("total", [report["total"]] if report.get("total") else [])):
        for row in rows:
            flat = {"row": kind}
            for d in dims:
                flat[d] = row["group"].get(d)
            for key, value in row.items():
                if key != "group":
                    _flatten(key, value, flat)
            lines.append(flat)
    columns = ["row", *dims]
    for flat in lines:
        columns += [key for key in flat if key not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(c) for c in columns])
    for flat in lines:
        writer.writerow([neutralise(_text(flat.get(column))) for column in columns])
    return buffer.getvalue()

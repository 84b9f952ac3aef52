"""The table under each plot: a report document (as /v1 answers it) laid out as rows and cells.

Presentation only: which figures a report's table shows, in which words. Every figure is the
document's; a withheld one (null, with `suppressed`) is written "withheld", never a number.
"""

from registry.reports.plots import value_label

WITHHELD = "withheld"
POSITIONS = {
    "above_99.8": "above the 99.8 % limit", "above_95": "above the 95 % limit", "within": "within the limits",
    "below_95": "below the 95 % limit", "below_99.8": "below the 99.8 % limit",
}

# report: [(column heading, figure path, kind)]; kind: count, proportion, summary
COLUMNS = {
    "complications": [
        ("Operations", "operations", "count"),
        ("Intraoperative event", "intraop_event", "proportion"),
        ("Instrument breakage", "instrument_breakage", "proportion"),
        ("Dural tear", "intraop_event_types.dural_tear", "proportion"),
        ("Iatrogenic fracture", "intraop_event_types.iatrogenic_fracture", "proportion"),
        ("Postoperative complication", "postop_complication", "proportion"),
        ("Major complication (≥ IIIa)", "major_complication", "proportion"),
        ("Blood loss, mL", "blood_loss_ml", "summary"),
        ("Duration, min", "duration_min", "summary"),
    ],
    "fusion": [
        ("Operations", "operations", "count"),
        ("Fusion operations", "fusion_operations", "count"),
        ("Fusion", "fusion", "proportion"),
        ("Pseudarthrosis", "pseudarthrosis", "proportion"),
        ("Implant failure", "implant_failure", "proportion"),
        ("Revision", "revision", "proportion"),
    ],
    "outcomes": [
        ("Operations", "operations", "count"),
        ("JOA before", "joa_preop", "summary"),
        ("JOA latest", "joa_latest", "summary"),
        ("JOA recovery, %", "joa_recovery_rate", "summary"),
        ("mJOA before", "mjoa_preop", "summary"),
        ("mJOA latest", "mjoa_latest", "summary"),
    ],
    # the outcomes most registries score; every outcome is in the CSV and JSON
    "scores": [
        ("Operations", "operations", "count"),
        ("JOA 17 change", "scores.joa_17.change", "summary"),
        ("JOA 17 ≥ MCID", "scores.joa_17.reaches_mcid", "proportion"),
        ("mJOA change", "scores.mjoa_18.change", "summary"),
        ("mJOA ≥ MCID", "scores.mjoa_18.reaches_mcid", "proportion"),
        ("NDI % change", "scores.ndi_percent.change", "summary"),
        ("ODI 2.1a change", "scores.odi_2_1a.change", "summary"),
        ("EQ-5D-5L (England) change", "scores.eq5d5l_england.change", "summary"),
        ("Neck pain change", "scores.pain_nrs_neck.change", "summary"),
        ("Arm pain change", "scores.pain_nrs_arm.change", "summary"),
        ("Back pain change", "scores.pain_nrs_back.change", "summary"),
        ("Leg pain change", "scores.pain_nrs_leg.change", "summary"),
    ],
    "centres": [
        ("Rate", "measure", "proportion"),
        ("Pooled rate", "pooled_rate", "rate"),
        ("95 % limits", "limits.95", "limits"),
        ("99.8 % limits", "limits.99.8", "limits"),
        ("Position", "position", "position"),
    ],
    "completeness": [
        ("Operations", "operations", "count"),
        ("Indication", "indication", "proportion"),
        ("Approach", "approach", "proportion"),
        ("Levels (spinal)", "levels", "proportion"),
        ("Duration", "duration_min", "proportion"),
        ("Blood loss", "blood_loss_ml", "proportion"),
        ("JOA before (cervical)", "preop_joa", "proportion"),
        ("Any follow-up", "follow_up", "proportion"),
        ("12-month follow-up", "follow_up_12m", "proportion"),
    ],
}


def percent(rate) -> str:
    return f"{100 * rate:.1f} %"


def _number(value) -> str:
    """At most two decimals (a JOA quartile of 13.25 stays exact; a recovery rate of 1.51515 % reads 1.52)."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _figure(row: dict, path: str):
    value = row
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return value


def cell(row: dict, path: str, kind: str) -> dict:
    """{text, detail, withheld} of one figure of a row."""
    if kind == "limits":
        level = path.split(".", 1)[1]
        low, high = row["limits"].get(f"lower_{level}"), row["limits"].get(f"upper_{level}")
        if low is None or high is None:
            return {"text": "–", "detail": row.get("pooled_withheld") and "pool withheld"}
        return {"text": f"{percent(low)} – {percent(high)}"}
    if kind == "rate":
        rate = row.get(path)
        if rate is None:
            reason = row.get("pooled_withheld")
            return {"text": WITHHELD if reason else "–", "detail": reason, "withheld": bool(reason)}
        return {"text": percent(rate)}
    if kind == "position":
        position = row.get("position")
        return {"text": POSITIONS.get(position, "–") if position else "–", "position": position}
    value = _figure(row, path)
    if kind == "count":
        if value is None:
            return {"text": WITHHELD, "withheld": True} if row.get("suppressed") else {"text": "–"}
        return {"text": str(value)}
    if not value:
        return {"text": "–"}
    if kind == "proportion":
        if value.get("rate") is None:
            return {"text": WITHHELD, "withheld": True} if value.get("suppressed") else {"text": "–"}
        return {"text": f"{percent(value['rate'])}",
                "detail": f"{value['numerator']} of {value['denominator']}; "
                          f"95 % CI {percent(value['ci_low'])} – {percent(value['ci_high'])}"}
    # summary
    if value.get("median") is None:
        if value.get("n") is not None and value.get("suppressed"):
            return {"text": f"n {value['n']}", "detail": "statistics withheld", "withheld": True}
        if value.get("suppressed"):
            return {"text": WITHHELD, "withheld": True}
        return {"text": "–"}
    return {"text": f"{_number(value['median'])}",
            "detail": f"IQR {_number(value['q1'])} – {_number(value['q3'])}; n {value['n']}"}


def table(document: dict) -> dict:
    """Headings and rows (label cells, then figure cells) of a report document."""
    kind = document["report"]
    dims = list(document.get("group_by") or [])
    columns = COLUMNS[kind]
    rows = []
    for row in document["groups"]:
        labels = [value_label(d, row["group"].get(d)) for d in dims]
        rows.append({"labels": labels, "cells": [cell(row, path, k) for _, path, k in columns],
                     "withheld": bool(row.get("suppressed")), "total": False})
    total = document.get("total")
    # ungrouped, the one group is the total: listed once; the funnel's total is its pool
    if total and kind != "centres" and dims:
        rows.append({"labels": ["All operations"] + [""] * (len(dims) - 1),
                     "cells": [cell(total, path, k) for _, path, k in columns], "withheld": False, "total": True})
    headings = [d.replace("_", " ").capitalize() for d in dims] or [""]
    if not dims:
        for row in rows:
            row["labels"] = row["labels"] or ["All operations"]
    return {"label_headings": headings, "headings": [title for title, _, _ in columns], "rows": rows}

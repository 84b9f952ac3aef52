"""A report document (registry.reports.service) as a FHIR R4 MeasureReport of type `summary`.

The MeasureReport is written from the very document the JSON answer is, after disclosure
control: it adds no figure and never recomputes one, so what is withheld in the JSON is
withheld here (a population with no count and a data-absent-reason `masked`), and an analyst's
counts are the same perturbed counts.

Shape (docs/fhir.md, "Reports as MeasureReport"):
- one `group` per figure of a row (a proportion, a summary, a count), coded with the figure's
  name in the JSON (`intraop_event`, `intraop_event_types.dural_tear`, `blood_loss_ml`);
- the report's total row is the group's own populations and score; each listed row is a
  `stratum` of one `stratifier` over the group-by dimensions (two dimensions: one stratifier
  over the pair, each stratum with two `component`s);
- a proportion has populations `numerator` and `denominator`, the rate as `measureScore`, and
  its 95 % Wilson interval in the extension WILSON_INTERVAL; a summary has a `measure-population`
  of n, the median as `measureScore` and mean and quartiles in SUMMARY_STATISTICS; a count has an
  `initial-population`.
"""

from datetime import date, datetime, timezone

from registry.fhir.terminology import CANONICAL_BASE, code_system_url

MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
UCUM = "http://unitsofmeasure.org"

# The registry's extensions and code systems (canonical URLs, documented in docs/fhir.md)
WILSON_INTERVAL = f"{CANONICAL_BASE}/StructureDefinition/wilson-interval"
SUMMARY_STATISTICS = f"{CANONICAL_BASE}/StructureDefinition/summary-statistics"
WITHHELD = f"{CANONICAL_BASE}/StructureDefinition/withheld"
DISCLOSURE_CONTROL = f"{CANONICAL_BASE}/StructureDefinition/disclosure-control"
REPORT_PARAMETER = f"{CANONICAL_BASE}/StructureDefinition/report-parameter"
REPORT_SCOPE = f"{CANONICAL_BASE}/StructureDefinition/report-scope"
FUNNEL = f"{CANONICAL_BASE}/StructureDefinition/funnel"
REPORT_MEASURE = f"{CANONICAL_BASE}/CodeSystem/report-measure"
REPORT_DIMENSION = f"{CANONICAL_BASE}/CodeSystem/report-dimension"

# Dimensions whose values are codes of a registry vocabulary (the others are numbers, booleans
# or centre codes, given as text)
_CODED_DIMENSIONS = {"approach": "approach", "region": "region", "procedure": "procedure",
                     "diagnosis": "diagnosis", "indication": "indication"}
# UCUM units of a summary's values
_SUMMARY_UNITS = {"blood_loss_ml": ("mL", "mL"), "duration_min": ("min", "min"),
                  "joa_recovery_rate": ("%", "%")}
_SCORE_UNIT = ("score", "{score}")
# Row members that are not figures
_ROW_EXTRAS = {"group", "suppressed", "pooled_rate", "pooled_withheld", "limits", "position"}


def measure_url(report: str) -> str:
    """The canonical of the Measure a report answers (not served as a resource: an identifier)."""
    return f"{CANONICAL_BASE}/Measure/{report}"


def measure_report(report: dict, today: date | None = None) -> dict:
    """The MeasureReport of a report document (the JSON answer of /v1/reports/...)."""
    dims = list(report["group_by"])
    rows = report["groups"]
    total = report.get("total")
    sample = total or (rows[0] if rows else None)
    resource = {
        "resourceType": "MeasureReport",
        "extension": _report_extensions(report),
        "status": "complete",
        "type": "summary",
        "measure": measure_url(report["report"]),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "period": _period(report["filters"], today or datetime.now(timezone.utc).date()),
    }
    groups = [_group(report, name, dims, total, rows) for name in _figure_names(sample)] if sample else []
    if groups:  # FHIR JSON has no empty arrays
        resource["group"] = groups
    return resource


def _figure_names(row: dict, prefix: str = "") -> list[str]:
    """The dotted names of a row's figures, in the JSON's order."""
    names = []
    for key, value in row.items():
        if key in _ROW_EXTRAS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not ({"numerator", "n"} & set(value)):
            names += _figure_names(value, f"{name}.")
        else:
            names.append(name)
    return names


def _figure(row: dict, name: str):
    value = row
    for part in name.split("."):
        value = value[part]
    return value


def _group(report: dict, name: str, dims: list, total: dict | None, rows: list) -> dict:
    # the centres report compares one measure, named by its `measure` parameter
    code = report["measure"] if report["report"] == "centres" and name == "measure" else name
    group = {"code": {"coding": [{"system": REPORT_MEASURE, "code": code, "display": _display(code)}],
                      "text": _display(code)}}
    if total is not None:
        group.update(_scored(name, total))
    strata = [_stratum(report, name, dims, row) for row in rows]
    if dims and strata:
        group["stratifier"] = [{"code": [_dimension_concept(d) for d in dims], "stratum": strata}]
    return group


def _stratum(report: dict, name: str, dims: list, row: dict) -> dict:
    stratum = {**_stratum_value(dims, row), **_scored(name, row)}
    funnel = _funnel(report, name, row)
    if funnel:
        stratum = {"extension": [*stratum.pop("extension", []), funnel], **stratum}
    return stratum


def _scored(name: str, row: dict) -> dict:
    """Populations, score and extensions of one figure in one row (a group or a stratum)."""
    value = _figure(row, name)
    if isinstance(value, dict) and "numerator" in value:
        reason = value.get("suppressed")
        part = {"population": [_population("numerator", value["numerator"]),
                               _population("denominator", value["denominator"])]}
        score = _score(value["rate"], reason, ("1", "1"))
        if value.get("ci_low") is not None and value.get("ci_high") is not None:
            score_extensions = [{"url": WILSON_INTERVAL, "valueRange": {"low": _quantity(value["ci_low"], ("1", "1")),
                                                                        "high": _quantity(value["ci_high"], ("1", "1"))}}]
        else:
            score_extensions = []
    elif isinstance(value, dict):  # a summary: n, mean, median, quartiles
        reason = value.get("suppressed")
        unit = _SUMMARY_UNITS.get(name.split(".")[-1], _SCORE_UNIT)
        part = {"population": [_population("measure-population", value["n"])]}
        score = _score(value["median"], reason, unit)
        statistics = [{"url": key, "valueQuantity": _quantity(value[key], unit)}
                      for key in ("mean", "median", "q1", "q3") if value.get(key) is not None]
        score_extensions = [{"url": SUMMARY_STATISTICS, "extension": statistics}] if statistics else []
    else:  # a count: withheld with its row
        reason = row.get("suppressed") if value is None else None
        part = {"population": [_population("initial-population", value)]}
        score, score_extensions = None, []
    extensions = score_extensions + ([{"url": WITHHELD, "valueCode": reason}] if reason else [])
    if extensions:
        part = {"extension": extensions, **part}
    if score is not None:
        part["measureScore"] = score
    return part


def _population(code: str, count: int | None) -> dict:
    population = {"code": {"coding": [{"system": MEASURE_POPULATION, "code": code}]}}
    if count is None:
        # a report's count is None only when withheld: no value at all, and FHIR's
        # data-absent-reason `masked` (withheld for privacy) on the count itself
        population["_count"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
    else:
        population["count"] = count
    return population


def _score(value, reason: str | None, unit: tuple) -> dict | None:
    if value is not None:
        return _quantity(value, unit)
    if reason:
        return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
    return None   # undefined (no denominator, no values): no score


def _quantity(value, unit: tuple) -> dict:
    display, code = unit
    return {"value": value, "unit": display, "system": UCUM, "code": code}


def _stratum_value(dims: list, row: dict) -> dict:
    values = [_dimension_value(d, row["group"].get(d)) for d in dims]
    if len(dims) == 1:
        return {"value": values[0]}
    return {"component": [{"code": _dimension_concept(d), "value": v} for d, v in zip(dims, values)]}


def _dimension_value(dimension: str, value) -> dict:
    if value is None:
        return {"text": "not recorded"}
    if dimension in _CODED_DIMENSIONS:
        return {"coding": [{"system": code_system_url(_CODED_DIMENSIONS[dimension]), "code": value}],
                "text": value}
    if isinstance(value, bool):
        return {"text": "true" if value else "false"}
    return {"text": str(value)}


def _dimension_concept(dimension: str) -> dict:
    return {"coding": [{"system": REPORT_DIMENSION, "code": dimension}], "text": dimension}


def _funnel(report: dict, name: str, row: dict) -> dict | None:
    """A centre's pooled rate, funnel limits and position, on its stratum of the compared measure."""
    if report["report"] != "centres" or name != "measure":
        return None
    parts = []
    if row.get("pooled_rate") is not None:
        parts.append({"url": "pooledRate", "valueDecimal": row["pooled_rate"]})
    if row.get("pooled_withheld"):
        parts.append({"url": "pooledWithheld", "valueString": row["pooled_withheld"]})
    for key, value in (row.get("limits") or {}).items():
        if value is not None:
            parts.append({"url": key.replace("_998", "_99.8"), "valueDecimal": value})
    if row.get("position"):
        parts.append({"url": "position", "valueCode": row["position"]})
    return {"url": FUNNEL, "extension": parts} if parts else None


def _period(filters: dict, today: date) -> dict:
    """The operation dates the report covers, from its filters (date_from/date_to, years);
    with no date filter the period is open at the start and ends on the report's date."""
    years = filters.get("year") or []
    starts = [date.fromisoformat(filters["date_from"])] if filters.get("date_from") else []
    ends = [date.fromisoformat(filters["date_to"])] if filters.get("date_to") else []
    if years:
        starts.append(date(min(years), 1, 1))
        ends.append(date(max(years), 12, 31))
    period = {}
    if starts:
        period["start"] = max(starts).isoformat()
    period["end"] = min(ends).isoformat() if ends else today.isoformat()
    return period


def _report_extensions(report: dict) -> list:
    extensions = [{"url": REPORT_SCOPE, "valueString": report["scope"]}]
    parameters = dict(report["filters"])
    for name in ("min_months", "measure"):
        if name in report:
            parameters[name] = report[name]
    for name, value in parameters.items():
        text = ",".join(str(v).lower() if isinstance(v, bool) else str(v)
                        for v in (value if isinstance(value, list) else [value]))
        extensions.append({"url": REPORT_PARAMETER, "extension": [{"url": "name", "valueCode": name},
                                                                 {"url": "value", "valueString": text}]})
    control = report.get("disclosure_control")
    if control:
        extensions.append({"url": DISCLOSURE_CONTROL, "extension": [
            {"url": key, **_typed(value)} for key, value in control.items() if value is not None]})
    return extensions


def _typed(value) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    return {"valueString": str(value)}


_DISPLAYS = {
    "operations": "Operations",
    "fusion_operations": "Fusion operations",
    "intraop_event": "Operations with an intraoperative event",
    "instrument_breakage": "Operations with an instrument breakage",
    "postop_complication": "Operations with a postoperative complication",
    "major_complication": "Operations with a major complication (Clavien-Dindo IIIa or higher)",
    "blood_loss_ml": "Blood loss (mL)",
    "duration_min": "Duration (min)",
    "fusion": "Fusion rate (fused among assessed)",
    "pseudarthrosis": "Pseudarthrosis (not fused among assessed)",
    "implant_failure": "Implant failure among instrumented operations followed up",
    "revision": "Revision among operations followed up",
    "joa_preop": "JOA before surgery",
    "joa_latest": "JOA at latest follow-up",
    "joa_recovery_rate": "Hirabayashi recovery rate (%)",
    "mjoa_preop": "mJOA before surgery",
    "mjoa_latest": "mJOA at latest follow-up",
    "dural_tear": "Operations with a dural tear",
    "iatrogenic_fracture": "Operations with an iatrogenic fracture",
}


def _display(name: str) -> str:
    if name.startswith("intraop_event_types."):
        return "Operations with intraoperative event: " + name.split(".", 1)[1].replace("_", " ")
    return _DISPLAYS.get(name, name.replace("_", " ").capitalize())

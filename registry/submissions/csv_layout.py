"""The CSV layout of a bulk submission: one row per operation, one column per field.

The columns are the fields of the JSON document, named by their dotted path, so a CSV cell
and the JSON field it fills have the same name, and an error names the column to fix:

- plain fields: `local_ref`, `operation_date`, `region`, `duration_min`, ...
- fields of an object: `patient.ref`, `patient.birth_year`, `levels.from`, `levels.to`,
  `instrumentation.system`, `preop_scores.joa`, `immobilization.type`, ...
- lists of codes, separated by `;` in one cell: `procedures` = `laminectomy;fusion`,
  `bone_graft`, `patient.genes`
- lists of items, as numbered column groups counted from 0, exactly as the error paths count:
  `intraop_events.0.type`, `intraop_events.0.instrument`, `intraop_events.1.type`, ...,
  `instrumentation.implants.0.kind`, `postop_complications.0.grade`, `follow_ups.0.months_after`.
  A file needs only the groups and the columns it uses; fill groups from 0 without gaps.

Cells: an empty cell leaves the field out; integers and numbers are written plainly (`180`,
`3.5`); booleans are `true` or `false`; dates are ISO (`2016-01-01`). Anything else is passed
as text to the same validation as the JSON API, which refuses it naming the column.

The layout is derived from `BulkOperationSchema` at import, so a field added to the document
is a column at once and the two can never disagree.
"""

import re
import sys
from dataclasses import dataclass

import marshmallow as ma

from registry.problems import field_error
from registry.submissions.schemas import BulkOperationSchema

LIST_SEPARATOR = ";"
_INDEX = re.compile(r"0|[1-9][0-9]{0,3}")


class HeaderError(Exception):
    """The header row names unknown or repeated columns; `errors` says which."""

    def __init__(self, errors: list[dict]):
        super().__init__("bad CSV header")
        self.errors = errors


def header_error(column: str, number: int, message: str) -> dict:
    """An error of the header cell in column `number` (1 = first)."""
    return field_error(column, f"Header column {number}: {message}", "csv") | {"column": column}


@dataclass(frozen=True)
class Group:
    """Numbered column groups of a list of items: `name.0.field`, `name.1.field`, ..."""

    max_items: int
    fields: dict


def _kind(field: ma.fields.Field):
    if isinstance(field, ma.fields.Nested):
        return _fields_of(field.schema)
    if isinstance(field, ma.fields.List):
        if isinstance(field.inner, ma.fields.Nested):
            lengths = [validator.max for validator in field.validators if isinstance(validator, ma.validate.Length)]
            return Group(lengths[0] if lengths and lengths[0] else 1000, _fields_of(field.inner.schema))
        return "list"
    if isinstance(field, ma.fields.Boolean):
        return "boolean"
    if isinstance(field, ma.fields.Integer):
        return "integer"
    if isinstance(field, ma.fields.Float):
        return "number"
    return "text"


def _fields_of(schema: ma.Schema) -> dict:
    return {field.data_key or name: _kind(field) for name, field in schema.fields.items()
            if not field.dump_only}


FIELDS = _fields_of(BulkOperationSchema())


def column_names(fields: dict = FIELDS, prefix: str = "", groups: int = 1) -> list[str]:
    """Every column of the layout, with `groups` numbered groups per list (for documentation)."""
    names = []
    for name, kind in fields.items():
        if isinstance(kind, dict):
            names += column_names(kind, f"{prefix}{name}.", groups)
        elif isinstance(kind, Group):
            for index in range(groups):
                names += column_names(kind.fields, f"{prefix}{name}.{index}.", groups)
        else:
            names.append(prefix + name)
    return names


def _parse_column(column: str) -> tuple[tuple, str] | None:
    """(path, kind) of a header cell, e.g. ("intraop_events", 0, "type"), or None when unknown."""
    path, fields, parts = [], FIELDS, column.split(".")
    position = 0
    while position < len(parts):
        kind = fields.get(parts[position]) if isinstance(fields, dict) else None
        if kind is None:
            return None
        path.append(parts[position])
        position += 1
        if isinstance(kind, Group):
            if position >= len(parts) or not _INDEX.fullmatch(parts[position]):
                return None
            index = int(parts[position])
            if index >= kind.max_items:
                return None
            path.append(index)
            position += 1
            fields = kind.fields
        elif isinstance(kind, dict):
            fields = kind
        else:
            return (tuple(path), kind) if position == len(parts) else None
    return None


def _cell_value(kind: str, cell: str):
    """The JSON value of a cell; left as text when it does not look right, for validation to refuse."""
    # past Python's limit on integer digits (4,300) int() raises: such a cell stays text, refused
    if kind == "integer" and re.fullmatch(r"[+-]?[0-9]+", cell.strip()) and len(cell) <= sys.get_int_max_str_digits():
        return int(cell)
    if kind == "number":
        try:
            return float(cell)
        except ValueError:
            return cell
    if kind == "boolean" and cell.strip().lower() in ("true", "false"):
        return cell.strip().lower() == "true"
    if kind == "list":
        return [item.strip() for item in cell.split(LIST_SEPARATOR)]
    return cell


class Layout:
    """The columns of one CSV file, checked once against the layout, turning rows into documents."""

    def __init__(self, header: list[str], columns: list[tuple[tuple, str]]):
        self.header = header
        self.columns = columns

    @classmethod
    def from_header(cls, header: list[str]) -> "Layout":
        """Check the header row: every column known, none twice, `local_ref` present."""
        errors, columns, seen = [], [], set()
        for number, name in enumerate(header, start=1):
            parsed = _parse_column(name)
            if parsed is None:
                errors.append(header_error(name, number, f"Unknown column `{name}`; see the CSV layout "
                                                         "in the README."))
            elif name in seen:
                errors.append(header_error(name, number, f"Column `{name}` appears twice."))
            seen.add(name)
            columns.append(parsed)
        if "local_ref" not in seen and not errors:
            errors.append(header_error("local_ref", 0, "The header has no `local_ref` column."))
        if errors:
            raise HeaderError(errors)
        return cls(header, columns)

    def document(self, cells: list[str]) -> tuple[dict | None, list[dict]]:
        """The operation document of one row, or the errors that stop it being read."""
        if len(cells) != len(self.columns):
            return None, [field_error("", f"The row has {len(cells)} cells; the header has {len(self.columns)}.",
                                      "csv")]
        document: dict = {}
        for (path, kind), cell in zip(self.columns, cells):
            if cell == "":
                continue
            target = document
            for step in path[:-1]:
                target = target.setdefault(step, {})  # a group is a dict by index until the row is read
            target[path[-1]] = _cell_value(kind, cell)
        errors: list[dict] = []
        _groups_to_lists(document, FIELDS, "", errors)
        return (None, errors) if errors else (document, [])


def _groups_to_lists(document: dict, fields: dict, prefix: str, errors: list[dict]) -> None:
    for name, value in document.items():
        kind = fields.get(name)
        if isinstance(kind, Group):
            present = sorted(value)
            gaps = [index for index in range(present[-1]) if index not in value]
            for gap in gaps:
                errors.append(field_error(f"{prefix}{name}.{gap}", f"Empty, but {prefix}{name}.{present[-1]} is "
                                          "filled: fill the groups from 0 without gaps.", "csv"))
            items = [value[index] for index in present]
            for index, item in zip(present, items):
                _groups_to_lists(item, kind.fields, f"{prefix}{name}.{index}.", errors)
            document[name] = items
        elif isinstance(kind, dict):
            _groups_to_lists(value, kind, f"{prefix}{name}.", errors)


def column_for(field: str) -> str | None:
    """The CSV column holding `field` (an error path such as `procedures.1` is in column `procedures`)."""
    parts = field.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if _parse_column(name) is not None:
            return name
    return None

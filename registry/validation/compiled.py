"""Compiled validation: the record schemas' own rules, run without marshmallow's per-field machinery.

The marshmallow schemas stay the one declaration of the contract (they generate openapi.yaml).
From each schema this module derives, once:

- its JSON Schema, by apispec's converter as for openapi.yaml (OpenAPI 3.1, so standard JSON
  Schema), compiled by `jsonschema-rs`: types, codes, ranges, lengths, list sizes, required and
  unknown fields are judged in Rust;
- a loader walking the document once with the schema's own fields, which builds what
  `schema.load` returns (dates parsed, refs normalised, defaults filled, `levels.from` as
  `from_`) and holds the few rules JSON Schema cannot say: an integer is not 12.0, text holds no
  control character, codes are distinct. Fields with logic of their own (refs, dates, decimals)
  are deserialised by their marshmallow field itself;
- then each object's `@validates`, `@validates_schema` and `@post_load` hooks of the schema are
  run on the loaded data, as marshmallow runs them: the cross-field rules
  (`registry.validation.rules`) are the same functions on both paths.

A document the fast path does not accept is loaded by marshmallow itself, which decides and
words the errors: rejections (rare, and the sender's to fix) cost what they cost before, and
the answer's errors are marshmallow's by construction. `tests/records/test_validator_parity.py`
checks with generated documents that the fast path accepts exactly what marshmallow accepts,
with the same result.
"""

import functools
import math

import jsonschema_rs
import marshmallow as ma
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow.decorators import POST_LOAD, VALIDATES, VALIDATES_SCHEMA

from registry.fields import Codes, Ref, StrictBoolean, Text, unstorable_text_error


class Refused(Exception):
    """The fast path does not accept this value: marshmallow judges the document."""


_REFUSED = Refused()


def json_schema(schema_class: type[ma.Schema]) -> dict:
    """The JSON Schema of what `schema_class` loads, as apispec writes it for OpenAPI 3.1: the
    schema as a `$ref` into the `components` of the same document."""
    plugin = MarshmallowPlugin()
    spec = APISpec("compiled validation", "1", "3.1.0", plugins=[plugin])
    name = schema_class.__name__.removesuffix("Schema") or schema_class.__name__
    spec.components.schema(name, schema=schema_class)
    return {"$ref": f"#/components/schemas/{name}", "components": spec.to_dict()["components"]}


# --- the loader ---------------------------------------------------------------------------------

def _text(field: ma.fields.String):
    def load(value):
        if type(value) is not str:
            raise _REFUSED
        if not value.isascii() or not value.isprintable():
            if unstorable_text_error(value):
                raise _REFUSED
        return value
    return load


def _code(value):
    if type(value) is not str:
        raise _REFUSED
    return value


def _integer(value):
    if type(value) is not int:  # not 12.0, not true
        raise _REFUSED
    return value


def _boolean(value):
    if value is not True and value is not False:
        raise _REFUSED
    return value


def _codes(value):
    if type(value) is not list or any(type(code) is not str for code in value) or len(set(value)) != len(value):
        raise _REFUSED
    return value


def _float(field: ma.fields.Float):
    """A decimal: a JSON number (a numeric string goes to marshmallow), finite, within the field's own validators."""
    def load(value):
        if type(value) is not float and type(value) is not int:
            raise _REFUSED
        try:
            value = float(value)
        except OverflowError:
            raise _REFUSED from None
        if not math.isfinite(value):
            raise _REFUSED
        try:
            for rule in field.validators:
                rule(value)
        except ma.ValidationError:
            raise _REFUSED from None
        return value
    return load


def _ref(field: Ref):
    """A ref: printable ASCII without surrounding spaces is already in its normal form with nothing
    forbidden (length is the JSON Schema's); anything else is the Ref field's to judge."""
    slow = _by_marshmallow(field)

    def load(value):
        if type(value) is str and value.isascii() and value.isprintable() and value == value.strip():
            return value
        return slow(value)
    return load


def _by_field(field: ma.fields.Field):
    """How the fast path loads one field's (non-null) value."""
    if isinstance(field, ma.fields.Nested):
        return _object_loader(field.schema)
    if isinstance(field, Codes):
        return _codes
    if isinstance(field, ma.fields.List) and isinstance(field.inner, ma.fields.Nested):
        item = _object_loader(field.inner.schema)

        def load_list(value):
            if type(value) is not list:
                raise _REFUSED
            return [item(element) for element in value]
        return load_list
    if isinstance(field, Ref):
        return _ref(field)
    if isinstance(field, Text):
        return _text(field)
    if type(field) is ma.fields.Float and not field.allow_nan:
        return _float(field)
    if type(field) is ma.fields.String and all(isinstance(rule, ma.validate.OneOf) for rule in field.validators):
        return _code  # the code's vocabulary is the JSON Schema's enum
    if isinstance(field, ma.fields.Integer) and field.strict:
        return _integer
    if isinstance(field, StrictBoolean):
        return _boolean
    return _by_marshmallow(field)


def _by_marshmallow(field: ma.fields.Field):
    """Refs, dates, decimals: the field's own deserialisation (its logic and validators)."""
    def load(value):
        try:
            return field.deserialize(value)
        except ma.ValidationError:
            raise _REFUSED from None
    return load


def _hooks(schema: ma.Schema):
    """The schema's own @validates, @validates_schema and @post_load hooks, called on the loaded
    data as marshmallow's load calls them (collection hooks first; a document is one item)."""
    def in_order(tag):
        hooks = sorted(schema._hooks[tag], key=lambda hook: not hook[1])
        return [(getattr(schema, name), options.get("pass_original", False)) for name, _, options in hooks]

    field_checks = [(getattr(schema, name), schema.fields[field_name].attribute or field_name,
                     schema.fields[field_name].data_key or field_name)
                    for name, _, options in schema._hooks[VALIDATES] for field_name in options["field_names"]]
    schema_checks, post_loads = in_order(VALIDATES_SCHEMA), in_order(POST_LOAD)
    if not (field_checks or schema_checks or post_loads):
        return None
    options = {"many": False, "partial": None, "unknown": schema.unknown}

    def run(result: dict, raw: dict) -> dict:
        try:
            for check, attribute, data_key in field_checks:
                if attribute in result:
                    check(result[attribute], data_key=data_key)
            for check, pass_original in schema_checks:
                if pass_original:
                    check(result, raw, **options)
                else:
                    check(result, **options)
            for process, pass_original in post_loads:
                result = process(result, raw, **options) if pass_original else process(result, **options)
        except ma.ValidationError:
            raise _REFUSED from None
        return result
    return run


def _object_loader(schema: ma.Schema):
    """A function loading one object of `schema` as `schema.load` would, or raising Refused."""
    if schema.unknown != ma.RAISE or schema.only or schema.exclude or schema.partial:
        raise ValueError(f"{type(schema).__name__}: the fast path loads whole documents refusing unknown fields")
    plan = []  # (key sent, attribute loaded, load, allows null, required, default)
    for name, field in schema.load_fields.items():
        default = field.load_default
        plan.append((field.data_key or name, field.attribute or name, _by_field(field), field.allow_none,
                     field.required, default))
    after = _hooks(schema)

    def load(raw):
        if type(raw) is not dict:
            raise _REFUSED
        result, taken = {}, 0
        for key, attribute, load_value, allow_none, required, default in plan:
            if key in raw:
                taken += 1
                value = raw[key]
                if value is None:
                    if not allow_none:
                        raise _REFUSED
                    result[attribute] = None
                else:
                    result[attribute] = load_value(value)
            elif required:
                raise _REFUSED
            elif default is not ma.missing:
                result[attribute] = default() if callable(default) else default
        if taken != len(raw):  # an unknown field
            raise _REFUSED
        return after(result, raw) if after else result
    return load


class CompiledSchema:
    """A whole-document load by `schema`'s rules: fast when the document is valid, marshmallow's
    own load (its decision, its errors) when it is not."""

    def __init__(self, schema: ma.Schema, marshmallow_load):
        self.validator = jsonschema_rs.validator_for(json_schema(type(schema)))
        self._load = _object_loader(schema)
        self._marshmallow_load = marshmallow_load

    def load(self, raw):
        try:
            if self.validator.is_valid(raw):
                return self._load(raw)
        except Refused:
            pass
        except (ValueError, OverflowError, TypeError):
            pass  # a value jsonschema-rs cannot take (a lone surrogate, a huge integer): marshmallow judges
        return self._marshmallow_load(raw)

    def fast_load(self, raw):
        """The fast path alone: the loaded document, or Refused (for the parity test)."""
        try:
            valid = self.validator.is_valid(raw)
        except (ValueError, OverflowError, TypeError):
            raise _REFUSED from None
        if not valid:
            raise _REFUSED
        return self._load(raw)


@functools.cache
def compiled(schema_class: type[ma.Schema]) -> CompiledSchema:
    """The compiled form of a schema class (built once per process, on first use)."""
    schema = schema_class()
    return CompiledSchema(schema, schema.marshmallow_load)


class CompiledLoading:
    """Mixin for a record schema: `load` of a whole document goes through its compiled form.

    Loads with options (partial, many, unknown, only, exclude: a PATCH, a query) are
    marshmallow's, unchanged.
    """

    def load(self, data, *, many=None, partial=None, unknown=None):
        if (many is None and partial is None and unknown is None and not self.many and not self.partial
                and not self.only and not self.exclude and self.unknown == ma.RAISE):
            return compiled(type(self)).load(data)
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def marshmallow_load(self, data):
        """marshmallow's own load of a whole document (what the compiled path falls back to)."""
        return super().load(data)


# --- dumping: the answer's document, as the schema dumps it ---------------------------------------

def _dump_value(field: ma.fields.Field):
    """How one field's (non-null) value is written: at once when it is already of the JSON type
    the field writes, else by the field itself."""
    if isinstance(field, ma.fields.Nested):
        return _object_dumper(field.schema)
    if isinstance(field, ma.fields.List) and isinstance(field.inner, ma.fields.Nested):
        item = _object_dumper(field.inner.schema)
        return lambda value: [item(element) for element in value]
    own = (str if type(field) in (ma.fields.String, Text, Ref) else
           int if isinstance(field, ma.fields.Integer) and not field.as_string else
           bool if isinstance(field, ma.fields.Boolean) else
           float if isinstance(field, ma.fields.Float) and not field.as_string else None)

    def dump(value):
        return value if own is not None and type(value) is own else field._serialize(value, None, None)
    return dump


def _object_dumper(schema: ma.Schema):
    if schema._hooks[ma.decorators.PRE_DUMP] or schema._hooks[ma.decorators.POST_DUMP] or schema.only or schema.exclude:
        raise ValueError(f"{type(schema).__name__}: the fast path dumps plain schemas")
    plan = [(field.data_key or name, field.attribute or name, _dump_value(field), field.dump_default)
            for name, field in schema.dump_fields.items()]

    def dump(obj: dict) -> dict:
        result = {}
        for key, attribute, dump_value, default in plan:
            value = obj.get(attribute, ma.missing)
            if value is ma.missing:
                if default is ma.missing:
                    continue
                value = default() if callable(default) else default
            result[key] = None if value is None else dump_value(value)
        return result
    return dump


@functools.cache
def compiled_dumper(schema_class: type[ma.Schema]):
    """`schema_class().dump` of one dict, without marshmallow's per-field machinery (built once)."""
    return _object_dumper(schema_class())


class CompiledDumping:
    """Mixin for a record schema: `dump` of one document goes through `compiled_dumper`."""

    def dump(self, obj, *, many=None):
        if many is None and not self.many and not self.only and not self.exclude and isinstance(obj, dict):
            return compiled_dumper(type(self))(obj)
        return super().dump(obj, many=many)

    def marshmallow_dump(self, obj):
        return super().dump(obj)

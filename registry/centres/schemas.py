"""Wire contract for centres."""

import marshmallow as ma
from marshmallow import validate

from registry.fields import Text


class CentreCreateSchema(ma.Schema):
    code = ma.fields.String(required=True, validate=validate.Regexp(
        r"^[A-Z0-9][A-Z0-9_-]{1,31}$",
        error="Use 2 to 32 upper-case letters, digits, '-' or '_', starting with a letter or digit."))
    name = Text(200, min_length=1, required=True)


class CentreSchema(CentreCreateSchema):
    id = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)

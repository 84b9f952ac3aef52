"""Wire contract for bearer tokens."""

import marshmallow as ma
from marshmallow import validate

from registry.fields import Integer, Text
from registry.pagination import PageQuerySchema
from registry.vocabulary import ROLE


class TokenQuerySchema(PageQuerySchema):
    centre_id = Integer(1, 2**62, strict=False)
    role = ma.fields.String(validate=validate.OneOf(list(ROLE)))
    revoked = ma.fields.Boolean(metadata={"description": "true: only revoked tokens; false: only live ones"})
    issued_by_token_id = Integer(1, 2**62, strict=False, metadata={"description": "Only tokens this token issued"})


class TokenCreateSchema(ma.Schema):
    centre_id = Integer(1, 2**62, required=True, metadata={"description": "The token's centre"})
    role = ma.fields.String(required=True, validate=validate.OneOf(list(ROLE)))
    label = Text(200, allow_none=True, metadata={"description": "Who holds the token"})


class TokenSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    centre_id = ma.fields.Integer()
    role = ma.fields.String()
    label = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(metadata={"description": "When it was issued"})
    issued_by_token_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "The token that issued it; null when issued from the command line"})
    revoked_at = ma.fields.DateTime(allow_none=True)
    revoked_by_token_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "The token that revoked it; null when live, or revoked from the command line"})


class IssuedTokenSchema(TokenSchema):
    token = ma.fields.String(metadata={"description": "The bearer token: shown once, never again"})

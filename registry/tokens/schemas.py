"""Wire contract for bearer tokens."""

import marshmallow as ma
from marshmallow import validate

from registry.fields import Integer, Text
from registry.pagination import PageQuerySchema
from registry.tokens.store import DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS
from registry.vocabulary import ROLE

# expires_in_days: 3650 is the bound TOKEN_MAX_DAYS may be set to; the view checks the configured one.


class TokenQuerySchema(PageQuerySchema):
    centre_id = Integer(1, 2**62, strict=False)
    role = ma.fields.String(validate=validate.OneOf(list(ROLE)))
    revoked = ma.fields.Boolean(metadata={"description": "true: only revoked tokens; false: only unrevoked ones "
                                                         "(expired or not: see `expired`)"})
    issued_by_token_id = Integer(1, 2**62, strict=False, metadata={"description": "Only tokens this token issued"})
    expired = ma.fields.Boolean(metadata={
        "description": "true: only tokens past their expiry (or their rotation's grace period); false: only unexpired"})


class TokenCreateSchema(ma.Schema):
    centre_id = Integer(1, 2**62, required=True, metadata={"description": "The token's centre"})
    role = ma.fields.String(required=True, validate=validate.OneOf(list(ROLE)))
    label = Text(200, allow_none=True, metadata={"description": "Who holds the token"})
    expires_in_days = Integer(1, 3650, metadata={
        "description": "Days until it expires: TOKEN_DEFAULT_DAYS (90) when absent, at most TOKEN_MAX_DAYS (365)"})


class TokenRotateSchema(ma.Schema):
    label = Text(200, allow_none=True, metadata={"description": "Who holds the successor; absent: the rotated "
                                                                "token's label"})
    grace_hours = Integer(0, MAX_GRACE_HOURS, load_default=DEFAULT_GRACE_HOURS, metadata={
        "description": "Hours the rotated token keeps working next to its successor (0: it stops now)"})
    expires_in_days = Integer(1, 3650, metadata={
        "description": "Days until the successor expires: TOKEN_DEFAULT_DAYS (90) when absent, at most "
                       "TOKEN_MAX_DAYS (365). Only for a token that may issue the rotated token's role: a "
                       "token rotating itself otherwise gets a successor that expires when it would have"})


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
    expires_at = ma.fields.DateTime(metadata={
        "description": "When it stops working; for a rotated token, the end of the rotation's grace period"})
    last_used_at = ma.fields.DateTime(allow_none=True, metadata={
        "description": "When a request last authenticated with it, to the minute; null: never"})
    successor_token_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "The token that replaced it by rotation; null when not rotated"})


class IssuedTokenSchema(TokenSchema):
    token = ma.fields.String(metadata={"description": "The bearer token: shown once, never again"})


class RotatedTokenSchema(IssuedTokenSchema):
    replaced = ma.fields.Nested(TokenSchema, metadata={
        "description": "The rotated token: its expires_at is now the end of the grace period"})

"""Marshmallow fields shared by the record schemas: the registry's rules for text, codes and dates."""

import datetime as dt
import re
import unicodedata

import marshmallow as ma
from marshmallow import validate

# NUL cannot be stored in PostgreSQL text, and other control characters in a clinical field are
# always a transmission error; tab and newline are fine in free text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A lone UTF-16 surrogate (JSON's "\ud800") is no character at all: it cannot be encoded in UTF-8,
# so neither PostgreSQL nor any reader of an export could take it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# Characters a ref may not hold, by Unicode category: control (Cc), format (Cf: zero-width
# spaces and joiners, bidi overrides, soft hyphen, BOM), surrogate (Cs), private use (Co),
# unassigned (Cn), line and paragraph separators (Zl, Zp). Each is invisible or shown differently
# by every system, so two refs that look the same would name two patients.
REF_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def unstorable_text_error(text: str) -> str | None:
    """Why `text` cannot be stored as free text (control character, lone surrogate), or None."""
    if _CONTROL.search(text):
        return "Control characters (such as NUL) are not allowed."
    if _SURROGATE.search(text):
        return "Not valid Unicode: a lone surrogate (such as \\ud800) is not a character."
    return None


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD: for echoing what a sender wrote
    (a refused local_ref, an unknown key) into stored reports, which PostgreSQL must accept."""
    return _UNSTORABLE.sub("\ufffd", text)


def normal_ref(ref: str) -> str:
    """A ref in its one canonical form, Unicode NFKC: NFC and NFD spellings of "é", full-width
    "０１" and "01", a no-break space and a space all become the same ref. Used wherever a ref or
    local_ref is stored, hashed or looked up, so a ref has one identity however it was typed."""
    return ref if ref.isascii() else unicodedata.normalize("NFKC", ref)


def forbidden_ref_character(ref: str) -> str | None:
    """The first invisible or control character of a ref (see REF_FORBIDDEN_CATEGORIES), or None."""
    if ref.isascii():
        return next((char for char in ref if char < " " or char == "\x7f"), None)
    return next((char for char in ref if unicodedata.category(char) in REF_FORBIDDEN_CATEGORIES), None)


class Text(ma.fields.String):
    """Free text, stored verbatim: bounded length, no control characters, no lone surrogates."""

    def __init__(self, max_length: int, *, min_length: int = 0, **kwargs):
        super().__init__(validate=validate.Length(min=min_length, max=max_length), **kwargs)
        self.metadata.setdefault("maxLength", max_length)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = unstorable_text_error(text)
        if problem:
            raise ma.ValidationError(problem)
        return text


class Ref(Text):
    """A centre's own identifier (patient ref, local_ref): 1–100 characters once normalised to NFKC
    (see `normal_ref`), no invisible or control characters, no surrounding whitespace."""

    def __init__(self, **kwargs):
        super().__init__(100, min_length=1, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = normal_ref(super()._deserialize(value, attr, data, **kwargs))
        forbidden = forbidden_ref_character(text)
        if forbidden is not None:
            raise ma.ValidationError(f"Invisible or control character U+{ord(forbidden):04X} "
                                     f"({unicodedata.name(forbidden, 'unnamed')}) is not allowed in a ref.")
        if text != text.strip():
            raise ma.ValidationError("Must not start or end with whitespace.")
        return text


def Code(vocabulary, **kwargs) -> ma.fields.String:
    """One code of a controlled vocabulary (see /v1/vocabularies)."""
    return ma.fields.String(validate=validate.OneOf(list(vocabulary)), **kwargs)


class Codes(ma.fields.List):
    """A list of distinct codes of one vocabulary."""

    def __init__(self, vocabulary, *, max_items: int = 30, min_items: int = 0, **kwargs):
        super().__init__(Code(vocabulary), validate=validate.Length(min=min_items, max=max_items), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        codes = super()._deserialize(value, attr, data, **kwargs)
        if len(set(codes)) != len(codes):
            raise ma.ValidationError("Each code may appear only once.")
        return codes


class PastDate(ma.fields.Date):
    """An ISO date that is not in the future and not before 1900."""

    def _deserialize(self, value, attr, data, **kwargs):
        date = super()._deserialize(value, attr, data, **kwargs)
        if date > dt.date.today():
            raise ma.ValidationError("Must not be in the future.")
        if date.year < 1900:
            raise ma.ValidationError("Must not be before 1900.")
        return date


class HalfPointScore(ma.fields.Float):
    """A score in half points between 0 and `maximum` (the 17-point JOA allows halves)."""

    def __init__(self, maximum: int, **kwargs):
        super().__init__(validate=validate.Range(0, maximum), allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        score = super()._deserialize(value, attr, data, **kwargs)
        if score * 2 != int(score * 2):
            raise ma.ValidationError("Must be a whole or half point.")
        return score


class Integer(ma.fields.Integer):
    """A strict integer within a range: no "12" strings, no 12.5, no true/false.

    Query-string parameters are text by nature: declare them with strict=False.
    """

    def __init__(self, minimum: int, maximum: int, *, strict: bool = True, **kwargs):
        super().__init__(strict=strict, validate=validate.Range(minimum, maximum), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(ma.fields.Boolean):
    """true or false only: no "yes", 1 or "t"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is not True and value is not False:
            raise self.make_error("invalid", input=value)
        return value

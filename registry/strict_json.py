"""Reading JSON bodies strictly: what Python's parser lets through or trips over becomes a field error.

The standard library's decoder keeps the last of two equal keys (`{"ref": "A", "ref": "B"}` is
silently `{"ref": "B"}`), and refuses an integer of more than `sys.get_int_max_str_digits()`
(4,300) digits with a bare ValueError that names no field. Both are the sender's mistakes, so
both are answered as field errors with a JSON pointer to the key or the number:

- a single-record body is checked once, before its view runs (`check_body`), and refused with
  422 (`invalid-input`), or 400 (`malformed-request`) when it is not JSON at all;
- a bulk submission decodes element by element with `StrictDecoder`, and a duplicated key or a
  too-long number is the error of that element only.

The common case costs one small Python call per object (the duplicate check); the tree is only
walked to find where the fault is when there is one.
"""

import json
import sys

from registry.problems import InvalidInput, Problem, field_error


class _TooLongNumber:
    """Stands in for an integer too long to convert, so its place in the document can be found."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _marked_int(text: str):
    digits = len(text.lstrip("-"))
    return _TooLongNumber(digits) if digits > sys.get_int_max_str_digits() else int(text)


class StrictDecoder:
    """`raw_decode` that also answers the field errors of duplicated keys and too-long numbers.

    One decoder per reader (it keeps state between the hook calls of one decode): not thread-safe.
    """

    def __init__(self):
        self._duplicated: list[tuple[dict, list[str]]] = []
        self._fast = json.JSONDecoder(object_pairs_hook=self._object)
        self._marking = json.JSONDecoder(object_pairs_hook=self._object, parse_int=_marked_int)

    def _object(self, pairs: list) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen, repeated = set(), []
            for key, _ in pairs:
                if key in seen and key not in repeated:
                    repeated.append(key)
                seen.add(key)
            self._duplicated.append((obj, repeated))
        return obj

    def raw_decode(self, text: str, pos: int = 0) -> tuple[object, int, list[dict]]:
        """(value, end, field errors) of the JSON value at `pos`; JSONDecodeError as json's own."""
        self._duplicated = []
        try:
            value, end = self._fast.raw_decode(text, pos)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer over the conversion limit: decode again, marking it
            self._duplicated = []
            value, end = self._marking.raw_decode(text, pos)
            return value, end, _errors(value, self._duplicated, marked=True)
        return value, end, _errors(value, self._duplicated, marked=False) if self._duplicated else []


def _pointer(path: tuple) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _error(path: tuple, message: str) -> dict:
    return field_error(".".join(map(str, path)), message) | {"pointer": _pointer(path)}


def _errors(value, duplicated: list[tuple[dict, list[str]]], *, marked: bool) -> list[dict]:
    """The field errors of a decoded value: its duplicated keys and numbers too long to read."""
    repeated_in = {id(obj): keys for obj, keys in duplicated}
    errors = []
    stack = [(value, ())]  # iterative: a document may be nested as deep as the parser allows
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key in repeated_in.get(id(node), ()):
                errors.append(_error(path + (key,), "This key appears more than once in its object: send it once."))
            stack.extend((child, path + (key,)) for key, child in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((child, path + (index,)) for index, child in reversed(list(enumerate(node))))
        elif marked and isinstance(node, _TooLongNumber):
            errors.append(_error(path, f"A number of {node.digits} digits is too long to read "
                                       f"(at most {sys.get_int_max_str_digits()})."))
    return errors


def check_body(data: bytes) -> None:
    """Refuse a single-record JSON body that json.loads would misread or fail on.

    400 when it is not UTF-8 JSON (as webargs would answer, which reads the body next), 422
    naming each duplicated key and too-long number; nothing when the body is sound.
    """
    try:
        text = data.decode("utf-8")
        value, end, errors = StrictDecoder().raw_decode(text, _skip_space(text, 0))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.msg
        raise _malformed(f"Invalid JSON body: {reason}.") from None
    except RecursionError:  # thousands of nested [[[ or {{{
        raise _malformed("Nested too deeply.") from None
    if _skip_space(text, end) != len(text):
        raise _malformed("Invalid JSON body: extra data after the value.")
    if errors:
        raise InvalidInput([dict(error, location="json") for error in errors])


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _malformed(message: str) -> Problem:
    return Problem(400, "The body is not valid JSON.", slug="malformed-request",
                   errors=[field_error("", message, "json")])

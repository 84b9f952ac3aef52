"""Safe retries: `Idempotency-Key` on POST returns the first answer again, never a second write.

The key row is inserted in the same transaction as the write it guards. A concurrent request
with the same key blocks on the key's unique index until the first commits, then finds the
stored answer and replays it; if the first fails, its key row vanishes with its rollback and
the retry runs as new. Only successful answers are stored: a refused request can be retried.

What is stored lets no patient ref be recovered without REGISTRY_SECRET (`registry.keys`):
- the key and the request's fingerprint (method, path, query, media type, body) are HMACs under
  keys derived from the secret, so hashing guessed bodies against a backup confirms nothing
  (and a client that puts a ref in its key gives nothing away either);
- the answer is kept as the exact bytes first sent, with each patient ref it echoes cut out
  (replaced by a placeholder naming which ref of the request it was). A replay checks that the
  retried request is byte-identical (same fingerprint), so it carries the same refs, and puts
  them back: the retry gets exactly the bytes of the first answer, not a re-serialisation.

An erasure (`patients.store.erase_patient`) drops the stored answers naming the erased patient
or its operations and marks their keys: a retry with such a key is refused (410), never
replayed and never run again, so no retry brings the erased records back.
"""

import json
import re
from functools import wraps
from itertools import repeat

from flask import Response, current_app, g, make_response, request

from registry import keys
from registry.auth import authenticate, bearer_token, hash_token
from registry.db import database
from registry.fields import normal_ref
from registry.problems import InvalidInput, Problem, field_error

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_KEPT_HEADERS = ("Location", "ETag", "Content-Type")
# A JSON text never holds a raw NUL byte, so "\0<n>\0" cannot clash with the answer's own bytes.
_PLACEHOLDER = re.compile(rb"\x00(\d+)\x00")

IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header", "name": HEADER, "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": "Retry-safe POST: the same key with the same body returns the first answer again (the same "
                   "bytes) without a second write; the same key with another body is refused (422); a key whose "
                   "records were erased since is refused (410).",
}


def _request_fingerprint() -> bytes:
    return keys.keyed_digest(keys.REQUEST_FINGERPRINT, request.method.encode(), request.path.encode(),
                             request.query_string, (request.mimetype or "").encode(),
                             request.get_data(cache=True))


def _members(node):
    """(name, value) of every object member of a JSON document, at any depth, in document order
    (a member, then the members inside its value, then the next member: stored answers number
    the refs in this order). Iterative: a recursive generator costs a frame per level per member."""
    stack = [_items(node)]
    while stack:
        for name, value in stack[-1]:
            if name is not None:
                yield name, value
            if isinstance(value, (dict, list)):
                stack.append(_items(value))
                break
        else:
            stack.pop()


def _items(node):
    return iter(node.items()) if isinstance(node, dict) else zip(repeat(None), node) if isinstance(node, list) else iter(())


def _ref_values(body) -> list[str]:
    """The values of every `ref` member of a JSON document, at any depth, in document order."""
    return [value for name, value in _members(body) if name == "ref" and isinstance(value, str)]


def _request_refs() -> list[str]:
    """The refs of the request body, as sent and in their normal form (which answers echo), each
    once, in a fixed order: a byte-identical retry yields the same list."""
    refs = []
    for ref in _ref_values(request.get_json(silent=True)):
        for form in (ref, normal_ref(ref)):
            if form not in refs:
                refs.append(form)
    return refs


def _encoded(ref: str) -> bytes:
    """The ref as the app's JSON encoder writes it inside an answer (quotes included)."""
    return current_app.json.dumps(ref).encode()


class _Found:
    """What the objects of a JSON answer hold, gathered by one parse (`_found`): the values of
    every `ref` member and the patient and operation ids named, at any depth. An object_hook
    costs a Python call per object, where walking the parsed answer costs one per member."""

    def __init__(self):
        self.refs, self.patient_ids, self.operation_ids = [], set(), set()

    def __call__(self, node: dict) -> dict:
        ref, patient = node.get("ref"), node.get("patient")
        if isinstance(ref, str):
            self.refs.append(ref)
        if isinstance(node.get("patient_id"), int):
            self.patient_ids.add(node["patient_id"])
        if isinstance(node.get("operation_id"), int):
            self.operation_ids.add(node["operation_id"])
        if isinstance(patient, dict) and isinstance(patient.get("id"), int):
            self.patient_ids.add(patient["id"])
        if isinstance(node.get("location"), str):
            # a FHIR transaction-response entry: Patient/7/_history/1, Procedure/12/_history/3
            resource_type, _, rest = node["location"].partition("/")
            number = rest.partition("/")[0]
            if number.isascii() and number.isdigit() and resource_type in ("Patient", "Procedure"):
                (self.patient_ids if resource_type == "Patient" else self.operation_ids).add(int(number))
        return node


def _found(data: bytes) -> tuple[object, _Found]:
    """(the parsed JSON answer or None when it is not JSON, what its objects hold)."""
    found = _Found()
    try:
        return json.loads(data, object_hook=found), found
    except ValueError:
        return None, _Found()


def _without_refs(body: bytes, echoed: list[str]) -> bytes | None:
    """The answer's bytes with every ref it echoes replaced by a placeholder; None when a ref of
    the answer is not one of the request's (it could not be put back, so nothing is stored)."""
    if not echoed:
        return body
    sent = _request_refs()
    template = body
    for ref in dict.fromkeys(echoed):
        if ref not in sent:
            return None
        template = template.replace(_encoded(ref), b"\x00%d\x00" % sent.index(ref))
    # every ref is gone: with the placeholders as empty strings, each `ref` of the answer is empty
    if any(_found(_PLACEHOLDER.sub(b'""', template))[1].refs):
        return None
    return template


def _with_refs(template: bytes) -> bytes:
    """The first answer's bytes again: the request's refs put back where they were cut out."""
    if b"\x00" not in template:
        return template
    sent = _request_refs()
    return _PLACEHOLDER.sub(lambda match: _encoded(sent[int(match.group(1))]), template)


def _named_records(answer, found: _Found, location: str) -> tuple[list[int], list[int]]:
    """(patient ids, operation ids) an answer names, so that erasing one finds the answer."""
    patient_ids, operation_ids = found.patient_ids, found.operation_ids
    if isinstance(answer, dict) and isinstance(answer.get("id"), int):
        if location.startswith("/v1/patients/"):
            patient_ids.add(answer["id"])
        elif location.startswith("/v1/operations/") and "/follow-ups" not in location:
            operation_ids.add(answer["id"])
    return sorted(patient_ids), sorted(operation_ids)


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= MAX_KEY_LENGTH and key.isprintable()


_CLAIM = """INSERT INTO idempotency_keys (centre_id, key_hash, request_hash) VALUES (%s, %s, %s)
            ON CONFLICT DO NOTHING RETURNING key_hash"""
# The same claim for the centre of the request's token, sent before the token lookup and read with
# it: in a pipelined write, one round trip for both. A token that is unknown, revoked or expired
# claims nothing here, and is refused (401) by the lookup: the request's transaction rolls back.
_CLAIM_WITH_TOKEN = """INSERT INTO idempotency_keys (centre_id, key_hash, request_hash)
                       SELECT centre_id, %s, %s FROM tokens
                       WHERE token_hash = %s AND revoked_at IS NULL AND expires_at > now()
                       ON CONFLICT DO NOTHING RETURNING key_hash"""


def _send_claim(conn) -> None:
    """`require`'s hook, run in a pipelined write's transaction before the token lookup."""
    key, token = request.headers.get(HEADER), bearer_token()
    if key is None or token is None or not _valid_key(key):
        return  # the view claims as usual, after the token's own checks
    key_hash, fingerprint = keys.keyed_digest(keys.IDEMPOTENCY_KEY, key.encode()), _request_fingerprint()
    g.idempotency_claim = (key_hash, fingerprint, conn.execute(_CLAIM_WITH_TOKEN,
                                                                (key_hash, fingerprint, hash_token(token))))


def idempotent(view):
    """Decorate a POST view so an Idempotency-Key makes retries safe (see module docstring)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        with database().request_transaction() as conn:
            principal = authenticate()
            if not _valid_key(key):
                raise InvalidInput([field_error(HEADER, f"Must be 1–{MAX_KEY_LENGTH} printable characters.",
                                                "headers")])
            sent = g.pop("idempotency_claim", None)
            if sent is not None:  # sent with the token lookup, its answer already here
                key_hash, fingerprint, cursor = sent
            else:
                key_hash = keys.keyed_digest(keys.IDEMPOTENCY_KEY, key.encode())
                fingerprint = _request_fingerprint()
                cursor = conn.execute(_CLAIM, (principal.centre_id, key_hash, fingerprint))
            if cursor.fetchone() is None:
                return _replay(conn, principal.centre_id, key_hash, fingerprint)
            response = make_response(view(*args, **kwargs))
            if response.status_code < 300:
                _store(conn, principal.centre_id, key_hash, response)
            return response

    wrapper.before_token_lookup = _send_claim
    return wrapper


def _store(conn, centre_id: int, key_hash: bytes, response: Response) -> None:
    body = response.get_data()
    answer, found = _found(body) if response.is_json else (None, _Found())
    template = _without_refs(body, found.refs)
    if template is None:
        # cannot happen with the API's answers; were it to, the key is forgotten rather than
        # a ref stored in clear, and a retry runs again (every POST here is an upsert)
        conn.execute("DELETE FROM idempotency_keys WHERE centre_id = %s AND key_hash = %s", (centre_id, key_hash))
        return
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    patient_ids, operation_ids = _named_records(answer, found, headers.get("Location", ""))
    conn.execute(
        """UPDATE idempotency_keys SET status_code = %s, response_bytes = %s, response_headers = %s::jsonb,
                  patient_ids = %s, operation_ids = %s
           WHERE centre_id = %s AND key_hash = %s""",
        (response.status_code, template, current_app.json.dumps(headers), patient_ids, operation_ids,
         centre_id, key_hash),
    )


def _replay(conn, centre_id: int, key_hash: bytes, fingerprint: bytes) -> Response:
    stored = conn.execute(
        "SELECT request_hash, status_code, response_bytes, response_headers, erased_at FROM idempotency_keys"
        " WHERE centre_id = %s AND key_hash = %s", (centre_id, key_hash)).fetchone()
    if bytes(stored["request_hash"]) != fingerprint:
        raise InvalidInput([field_error(HEADER, "This key was used for a different request; use a new key.",
                                        "headers")], detail="Idempotency-Key reused with another request.")
    if stored["erased_at"] is not None:
        raise Problem(410, "The records this request wrote were erased since (right to erasure): it is neither "
                           "replayed nor run again.", slug="erased",
                      errors=[field_error(HEADER, "Its records were erased; a new request needs a new key.",
                                          "headers")])
    response = current_app.response_class(_with_refs(bytes(stored["response_bytes"] or b"")),
                                          status=stored["status_code"])
    response.headers.update(stored["response_headers"])
    response.headers[REPLAYED_HEADER] = "true"
    return response

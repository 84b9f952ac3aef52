"""Safe retries: `Idempotency-Key` on POST returns the first answer again, never a second write.

The key row is inserted in the same transaction as the write it guards. A concurrent request
with the same key blocks on the key's unique index until the first commits, then finds the
stored answer and replays it; if the first fails, its key row vanishes with its rollback and
the retry runs as new. Only successful answers are stored: a refused request can be retried.

Patient refs are never stored in clear, not even here: the stored answer has them removed,
and a replay puts back the ones of the (byte-identical) retried request.
"""

import hashlib
import json
from functools import wraps

from flask import Response, make_response, request

from registry.auth import authenticate
from registry.db import database
from registry.problems import InvalidInput, field_error

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_KEPT_HEADERS = ("Location", "ETag", "Content-Type")

IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header", "name": HEADER, "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": "Retry-safe POST: the same key with the same body returns the first answer again "
                   "without a second write; the same key with another body is refused (422).",
}


def _request_fingerprint() -> bytes:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode(), request.mimetype):
        digest.update(part.encode() + b"\0")
    digest.update(request.get_data(cache=True))
    return digest.digest()


def _without_refs(body):
    """The answer minus patient refs: `ref` at the top and inside `patient`, at any list depth."""
    if isinstance(body, list):
        return [_without_refs(item) for item in body]
    if isinstance(body, dict):
        return {key: _without_refs(value) for key, value in body.items() if key != "ref"}
    return body


def _with_refs(stored, sent):
    """Put back the refs of the request into a stored answer (same shape as `_without_refs` removed)."""
    if isinstance(stored, list) and isinstance(sent, list):
        return [_with_refs(item, sent[index] if index < len(sent) else None) for index, item in enumerate(stored)]
    if isinstance(stored, dict):
        restored = {key: _with_refs(value, sent.get(key) if isinstance(sent, dict) else None)
                    for key, value in stored.items()}
        if isinstance(sent, dict) and "ref" in sent:
            restored["ref"] = sent["ref"]
        return restored
    return stored


def idempotent(view):
    """Decorate a POST view so an Idempotency-Key makes retries safe (see module docstring)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        with database().request_transaction() as conn:
            principal = authenticate()
            if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
                raise InvalidInput([field_error(HEADER, f"Must be 1–{MAX_KEY_LENGTH} printable characters.",
                                                "headers")])
            fingerprint = _request_fingerprint()
            claimed = conn.execute(
                """INSERT INTO idempotency_keys (centre_id, key, request_hash) VALUES (%s, %s, %s)
                   ON CONFLICT DO NOTHING RETURNING key""",
                (principal.centre_id, key, fingerprint),
            ).fetchone()
            if claimed is None:
                return _replay(conn, principal.centre_id, key, fingerprint)
            response = make_response(view(*args, **kwargs))
            if response.status_code < 300:
                _store(conn, principal.centre_id, key, response)
            return response

    return wrapper


def _store(conn, centre_id: int, key: str, response: Response) -> None:
    body = response.get_json(silent=True)
    conn.execute(
        """UPDATE idempotency_keys SET status_code = %s, response_body = %s::jsonb, response_headers = %s::jsonb
           WHERE centre_id = %s AND key = %s""",
        (response.status_code, json.dumps(_without_refs(body)),
         json.dumps({name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}),
         centre_id, key),
    )


def _replay(conn, centre_id: int, key: str, fingerprint: bytes) -> Response:
    stored = conn.execute(
        "SELECT request_hash, status_code, response_body, response_headers FROM idempotency_keys"
        " WHERE centre_id = %s AND key = %s", (centre_id, key)).fetchone()
    if bytes(stored["request_hash"]) != fingerprint:
        raise InvalidInput([field_error(HEADER, "This key was used for a different request; use a new key.",
                                        "headers")], detail="Idempotency-Key reused with another request.")
    body = _with_refs(stored["response_body"], request.get_json(silent=True))
    response = make_response(json.dumps(body), stored["status_code"])
    response.headers.update(stored["response_headers"])
    response.headers[REPLAYED_HEADER] = "true"
    return response

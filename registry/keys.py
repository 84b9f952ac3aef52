"""Keys derived from REGISTRY_SECRET, one per purpose.

Whatever the registry stores about a ref (or about a request or answer that held one) is keyed
by the secret, so a database or backup without the secret confirms no ref by hashing guesses.
Each use has its own key, derived from the secret by HMAC with the purpose's name, so a digest
made for one use (an idempotency fingerprint) can never be matched against another (a tombstone).
"""

import functools
import hmac

from flask import current_app

# The purposes; renaming one changes its key and so forgets what was stored under it.
IDEMPOTENCY_KEY = "idempotency-key"
REQUEST_FINGERPRINT = "idempotency-request-fingerprint"
ERASED_PATIENT = "erased-patient-tombstone"


def purpose_key(purpose: str) -> bytes:
    """The key for one purpose, derived from REGISTRY_SECRET."""
    return _derived_key(current_app.config["REGISTRY_SETTINGS"].registry_secret, purpose)


@functools.lru_cache(maxsize=64)
def _derived_key(secret: bytes, purpose: str) -> bytes:
    # cached: a bulk submission derives the same key for each of its records
    return hmac.digest(secret, b"registry key for " + purpose.encode(), "sha256")


def keyed_digest(purpose: str, *parts: bytes) -> bytes:
    """HMAC-SHA-256 of the parts under the purpose's key; parts are length-prefixed, so no two
    different lists of parts give the same message."""
    message = b"".join(len(part).to_bytes(8, "big") + part for part in parts)
    return hmac.digest(purpose_key(purpose), message, "sha256")

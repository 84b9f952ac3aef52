"""Keys derived from REGISTRY_SECRET, one per purpose.

Whatever the registry stores about a ref (or about a request or answer that held one) is keyed
by the secret, so a database or backup without the secret confirms no ref by hashing guesses.
Each use has its own key, derived from the secret by HMAC with the purpose's name, so a digest
made for one use (an idempotency fingerprint) can never be matched against another (a tombstone).
"""

import hashlib
import hmac

from flask import current_app

# The purposes; renaming one changes its key and so forgets what was stored under it.
IDEMPOTENCY_KEY = "idempotency-key"
REQUEST_FINGERPRINT = "idempotency-request-fingerprint"
ERASED_PATIENT = "erased-patient-tombstone"


def purpose_key(purpose: str) -> bytes:
    """The key for one purpose, derived from REGISTRY_SECRET."""
    secret = current_app.config["REGISTRY_SETTINGS"].registry_secret
    return hmac.new(secret, b"registry key for " + purpose.encode(), hashlib.sha256).digest()


def keyed_digest(purpose: str, *parts: bytes) -> bytes:
    """HMAC-SHA-256 of the parts under the purpose's key; parts are length-prefixed, so no two
    different lists of parts give the same message."""
    mac = hmac.new(purpose_key(purpose), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.digest()

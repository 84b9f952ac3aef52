"""The dashboard's sign-in session: a signed cookie holding the bearer token, and a form token.

The cookie is Flask's signed session cookie (itsdangerous, HMAC-SHA-256), signed with a key
derived from REGISTRY_SECRET for this purpose only (`registry.keys.purpose_key`), so no second
secret has to be configured and a cookie signed for one registry is worthless at another.
It is sent only to /dashboard paths, never read by JavaScript (HttpOnly), never sent on a
request started by another site (SameSite=Strict), and in production only over HTTPS (Secure).
Everywhere else (the /v1 API, /fhir, /metrics) there is no session at all.

Signed is not encrypted: the cookie carries the token as the browser's own credential, exactly
as the Authorization header would; what the signature adds is that nobody can forge or alter it.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

from registry.keys import purpose_key

PREFIX = "/dashboard"
COOKIE_NAME = "registry_dashboard"
SIGNING_PURPOSE = "dashboard-session-cookie"
# A signed-in session lasts a working day at most; the token's own expiry and revocation apply
# at every request before that.
MAX_AGE = timedelta(hours=8)
CSRF_FIELD = "csrf_token"


def secure_cookie(app) -> bool:
    """Whether the cookie is marked Secure (sent over HTTPS only).

    Decided, first that says: the app's config `DASHBOARD_SECURE_COOKIE` (True/False), the
    setting `dashboard_secure_cookie` (DASHBOARD_SECURE_COOKIE), else on in production
    (REGISTRY_ENV=production) and off in development, where `make serve` answers plain http on
    127.0.0.1.
    """
    settings = app.config["REGISTRY_SETTINGS"]
    for chosen in (app.config.get("DASHBOARD_SECURE_COOKIE"), settings.dashboard_secure_cookie):
        if chosen is not None:
            return bool(chosen)
    return settings.environment == "production"


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, for /dashboard only, with the dashboard's key and cookie flags."""

    salt = "registry-dashboard-session"
    digest_method = staticmethod(hashlib.sha256)

    def get_signing_serializer(self, app):
        return URLSafeTimedSerializer(purpose_key(SIGNING_PURPOSE), salt=self.salt, serializer=self.serializer,
                                      signer_kwargs={"key_derivation": self.key_derivation,
                                                     "digest_method": self.digest_method})

    def open_session(self, app, request):
        if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
            return None  # a null session: the API never has one
        cookie = request.cookies.get(COOKIE_NAME)
        if not cookie:
            return self.session_class()
        try:
            return self.session_class(self.get_signing_serializer(app).loads(
                cookie, max_age=int(MAX_AGE.total_seconds())))
        except BadSignature:  # forged, altered, signed under another secret, or older than MAX_AGE
            return self.session_class()

    def get_cookie_name(self, app) -> str:
        return COOKIE_NAME

    def get_cookie_path(self, app) -> str:
        return PREFIX

    def get_cookie_domain(self, app):
        return None  # the host that set it, and only that host

    def get_cookie_httponly(self, app) -> bool:
        return True

    def get_cookie_samesite(self, app) -> str:
        return "Strict"

    def get_cookie_secure(self, app) -> bool:
        return secure_cookie(app)


def csrf_token(session) -> str:
    """The session's form token, made on first use: every dashboard form that changes state
    carries it, and the POST is refused unless it matches."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def csrf_matches(session, sent: str | None) -> bool:
    expected = session.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(expected.encode(), sent.encode())


def install(app) -> None:
    app.session_interface = DashboardSessionInterface()

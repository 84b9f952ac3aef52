"""The dashboard's session, form tokens and downloads, through Flask's test client (no browser).

The session cookie is signed with a key derived from REGISTRY_SECRET, HttpOnly, SameSite=Strict,
sent to /dashboard only, Secure in production; a state change needs the session's form token;
a revoked or expired token signs the session out; every download is the /v1 answer to the same
query and token, byte for byte.
"""

import dataclasses
import hashlib
import re

import pytest
from itsdangerous import URLSafeTimedSerializer

from registry.dashboard import session as dashboard_session
from registry.tokens.store import revoke_token
from tests.dashboard.conftest import B_REJECTED_REF

REPORTS = ["complications", "fusion", "outcomes", "centres", "completeness"]
# vl-convert numbers the gradients of a process's renders in turn (a legend of the heatmap):
# two renders of one plot differ in that number only
GRADIENT_ID = re.compile(rb"gradient_\d+")


def same_plot(data: bytes) -> bytes:
    return GRADIENT_ID.sub(b"gradient_N", data)


def csrf_of(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def sign_in(client, secret: str, follow=False):
    csrf = csrf_of(client.get("/dashboard/sign-in"))
    return client.post("/dashboard/sign-in", data={"token": secret, "csrf_token": csrf, "next": "/dashboard/"},
                       follow_redirects=follow)


def session_cookie(response) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(dashboard_session.COOKIE_NAME + "=")]
    assert len(headers) == 1, response.headers
    return headers[0]


def signer(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=dashboard_session.DashboardSessionInterface.salt,
                                  signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256})


def cookie_flags(response) -> list[str]:
    return [part.strip().lower() for part in session_cookie(response).split(";")]


def is_sign_in_redirect(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/dashboard/sign-in")


def test_the_session_cookie_is_httponly_strict_scoped_to_the_dashboard_and_not_secure_in_development(client, tokens):
    answer = sign_in(client, tokens.secrets["analyst"][1])
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/"
    cookie = session_cookie(answer)
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/dashboard" in attributes
    assert "secure" not in attributes  # REGISTRY_ENV=development: http on 127.0.0.1
    assert not any(a.startswith("expires=") for a in attributes)  # ends with the browser session
    assert client.get("/dashboard/").status_code == 200


def test_the_cookie_is_secure_in_production_and_as_configured(app, client, tokens):
    app.config["REGISTRY_SETTINGS"] = dataclasses.replace(app.config["REGISTRY_SETTINGS"], environment="production")
    assert "secure" in cookie_flags(sign_in(client, tokens.secrets["analyst"][1]))
    app.config["DASHBOARD_SECURE_COOKIE"] = False  # e.g. production behind a proxy on a private network
    assert "secure" not in cookie_flags(sign_in(client, tokens.secrets["analyst"][1]))


def test_the_api_sets_no_cookie(client, tokens):
    answer = client.get("/v1/reports/complications", headers=tokens.header("analyst"))
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers


def test_a_cookie_signed_with_another_key_is_not_a_session(app, client, tokens):
    forged = signer(b"not the registry's derived key")
    client.set_cookie(dashboard_session.COOKIE_NAME, forged.dumps({"token": tokens.secrets["analyst"][1]}),
                      path="/dashboard")
    assert is_sign_in_redirect(client.get("/dashboard/reports/centres"))


def test_the_cookie_key_is_derived_from_the_registry_secret(app, client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    cookie = client.get_cookie(dashboard_session.COOKIE_NAME, path="/dashboard").value
    with app.app_context():
        from registry.keys import purpose_key

        derived = purpose_key("dashboard-session-cookie")
    assert signer(derived).loads(cookie)["token"] == tokens.secrets["analyst"][1]


def test_signed_out_requests_are_sent_to_sign_in_and_get_no_figures(seeded_app):
    client = seeded_app[0].test_client()
    for path in ["/dashboard/", *(f"/dashboard/reports/{r}" for r in REPORTS),
                 *(f"/dashboard/reports/{r}.{f}" for r in REPORTS for f in ("csv", "svg", "png")),
                 "/dashboard/submissions/", "/dashboard/submissions/1", "/dashboard/submissions/1/rejected.csv"]:
        answer = client.get(path)
        assert is_sign_in_redirect(answer), path
        assert b"CENTRE-" not in answer.data and b"<svg" not in answer.data


def test_a_wrong_token_is_refused_at_sign_in_with_the_api_reason(client, tokens):
    answer = sign_in(client, "reg_not-a-token")
    assert answer.status_code == 401
    assert b"The token is unknown or revoked." in answer.data
    assert is_sign_in_redirect(client.get("/dashboard/"))


def test_signing_out_ends_the_session(client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    page = client.get("/dashboard/")
    answer = client.post("/dashboard/sign-out", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard/sign-in"
    assert is_sign_in_redirect(client.get("/dashboard/reports/centres"))


def test_a_state_change_without_the_form_token_is_refused(client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    for data in ({}, {"csrf_token": "guessed"}):
        answer = client.post("/dashboard/sign-out", data=data)
        assert answer.status_code == 400
        assert b"did not come from this dashboard session" in answer.data
    assert client.get("/dashboard/").status_code == 200  # still signed in
    # sign-in too: no one can sign a visitor in with their own token from another site
    fresh = client.application.test_client()
    answer = fresh.post("/dashboard/sign-in", data={"token": tokens.secrets["analyst"][1]})
    assert answer.status_code == 400 and is_sign_in_redirect(fresh.get("/dashboard/"))


def test_sign_out_is_post_only(client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    assert client.get("/dashboard/sign-out").status_code == 405
    assert client.get("/dashboard/").status_code == 200


def test_a_revoked_token_signs_the_session_out(db, client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    assert client.get("/dashboard/reports/centres").status_code == 200
    revoke_token(db, tokens.id("analyst"))
    answer = client.get("/dashboard/reports/centres")
    assert is_sign_in_redirect(answer)
    page = client.get(answer.headers["Location"])
    assert b"Signed out: The token is unknown or revoked." in page.data
    # the session no longer holds the token: signing out happened, not just a refusal
    assert is_sign_in_redirect(client.get("/dashboard/"))


def test_an_expired_token_signs_the_session_out(db, client, tokens):
    sign_in(client, tokens.secrets["submitter_a"][1])
    db.execute("UPDATE tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 minute'"
               " WHERE id = %s", (tokens.id("submitter_a"),))
    answer = client.get("/dashboard/")
    assert is_sign_in_redirect(answer)
    assert b"Signed out: The token expired at" in client.get(answer.headers["Location"]).data


def test_after_sign_in_the_visitor_returns_to_the_page_asked_for_and_never_off_site(client, tokens):
    answer = client.get("/dashboard/reports/centres?measure=revision")
    assert answer.headers["Location"] == "/dashboard/sign-in?next=/dashboard/reports/centres?measure%3Drevision"
    page = client.get(answer.headers["Location"])
    assert 'name="next" value="/dashboard/reports/centres?measure=revision"' in page.get_data(as_text=True)
    asked = "/dashboard/reports/centres?measure=revision"
    for target, landing in ((asked, asked), ("https://evil.example/", "/dashboard/"),
                            ("//evil.example/dashboard/", "/dashboard/")):
        other = client.application.test_client()
        csrf = csrf_of(other.get("/dashboard/sign-in"))
        answer = other.post("/dashboard/sign-in", data={"token": tokens.secrets["analyst"][1], "csrf_token": csrf,
                                                        "next": target})
        assert answer.headers["Location"] == landing


QUERIES = {
    "complications": [{}, {"group_by": "approach,region", "region": "cervical,lumbar"}],
    "fusion": [{"group_by": "approach", "min_months": "24"}],
    "outcomes": [{"group_by": "region"}],
    "centres": [{"measure": "revision", "group_by": "approach"}],
    "completeness": [{"group_by": "year"}],
}


@pytest.mark.parametrize("who", ["analyst", "submitter_a"])
def test_every_download_is_the_v1_answer_to_the_same_query_and_token(seeded_app, who):
    app, tokens, _ = seeded_app
    client = app.test_client()
    sign_in(client, tokens.secrets[who][1])
    for report, queries in QUERIES.items():
        for query in queries:
            # PNG is drawn from the same document as SVG: one report of each role is enough
            for fmt in ("csv", "svg", "png") if report == "centres" else ("csv", "svg"):
                mine = client.get(f"/dashboard/reports/{report}.{fmt}", query_string=query)
                api = client.get(f"/v1/reports/{report}", query_string={**query, "format": fmt},
                                 headers=tokens.header(who))
                assert api.status_code == 200, (report, query, api.data[:300])
                assert (mine.status_code, mine.mimetype, same_plot(mine.data)) == \
                    (200, api.mimetype, same_plot(api.data)), (report, query, fmt)
                assert mine.headers["Content-Disposition"] == api.headers["Content-Disposition"]


def test_the_page_plot_is_the_v1_plot_of_the_same_query(seeded_app):
    app, tokens, _ = seeded_app
    client = app.test_client()
    sign_in(client, tokens.secrets["analyst"][1])
    for report, queries in QUERIES.items():
        query = queries[-1]
        page = client.get(f"/dashboard/reports/{report}", query_string=query).data
        svg = client.get(f"/v1/reports/{report}", query_string={**query, "format": "svg"},
                         headers=tokens.header("analyst")).data
        assert same_plot(svg) in same_plot(page), report


def test_a_bad_query_is_the_api_error_naming_the_field(client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    answer = client.get("/dashboard/reports/centres?measure=bogus")
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert "<code>measure</code>: Must be one of:" in text and "<svg" not in text
    # an analyst may not isolate a centre by subtraction: the API's rule, the API's words
    answer = client.get("/dashboard/reports/complications?date_from=2020-01-15")
    assert answer.status_code == 422 and "<code>date_from</code>: Cross-centre reports filter by whole months" in \
        answer.get_data(as_text=True)


@pytest.mark.parametrize("query, field", [
    ("approach=posterior%00", "approach"),             # NUL
    ("approach=%ED%A0%80", "approach"),                # a lone surrogate, UTF-8 encoded
    ("year=" + "9" * 5000, "year"),                     # a huge value
    ("centre=CENTRE-B", None),                          # another centre, for a submitter: 403
])
def test_hostile_input_through_the_dashboard_is_the_apis_refusal_never_a_fault(client, tokens, query, field):
    sign_in(client, tokens.secrets["submitter_a"][1])
    answer = client.get(f"/dashboard/reports/complications?{query}")
    text = answer.get_data(as_text=True)
    assert answer.status_code == (422 if field else 403), text[:500]
    assert "<svg" not in text and "request id" not in text.lower()
    if field:
        assert f"<code>{field}.0</code>" in text  # the first (only) value of the list parameter


def test_a_submitter_may_not_ask_for_another_centre(seeded_app):
    app, tokens, _ = seeded_app
    client = app.test_client()
    sign_in(client, tokens.secrets["submitter_a"][1])
    for path in ("/dashboard/reports/complications?centre=CENTRE-B",
                 "/dashboard/reports/complications.csv?centre=CENTRE-B"):
        answer = client.get(path)
        assert answer.status_code == 403 and b"CENTRE-B" not in answer.data.replace(b"centre=CENTRE-B", b"")


def test_the_rejected_rows_csv_names_each_row_column_and_reason_of_the_centre_only(seeded_app):
    app, tokens, seeded = seeded_app
    client = app.test_client()
    sign_in(client, tokens.secrets["submitter_a"][1])
    answer = client.get(f"/dashboard/submissions/{seeded['submission_a']}/rejected.csv")
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == \
        f'attachment; filename="submission-{seeded["submission_a"]}-rejected.csv"'
    api = client.get(f"/v1/submissions/{seeded['submission_a']}/records?outcome=rejected",
                     headers=tokens.header("submitter_a")).json["items"]
    lines = answer.get_data(as_text=True).splitlines()
    assert lines[0] == "row,local_ref,column,message"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        [str(r["row"]), r["local_ref"], r["errors"][0]["column"]] for r in api]
    assert B_REJECTED_REF.encode() not in answer.data


def test_the_analyst_has_no_submissions_page(client, tokens):
    sign_in(client, tokens.secrets["analyst"][1])
    answer = client.get("/dashboard/submissions/")
    assert answer.status_code == 403 and b"This needs a token with role submitter." in answer.data


def test_an_unknown_dashboard_path_is_a_page_not_problem_json(client, tokens):
    answer = client.get("/dashboard/nowhere")
    assert answer.status_code == 404 and answer.mimetype == "text/html"


def test_the_dashboard_is_not_in_the_openapi_document(app):
    paths = app.extensions["registry_api"].spec.to_dict()["paths"]
    assert paths and not [path for path in paths if path.startswith("/dashboard")]


def test_a_fault_is_a_page_naming_the_request_id_not_a_traceback(client, tokens, monkeypatch):
    from registry.dashboard import tables

    def broken(document):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tables, "table", broken)
    sign_in(client, tokens.secrets["analyst"][1])
    answer = client.get("/dashboard/reports/complications", headers={"X-Request-ID": "dashboard-fault-1"})
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    assert b"dashboard-fault-1" in answer.data and b"secret internals" not in answer.data

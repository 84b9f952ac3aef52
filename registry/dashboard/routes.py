"""The dashboard at /dashboard/: server-rendered pages of the reports and submissions, for people.

A door onto the same service layer as /v1, holding no rules of its own: every figure comes from
the /v1 view itself, called in-process on behalf of the signed-in token (`call_api`), so its
roles, centre scope, query validation, disclosure control, query audit and timeouts are the
API's. The dashboard adds the pages: the plot (drawn by `registry.reports.plots` from the report
document the /v1 view answered, as `format=svg` draws it), the table under it, the filter form,
and downloads that are the /v1 answers to the same query.

Sign-in keeps the bearer token in a signed, HttpOnly, SameSite=Strict cookie (see `session`);
every page checks the token again through `registry.auth`, so a revoked or expired token signs
the session out at its next request. Works without JavaScript; the pages load none.
"""

import csv
import io
import json
import logging
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.test import EnvironBuilder

from registry import accepts
from registry import vocabulary as v
from registry.auth import SUBMITTER, authenticate
from registry.dashboard import session as dashboard_session
from registry.dashboard import tables
from registry.db import DatabaseUnavailable
from registry.problems import flatten_messages
from registry.reports import plots
from registry.reports.csv_output import neutralise
from registry.reports.service import FUNNEL_MEASURES
from registry.reports.store import DIMENSIONS
from registry.submissions.csv_layout import column_for

log = logging.getLogger(__name__)
blp = Blueprint("dashboard", __name__, url_prefix=dashboard_session.PREFIX, template_folder="templates",
                static_folder="static")

REPORTS = {  # kind: title, in the order of the navigation
    "complications": "Complications",
    "fusion": "Fusion and revision",
    "outcomes": "JOA / mJOA outcomes",
    "scores": "Outcome scores and MCID",
    "centres": "Centres (funnel plot)",
    "completeness": "Data completeness",
}
DOWNLOADS = ("csv", "svg", "png")
FILTERS = {  # the filter form's choices: the report parameters' vocabularies
    "approach": v.APPROACH, "region": v.REGION, "procedure": v.PROCEDURE, "diagnosis": v.DIAGNOSIS,
    "indication": v.INDICATION,
}
PAGE_OF_RECORDS = 1000  # the most /v1 lists in one page


@blp.record_once
def _install(state):
    dashboard_session.install(state.app)
    # errors on /dashboard paths no route matched (404, 405) are pages too, not problem+json
    state.app.extensions.setdefault("error_formats", {})[blp.url_prefix] = error_page


# --- calling the /v1 API in-process --------------------------------------------------------

class SignInRequired(Exception):
    """No session, or its token no longer authenticates: go to the sign-in page."""

    def __init__(self, reason: str | None = None):
        super().__init__(reason)
        self.reason = reason


def call_api(path: str, args: MultiDict | dict | None = None, token: str | None = None) -> Response:
    """The /v1 view of `path` answering `args`, called in-process with the session's token.

    The view runs exactly as for an HTTP client sending `Authorization: Bearer <token>`: its
    decorators check the role and validate the query, its errors are raised (Problem, 422).
    """
    token = token or session.get("token")
    if not token:
        raise SignInRequired()
    environ = EnvironBuilder(path=path, query_string=urlencode(list(_pairs(args)), doseq=True),
                             headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                             environ_base={"REMOTE_ADDR": request.remote_addr}).get_environ()
    # the app context (and so the request id and the authenticated principal in g) is shared
    with current_app.request_context(environ):
        return current_app.make_response(current_app.dispatch_request())


def _pairs(args):
    if args is None:
        return []
    if isinstance(args, MultiDict):
        return args.items(multi=True)
    return args.items()


def call_api_json(path: str, args=None) -> dict:
    return json.loads(call_api(path, args).get_data())


def signed_in():
    """The principal of the session's token, checked by registry.auth as for every API request
    (unknown, revoked, expired or replaced: the session is signed out)."""
    token = session.get("token")
    if not token:
        raise SignInRequired()
    try:
        environ = EnvironBuilder(path="/v1/", headers={"Authorization": f"Bearer {token}"}).get_environ()
        with current_app.request_context(environ):
            return authenticate()
    except HTTPException as refused:
        if refused.code == 401:
            session.clear()
            raise SignInRequired(refused.description) from None
        raise


@blp.errorhandler(SignInRequired)
def _to_sign_in(error: SignInRequired):
    if error.reason:
        flash(f"Signed out: {error.reason}")
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("dashboard.sign_in", next=target) if target else url_for("dashboard.sign_in"))


@blp.errorhandler(HTTPException)
def error_page(error: HTTPException):
    """An error as a page: its status, what went wrong and, for bad input, each field named."""
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") or data.get("errors")
    fields = getattr(error, "errors", None) or (flatten_messages(messages) if messages else [])
    # an unrouted path (404, 405) belongs to no blueprint: the template globals come explicitly
    body = render_template("dashboard/error.html", status=error.code, title=error.name,
                           detail=error.description, fields=fields, principal=_principal_or_none(),
                           **_template_globals())
    return body, error.code or 500


@blp.errorhandler(DatabaseUnavailable)
def _database_unavailable(error: DatabaseUnavailable):
    log.warning("database unavailable: %s", error)
    page, status = error_page(ServiceUnavailable("The database is unreachable; try again in a few seconds."))
    return page, status, {"Retry-After": "5"}


@blp.errorhandler(Exception)
def _fault(error: Exception):
    """A fault of the service: a page saying so (the details are in the log, under the request id)."""
    log.error("unhandled error", exc_info=error)
    return error_page(InternalServerError("The dashboard failed to answer; the request id "
                                          f"{g.get('request_id')} identifies it in the logs."))


def _principal_or_none():
    try:
        return signed_in() if session.get("token") else None
    except Exception:  # an error page never fails for the header's sake
        return None


# --- sign in, sign out ---------------------------------------------------------------------

def _check_csrf():
    if not dashboard_session.csrf_matches(session, request.form.get(dashboard_session.CSRF_FIELD)):
        abort(400, "This form did not come from this dashboard session (or the session ended): "
                   "load the page again and resend it.")


def _safe_next(target: str | None) -> str:
    """Only a dashboard page of this site: never an open redirect."""
    if target and target.startswith(blp.url_prefix + "/") and not target.startswith("//"):
        return target
    return url_for("dashboard.home")


@blp.context_processor
def _template_globals():
    return {"csrf_token": lambda: dashboard_session.csrf_token(session), "reports": REPORTS,
            "csrf_field": dashboard_session.CSRF_FIELD, "now_date": datetime.now(timezone.utc).date().isoformat()}


@blp.get("/sign-in")
def sign_in():
    return render_template("dashboard/sign_in.html", next=_safe_next(request.args.get("next")), principal=None)


FORM = "application/x-www-form-urlencoded"


@blp.post("/sign-in")
@accepts(FORM)
def sign_in_post():
    _check_csrf()
    token = (request.form.get("token") or "").strip()
    target = _safe_next(request.form.get("next"))
    if not token:
        return render_template("dashboard/sign_in.html", next=target, principal=None,
                               error="Paste your bearer token (it starts with reg_)."), 422
    try:
        environ = EnvironBuilder(path="/v1/", headers={"Authorization": f"Bearer {token}"}).get_environ()
        with current_app.request_context(environ):
            authenticate()
    except HTTPException as refused:
        return render_template("dashboard/sign_in.html", next=target, principal=None,
                               error=refused.description), refused.code
    session.clear()  # a fresh session, and a fresh form token, for the signed-in user
    session["token"] = token
    return redirect(target, code=303)


@blp.post("/sign-out")
@accepts(FORM)
def sign_out():
    _check_csrf()
    session.clear()
    flash("Signed out.")
    return redirect(url_for("dashboard.sign_in"), code=303)


# --- pages ---------------------------------------------------------------------------------

@blp.after_request
def _never_cached(response: Response) -> Response:
    # pages hold a user's figures: not kept by shared caches, not shown again after sign-out
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        # no script at all; inline SVG plots need inline styles
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


@blp.get("/")
def home():
    principal = signed_in()
    if principal.role == SUBMITTER:
        return _centre_home(principal)
    return render_template("dashboard/home.html", principal=principal)


def _centre_home(principal):
    """A submitter's centre: its place on every funnel plot, its completeness, its latest submissions."""
    places = []
    for measure in FUNNEL_MEASURES:
        funnel = call_api_json("/v1/reports/centres", {"measure": measure})
        row = funnel["groups"][0] if funnel["groups"] else None
        places.append({"measure": measure, "title": plots.FUNNEL_TITLES.get(measure, measure), "row": row})
    completeness = call_api_json("/v1/reports/completeness")
    submissions = call_api_json("/v1/submissions/", {"limit": 5})["items"]
    return render_template("dashboard/centre.html", principal=principal, places=places,
                           completeness=tables.table(completeness), submissions=submissions,
                           positions=tables.POSITIONS)


def _query_suffix(args: MultiDict) -> str:
    return "?" + urlencode(list(args.items(multi=True))) if args else ""


def _report_args(kind: str) -> MultiDict:
    """The page's query as the report's parameters: a blank form field means "not chosen"."""
    if kind not in REPORTS:
        abort(404, "No such report.")
    return MultiDict([(name, value) for name, value in request.args.items(multi=True)
                      if value.strip() and name != "format"])


@blp.get("/reports/<kind>")
def report(kind: str):
    principal = signed_in()
    args = _report_args(kind)
    if len(list(args.items(multi=True))) != len(list(request.args.items(multi=True))):
        # the form sends its blank fields too: answer with the view's short URL, the one to bookmark
        return redirect(url_for("dashboard.report", kind=kind) + _query_suffix(args), code=303)
    document, svg, problem = None, None, None
    try:
        document = call_api_json(f"/v1/reports/{kind}", args)
    except HTTPException as refused:
        if refused.code in (401,):
            raise
        problem = refused
    if document is not None:
        svg = Markup(plots.render_svg(document, datetime.now(timezone.utc).date()).decode())
    query = _query_suffix(args)
    fields = []
    if problem is not None:
        data = getattr(problem, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        fields = getattr(problem, "errors", None) or (flatten_messages(messages) if messages else [])
    return render_template(
        "dashboard/report.html", principal=principal, kind=kind, active=kind, title=REPORTS[kind], args=args,
        document=document, svg=svg, table=tables.table(document) if document else None, query=query,
        problem=problem, problem_fields=fields, downloads=DOWNLOADS, filters=FILTERS,
        dimensions=list(DIMENSIONS), measures={m: plots.FUNNEL_TITLES.get(m, m) for m in FUNNEL_MEASURES},
        positions=tables.POSITIONS), 200 if problem is None else problem.code


@blp.get("/reports/<kind>.<any(csv, svg, png):format>")
def report_download(kind: str, format: str):
    """Exactly the /v1 answer to the same query, as CSV, SVG or PNG."""
    signed_in()
    args = _report_args(kind)
    args["format"] = format
    return call_api(f"/v1/reports/{kind}", args)


@blp.get("/submissions/")
def submissions():
    principal = signed_in()
    query = {"limit": 50}
    if request.args.get("cursor"):
        query["cursor"] = request.args["cursor"]
    page = call_api_json("/v1/submissions/", query)
    return render_template("dashboard/submissions.html", principal=principal, page=page)


def _rejected_records(submission_id: int, limit: int | None = None) -> list[dict]:
    records, cursor = [], None
    while True:
        query = {"outcome": "rejected", "limit": PAGE_OF_RECORDS, **({"cursor": cursor} if cursor else {})}
        page = call_api_json(f"/v1/submissions/{submission_id}/records", query)
        records += page["items"]
        cursor = page["next_cursor"]
        if cursor is None or (limit is not None and len(records) >= limit):
            return records[:limit] if limit else records


def _error_lines(records: list[dict]) -> list[dict]:
    """One line per error of each rejected record, with the CSV column to fix."""
    lines = []
    for record in records:
        for error in record.get("errors") or [{}]:
            field = error.get("field") or ""
            lines.append({"row": record.get("row"), "index": record.get("index"), "local_ref": record["local_ref"],
                          "column": error.get("column") or column_for(field) or field, "field": field,
                          "message": error.get("message", "")})
    return lines


SHOWN_REJECTED = 200  # on the page; the CSV has them all


@blp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    principal = signed_in()
    detail = call_api_json(f"/v1/submissions/{submission_id}")
    rejected = _rejected_records(submission_id, SHOWN_REJECTED) if detail["rejected"] else []
    return render_template("dashboard/submission.html", principal=principal, submission=detail,
                           lines=_error_lines(rejected), shown=SHOWN_REJECTED)


@blp.get("/submissions/<int:submission_id>/rejected.csv")
def rejected_csv(submission_id: int):
    """The rejected rows of a submission, one line per error, to work through and resend.

    The registry keeps no copy of what a rejected row held (it may carry a patient ref in
    clear), so the file names each row, its local_ref, the column to fix and why: the data
    manager fixes those cells in the file sent and resends it (stored rows come back
    `unchanged`) or only the fixed rows."""
    signed_in()
    detail = call_api_json(f"/v1/submissions/{submission_id}")
    lines = _error_lines(_rejected_records(submission_id))
    out = io.StringIO()
    where = "row" if detail["format"] == "csv" else "index"
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([where, "local_ref", "column", "message"])
    for line in lines:
        writer.writerow([line[where], neutralise(line["local_ref"] or ""), neutralise(line["column"]),
                         neutralise(line["message"])])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="submission-{submission_id}-rejected.csv"'})

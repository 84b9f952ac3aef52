"""gunicorn workers whose own error answers are problem+json, like every other answer.

gunicorn answers some requests itself, before the application sees them: a request line over
`limit_request_line` (414), a header over `limit_request_field_size` or more than
`limit_request_fields` headers (431), a malformed request line or header, a NUL byte in a
header (400). Its answer is an HTML page. These workers keep gunicorn's choice of status
(it knows the protocol) and replace the page with an RFC 9457 problem.

`registry.gunicorn_conf` selects them: `ProblemThreadWorker` (gthread) when REGISTRY_THREADS
> 1, `ProblemSyncWorker` otherwise.
"""

import json
import re

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from registry.problems import PROBLEM_JSON, problem_type

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")

# What a client can do about each status gunicorn answers on its own; the limits are gunicorn's
# settings (registry.gunicorn_conf), so the detail can state them.
_DETAILS = {
    400: "The request is not valid HTTP/1.1 (a malformed request line or header, or a control character "
         "such as NUL in a header).",
    414: "The request line (method, path and query) is longer than {limit_request_line} bytes.",
    431: "The request has a header longer than {limit_request_field_size} bytes or more than "
         "{limit_request_fields} headers.",
    500: "The server failed to answer.",
}


class _CapturedAnswer:
    """Stands in for the client socket while gunicorn writes its HTML answer: keeps the bytes."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0  # util.write_nonblock then writes at once, without switching blocking modes

    def sendall(self, data):
        self.data += data


class ProblemAnswers:
    """Mixin over a gunicorn worker: `handle_error` writes problem+json instead of HTML."""

    def handle_error(self, req, client, addr, exc):
        # gunicorn decides the status (and logs, and writes the access log line) as usual;
        # only the page it would send is caught and rewritten.
        captured = _CapturedAnswer()
        super().handle_error(req, captured, addr, exc)
        match = _STATUS_LINE.match(captured.data)
        status, reason = (int(match.group(1)), match.group(2).decode("latin-1")) if match else (
            500, "Internal Server Error")
        detail = _DETAILS.get(status, "The request cannot be served: {error}").format(
            error=str(exc)[:200], limit_request_line=self.cfg.limit_request_line,
            limit_request_field_size=self.cfg.limit_request_field_size,
            limit_request_fields=self.cfg.limit_request_fields)
        body = json.dumps({"type": problem_type(status), "title": reason, "status": status,
                           "detail": detail}).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM_JSON}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # the client may be gone already: nothing to tell it
            self.log.debug("Failed to send error message.")


class ProblemThreadWorker(ProblemAnswers, ThreadWorker):
    """gunicorn's gthread worker, answering its own errors as problem+json."""


class ProblemSyncWorker(ProblemAnswers, SyncWorker):
    """gunicorn's sync worker, answering its own errors as problem+json."""

"""`registry import FILE --centre CODE`: a bulk submission from the command line, with a progress bar.

On a terminal the bar redraws itself; when stderr is a log or a pipe (cron, CI, `2> import.log`)
it is a line every PROGRESS_INTERVAL seconds and one at the end, so a long import is seen to move.

The command acts as the centre without a token: its writes are audited with actor role `cli`
and no token id, and the submission is recorded like one sent over the API.
"""

import io
import os
import sys
import time

import click

from registry.auth import Principal
from registry.db import database
from registry.submissions import reading, service, store

CLI_ROLE = "cli"
PROGRESS_INTERVAL = 10.0  # seconds between progress lines when stderr is not a terminal


class _Progress(io.RawIOBase):
    """A binary file that advances a click progress bar by the bytes read from it."""

    def __init__(self, file, bar):
        super().__init__()
        self.file, self.bar = file, bar

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self.file.readinto(buffer)
        self.bar.update(count or 0)
        return count


class _ProgressLines:
    """The progress bar's stand-in off a terminal: `label: N bytes of M (P%) read, T s` lines on stderr."""

    def __init__(self, length: int | None, label: str):
        self.length, self.label, self.read = length, label, 0
        self.started = self.printed = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            self._print()

    def update(self, count: int) -> None:
        self.read += count
        if time.monotonic() - self.printed >= PROGRESS_INTERVAL:
            self._print()

    def _print(self) -> None:
        self.printed = time.monotonic()
        read = f"{self.read:,} bytes"
        if self.length:
            read += f" of {self.length:,} ({self.read / self.length:.0%})"
        click.echo(f"{self.label}: {read} read, {self.printed - self.started:.0f} s", err=True)


def import_file(file, centre_code: str, mode: str, file_format: str | None) -> None:
    from registry.centres.store import get_centre_by_code

    name = getattr(file, "name", "") or ""
    file_format = file_format or ("csv" if name.lower().endswith(".csv") else "json")
    with database().transaction() as conn:
        centre = get_centre_by_code(conn, centre_code)
    if centre is None:
        raise click.ClickException(f"no centre with code {centre_code}")
    actor = Principal(token_id=None, role=CLI_ROLE, centre_id=centre["id"], centre_code=centre["code"])
    try:
        size = os.fstat(file.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        size = None
    label = f"importing {os.path.basename(name) or 'records'}"
    # click's bar prints only its label when stderr is not a terminal
    progress = (click.progressbar(length=size, label=label, file=sys.stderr) if sys.stderr.isatty()
                else _ProgressLines(size, label))
    with progress as bar:
        stream = io.BufferedReader(_Progress(file, bar))
        records = reading.csv_records(stream) if file_format == "csv" else reading.json_records(stream)
        try:
            with database().transaction() as conn:
                report = service.submit(conn, actor, records, format=file_format, mode=mode)
        except reading.UnreadableBody as unreadable:
            problems = "; ".join(f"{error['field'] or 'body'}: {error['message']}" for error in unreadable.errors)
            raise click.ClickException(f"{unreadable.detail} {problems}") from None
    click.echo(f"submission {report['id']}: {report['status']}; {report['total']} records: {report['created']} "
               f"created, {report['updated']} updated, {report['unchanged']} unchanged, {report['rejected']} "
               f"rejected, {report['not_stored']} not stored")
    _print_rejected(actor.centre_id, report["id"], file_format)
    if report["status"] != "accepted":
        raise SystemExit(1)


def _print_rejected(centre_id: int, submission_id: int, file_format: str) -> None:
    """One line per error of each rejected record: where, local_ref, field, message (tab-separated)."""
    after = None
    while True:
        with database().transaction() as conn:
            rows = store.list_records(conn, centre_id, submission_id, {"outcome": "rejected"}, after, 1000)
        for row in rows:
            result = service.record_to_wire(row, file_format)
            where = f"row {result['row']}" if "row" in result else f"index {result['index']}"
            for error in result["errors"]:
                click.echo(f"{where}\t{result['local_ref'] or '-'}\t{error.get('field') or '-'}\t{error['message']}")
        if len(rows) < 1000:
            return
        after = rows[-1]["position"]

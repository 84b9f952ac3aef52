"""Reading a submission body record by record, without holding it whole in memory.

A JSON body is one array of documents; it is decoded element by element from a rolling
buffer (the standard library's C decoder does each element), so a 100,000-record body costs
the memory of a read buffer plus the records of the chunk being processed. A CSV body is
read row by row by the `csv` module and turned into documents by `registry.submissions.csv_layout`.

Each reader yields `(position, document_or_None, errors)`; errors are the field errors of a
record that could not even be read (a CSV row with the wrong number of cells; a JSON element
with a duplicated key or a number too long to read, see `registry.strict_json`). A body that
cannot be read on at all (not an array, broken JSON, broken CSV quoting, not UTF-8) raises
`UnreadableBody`: the submission is refused whole.
"""

import codecs
import csv
import io
import json
from typing import BinaryIO, Iterator

from registry.problems import field_error
from registry.strict_json import StrictDecoder
from registry.submissions import csv_layout

READ_SIZE = 1 << 16
# One record larger than this is not an operation document: stop buffering and refuse it.
MAX_RECORD_CHARS = 1 << 20


class UnreadableBody(Exception):
    """The body cannot be read as a submission: `errors` name where."""

    def __init__(self, detail: str, errors: list[dict]):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


def json_records(stream: BinaryIO) -> Iterator[tuple[int, object, list]]:
    """The elements of a JSON array body, one at a time, with their index."""
    decoder = StrictDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buffer, pos, eof = "", 0, False

    def refuse(message: str, index: int | None = None):
        field = "" if index is None else str(index)
        return UnreadableBody("The body is not a JSON array of operation documents.",
                              [field_error(field, message, "body")])

    def fill() -> bool:
        nonlocal buffer, pos, eof
        if eof:
            return False
        data = stream.read(READ_SIZE)
        try:
            text = utf8.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise refuse(f"Not UTF-8: {exc.reason}.") from None
        buffer = buffer[pos:] + text
        pos = 0
        eof = not data
        return True

    def next_char() -> str:
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer) or not fill():
                return buffer[pos] if pos < len(buffer) else ""

    if next_char() != "[":
        raise refuse("The body must be a JSON array: [ {document}, {document}, ... ].")
    pos += 1
    index = 0
    if next_char() == "]":
        pos += 1
    else:
        while True:
            next_char()
            while True:
                try:
                    item, end, errors = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as exc:
                    if len(buffer) - pos > MAX_RECORD_CHARS or not fill():
                        raise refuse(f"Not valid JSON: {exc.msg}.", index) from None
                    continue
                except RecursionError:  # thousands of nested [[[ or {{{: the parser gives up
                    raise refuse("Nested too deeply.", index) from None
                if end == len(buffer) and fill():
                    continue  # a number or literal may go on in the next read
                break
            pos = end
            yield index, item, errors
            index += 1
            separator = next_char()
            pos += 1
            if separator == "]":
                break
            if separator != ",":
                raise refuse("Expected `,` or `]` after this element.", index - 1)
    if next_char() != "":
        raise refuse("Nothing may follow the array.")


def csv_records(stream: BinaryIO) -> Iterator[tuple[int, object, list]]:
    """The data rows of a CSV body as documents, with their data row number (1 = first data row)."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise UnreadableBody("The CSV body is empty.", [field_error("", "No header row.", "csv")]) from None
        try:
            layout = csv_layout.Layout.from_header(header)
        except csv_layout.HeaderError as exc:
            raise UnreadableBody("The CSV header has unknown or repeated columns.", exc.errors) from None
        for number, cells in enumerate(reader, start=1):
            if not any(cells):
                continue  # spreadsheets leave blank rows behind
            document, errors = layout.document(cells)
            yield number, document, errors
    except csv.Error as exc:
        raise UnreadableBody("The CSV body cannot be read.",
                             [field_error("", f"Row {reader.line_num}: {exc}.", "csv")]) from None
    except UnicodeDecodeError as exc:
        raise UnreadableBody("The CSV body cannot be read.",
                             [field_error("", f"Not UTF-8 near row {reader.line_num}: {exc.reason}.", "csv")]) from None
    finally:
        text.detach()

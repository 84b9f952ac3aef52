"""Validating a chunk of records with the record API's schema, in worker processes when it pays.

Each record is loaded by `BulkOperationSchema` (the record API's `OperationInputSchema` plus
follow-ups) through its compiled form (`registry.validation.compiled`: the schema's own rules
judged by jsonschema-rs and one pass over the document, about a fifth of marshmallow's CPU;
marshmallow itself words the errors of a rejected record). In a submission of several chunks,
each chunk after the first is split between a small pool of worker processes (one per CPU, per
gunicorn worker, started on first use), while the request's own thread reads the next chunk
and writes the previous one: Python validates in parallel with PostgreSQL writing.
"""

import atexit
import gc
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import marshmallow as ma
from flask import current_app, has_app_context

from registry.follow_ups import store as follow_ups
from registry.operations import service as operations
from registry.problems import InvalidInput, flatten_messages
from registry.submissions import bulk
from registry.submissions.schemas import BulkOperationSchema
from registry.validation.compiled import compiled

_SCHEMA = BulkOperationSchema()
# built at import: the forkserver preloads this module, so worker processes start with it built
compiled(BulkOperationSchema)


def validate(raw, location: str) -> tuple[dict | None, list[dict]]:
    """(loaded document, []) or (None, field errors) for one record."""
    try:
        return _SCHEMA.load(raw), []
    except ma.ValidationError as error:
        return None, flatten_messages(error.messages, location)


class Prepared(NamedTuple):
    """What a valid record would create, worked out where it was validated (a worker process,
    most often) so that the process writing does not: the operation as COPY text and audit
    (`bulk.prepare_operation`; its age at surgery from the inline patient's birth year, which
    the writer checks), and each follow-up's columns and COPY text (None for one whose dates are
    refused: the writer words the error)."""
    birth_year: int | None
    operation: bulk.PreparedOperation
    follow_up_values: list[dict | None]
    follow_ups: list[bulk.PreparedFollowUp | None]


def prepare(document: dict, birth_year: int | None = None, *, inline_birth_year: bool = True) -> Prepared:
    """The record's rows, its age at surgery from `birth_year` or else the inline patient's."""
    if inline_birth_year:
        birth_year = document["patient"].get("birth_year") if "patient" in document else None
    operation = {name: value for name, value in document.items() if name != "follow_ups"}
    values = []
    for follow_up in document["follow_ups"]:
        try:
            values.append(follow_ups.follow_up_columns(document["operation_date"], follow_up))
        except InvalidInput:
            values.append(None)
    return Prepared(birth_year, bulk.prepare_operation(*operations.columns_and_children(operation, birth_year)),
                    values, [None if value is None else bulk.prepare_follow_up(value) for value in values])


def validate_chunk(raws: list, location: str) -> list[tuple[dict | None, list[dict], Prepared | None]]:
    """Each record's (document, errors, its rows prepared)."""
    outcomes = []
    for raw in raws:
        document, errors = validate(raw, location)
        outcomes.append((document, errors, prepare(document) if document is not None else None))
    return outcomes


# --- worker processes -------------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """Validation processes: one per CPU unless the settings say (REGISTRY_VALIDATION_WORKERS; 0 validates inline)."""
    configured = current_app.config["REGISTRY_SETTINGS"].validation_workers if has_app_context() else None
    return (os.cpu_count() or 1) if configured is None else configured


def start_workers() -> None:
    """Start the worker processes in the background, if they are not running: starting them
    (a forkserver that imports the registry, then the workers) takes seconds that would
    otherwise hold up the submission's second chunk."""
    count = workers()
    if count > 0 and _pool is None:
        threading.Thread(target=_started_pool, args=(count,), daemon=True).start()


def _started_pool(count: int) -> None:
    try:
        pool = _pool_of_this_process(count)
        for _ in range(count):
            pool.submit(int)  # a worker process starts for each task waiting
    except BrokenProcessPool:
        _forget_pool()


def _pool_of_this_process(count: int | None = None) -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # forkserver: workers are forked from a clean server process, never from this one,
            # which may have threads and open database connections
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["registry.submissions.validation"])
            _pool = ProcessPoolExecutor(max_workers=count or workers(), mp_context=context,
                                        initializer=_start_worker)
            atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
        return _pool


def submit_chunk(raws: list, location: str, *, in_parallel: bool) -> list[Future]:
    """Validate a chunk: split between the worker processes when `in_parallel` (and workers are
    allowed), else here and now. Pass the answer to `outcomes`."""
    count = workers() if in_parallel and raws else 0
    if count > 0:
        size = -(-len(raws) // count)
        try:
            pool = _pool_of_this_process()
            return [pool.submit(validate_chunk, raws[start:start + size], location)
                    for start in range(0, len(raws), size)]
        except BrokenProcessPool:
            _forget_pool()
    done: Future = Future()
    done.set_result(validate_chunk(raws, location))
    return [done]


def outcomes(validating: list[Future], raws: list, location: str
             ) -> list[tuple[dict | None, list[dict], Prepared | None]]:
    """The results of `submit_chunk`, in order; validated here if a worker process died meanwhile."""
    try:
        return [outcome for part in validating for outcome in part.result()]
    except BrokenProcessPool:
        _forget_pool()  # the next submission starts a new pool
        return validate_chunk(raws, location)


def _start_worker() -> None:
    # these processes only validate: fewer collections, as in service.fewer_garbage_collections
    gc.set_threshold(50_000, *gc.get_threshold()[1:])


def _forget_pool() -> None:
    global _pool
    with _pool_lock:
        broken, _pool = _pool, None
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)

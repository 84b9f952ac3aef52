"""gunicorn settings for the registry (`gunicorn -c python:registry.gunicorn_conf "registry:create_app()"`).

`registry serve` and docker-compose both start gunicorn with this file; everything is read
from the environment so the two cannot drift. The app is built in each worker after fork
(no preload), so every worker opens its own connection pool.
"""

import os
import tempfile

from registry.observability import logging_config

bind = os.environ.get("REGISTRY_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("REGISTRY_THREADS", "4"))
# gunicorn's own workers, answering the requests they refuse themselves as problem+json
worker_class = ("registry.gunicorn_workers.ProblemThreadWorker" if threads > 1
                else "registry.gunicorn_workers.ProblemSyncWorker")
# A gthread worker accepts connections up to worker_connections (default 1000) however busy its
# threads are: one worker took all 16 connections of a slow-body attack (and /healthz behind
# them) while the other stood idle. Accepting at most twice its threads, it leaves the rest in
# the listen queue for whichever worker frees a thread first; half of them may be kept alive.
worker_connections = 2 * threads
timeout = 60
graceful_timeout = 20
keepalive = 5
worker_tmp_dir = tempfile.gettempdir()
logconfig_dict = logging_config(os.environ.get("LOG_LEVEL", "INFO").upper())

# Requests gunicorn refuses before the application sees them (problem+json, see
# registry.gunicorn_workers): a request line (method, path, query) over 4094 bytes is a 414;
# a header over 8190 bytes, or more than 100 headers, a 431. gunicorn's defaults, stated here
# so the README and the answers can quote them.
limit_request_line = 4094
limit_request_field_size = 8190
limit_request_fields = 100

# gunicorn >= 25.1 opens a control socket for `gunicornc` at one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): a second instance on the machine
# (two `registry serve`, tests, a benchmark) takes it over, and `gunicornc` then stops or resizes
# the wrong service. Signals do everything the registry needs, so it is off unless
# REGISTRY_CONTROL_SOCKET names a path of this instance's own.
control_socket_disable = not os.environ.get("REGISTRY_CONTROL_SOCKET")
if os.environ.get("REGISTRY_CONTROL_SOCKET"):
    control_socket = os.environ["REGISTRY_CONTROL_SOCKET"]


def child_exit(server, worker):
    # A dead worker's metric files must stop counting as live.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # The first plot in a process starts vl-convert's JavaScript engine and loads Vega (about a
    # second and a half): pay it here, in each worker before it serves, rather than in a user's
    # first plot request. After the fork, because the converter's threads do not survive one.
    # A failure here must not keep the worker from serving everything else: the plot requests
    # will then answer the error themselves.
    try:
        from registry.reports import plots

        plots.warm_up()
    except Exception:
        server.log.exception("Warming up the plot renderer failed")

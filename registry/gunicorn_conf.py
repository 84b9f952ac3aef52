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
worker_class = "gthread" if threads > 1 else "sync"
timeout = 60
graceful_timeout = 20
keepalive = 5
worker_tmp_dir = tempfile.gettempdir()
logconfig_dict = logging_config(os.environ.get("LOG_LEVEL", "INFO").upper())


def child_exit(server, worker):
    # A dead worker's metric files must stop counting as live.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

"""`registry serve`: gunicorn in a child process, with the resolved database in its environment.

gunicorn runs as a child rather than in-process because prometheus_client chooses between
single- and multi-process metrics when it is first imported: the workers must start with
PROMETHEUS_MULTIPROC_DIR already set. The parent stays alive so the embedded PostgreSQL it
started is stopped when the service stops. The parent also runs the report maintainer
(registry.reports.maintainer) in a thread, stopped when gunicorn has stopped.
"""

import os
import shutil
import signal
import subprocess
import sys

from registry.config import Settings


def serve(settings: Settings, database_url: str, *, bind: str, workers: int, threads: int,
          maintainer: dict | None = None) -> int:
    """gunicorn until it exits, and a report maintainer beside it unless `maintainer` is None
    (else its options: batch_size, poll_seconds)."""
    metrics_dir = settings.data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    environment = dict(
        os.environ,
        DATABASE_URL=database_url,  # workers use it and never start a database themselves
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        REGISTRY_BIND=bind,
        WEB_CONCURRENCY=str(workers),
        REGISTRY_THREADS=str(threads),
    )
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf", "registry:create_app()"],
        env=environment,
    )

    def forward(signum, _frame):
        gunicorn.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    running = None
    if maintainer is not None:
        from registry.observability import configure_logging
        from registry.reports.maintainer import start_thread

        configure_logging(settings.log_level)
        running = start_thread(database_url, **maintainer)
    try:
        return gunicorn.wait()
    finally:
        if running is not None:
            running[0].stop()
            running[1].join(timeout=30)

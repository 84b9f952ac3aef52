"""The two baselines of bench/load.py, served by gunicorn with the registry's own settings.

- `constant_app()`: a Flask route that reads the body and answers a constant — the cost of
  gunicorn, Flask and HTTP alone.
- `raw_insert_app()`: a Flask route that inserts the raw JSON body into one table with psycopg
  (one pool per worker, opened after fork like the registry's) — the cost of one write.

Both take POST /, so the load client sends the same document to all three services.
"""

import os
import threading

from flask import Flask, request
from psycopg_pool import ConnectionPool

RAW_TABLE = "load_raw_documents"


def constant_app() -> Flask:
    app = Flask(__name__)

    @app.post("/")
    def constant():
        request.get_data()
        return {"status": "ok"}, 201

    return app


def raw_insert_app() -> Flask:
    app = Flask(__name__)
    pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=1, max_size=10, open=False)
    opening = threading.Lock()

    @app.post("/")
    def raw_insert():
        if pool.closed:
            with opening:
                if pool.closed:
                    pool.open()
        with pool.connection() as conn:
            row = conn.execute(f"INSERT INTO {RAW_TABLE} (document) VALUES (%s::jsonb) RETURNING id",
                               (request.get_data(as_text=True),)).fetchone()
        return {"id": row[0]}, 201

    return app

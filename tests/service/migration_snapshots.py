"""What a report-aggregate migration test compares before and after: the base tables (which
such a migration must never change) and the stored aggregates (which it rebuilds)."""

TABLES = ("patients", "operations", "implants", "intraop_events", "postop_complications", "follow_ups")


def base_rows(conn) -> dict:
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY centre_id, id").fetchall() for table in TABLES}


def aggregates(conn) -> dict:
    return {"facts": conn.execute("SELECT * FROM report_operations ORDER BY centre_id, operation_id").fetchall(),
            "tallies": conn.execute("SELECT * FROM report_tallies ORDER BY 1, 2, 3").fetchall(),
            "histograms": conn.execute("SELECT * FROM report_histograms ORDER BY 1, 2, 3, 4, 5, 6").fetchall()}

"""Draw the README's screenshot, docs/dashboard-funnel.png: the demo registry (`registry demo`),
signed in as the seed centre's submitter, on the funnel plot of instrument breakage.

    python -m tests.dashboard.readme_screenshot \\
        --database-url postgresql://postgres@127.0.0.1:5432/registry_demo_screenshot

The database is dropped and created afresh; the browser is Debian's Chromium.
"""

import argparse
import sys
import threading

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from registry import create_app, migrate
from registry.db import database
from registry.demo.load import load_demo
from registry.reports.synthetic import recreate_database
from tests import system_packages
from tests.conftest import ROOT, make_settings
from tests.dashboard.test_browser import CHROMIUM_ARGS

OUTPUT = ROOT / "docs" / "dashboard-funnel.png"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    recreate_database(args.database_url)
    migrate.upgrade(args.database_url)
    app = create_app(make_settings(), args.database_url)
    with app.app_context(), database().transaction() as conn:
        token = load_demo(conn, new_tokens=True)["submitter_token"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=system_packages.chromium_executable(),
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base_url}/dashboard/sign-in")
            page.fill("#token", token)
            page.click("form button[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{base_url}/dashboard/reports/centres?measure=instrument_breakage")
            titles = page.locator("figure.plot svg title").all_text_contents()
            assert any(t.startswith("SEED: 100.0 % (1 of 1), 95 % CI") for t in titles), titles
            page.screenshot(path=args.output, full_page=True)
            browser.close()
    finally:
        server.shutdown()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())

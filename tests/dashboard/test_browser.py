"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the registry
served over HTTP from a thread. One browser and one server per module.

Screenshots of every page visited are kept in var/artifacts/dashboard/ (printed at the end).
"""

import re
import threading

import pytest
from werkzeug.serving import make_server

from tests import system_packages
from tests.conftest import ROOT
from tests.dashboard.conftest import A_REJECTED_REFS, B_REJECTED_REF

pytestmark = pytest.mark.needs_chromium

ARTIFACTS = ROOT / "var" / "artifacts" / "dashboard"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPORTS = ["complications", "fusion", "outcomes", "centres", "completeness"]
OTHER_CENTRES_OF_A = ["CENTRE-B", "CENTRE-C", "CENTRE-D", "CENTRE-E", "TINY"]
POINT_TITLE = re.compile(r"^(?P<centre>[A-Z0-9_-]+): \d+\.\d %")


@pytest.fixture(scope="module")
def registry(seeded_app):
    """(base URL of the live server, tokens, what was seeded)."""
    app, tokens, seeded = seeded_app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", tokens, seeded
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=system_packages.chromium_executable(),
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    print(f"\ndashboard screenshots: {ARTIFACTS}")


class Visit:
    """A browser context (its own cookies) that records console errors and page errors."""

    def __init__(self, browser, base_url: str, name: str, viewport=(1366, 900)):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.context.new_page()
        self.base_url = base_url
        self.name = name
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.shots = 0

    def open(self, path: str):
        response = self.page.goto(self.base_url + path)
        self.shots += 1
        self.page.screenshot(path=ARTIFACTS / f"{self.name}-{self.shots:02d}.png", full_page=True)
        return response

    def sign_in(self, secret: str):
        self.open("/dashboard/sign-in")
        self.page.fill("#token", secret)
        self.page.click("form button[type=submit]")
        self.page.wait_for_load_state()

    def plot_titles(self) -> list[str]:
        return self.page.locator("figure.plot svg title").all_text_contents()

    def close(self):
        self.context.close()
        assert self.errors == [], f"console errors in {self.name}: {self.errors}"


def funnel_points(titles: list[str]) -> list[str]:
    return [m["centre"] for t in titles if (m := POINT_TITLE.match(t))]


def test_signed_out_visitors_are_sent_to_sign_in_and_see_no_figures(browser, registry):
    base_url, _, seeded = registry
    visit = Visit(browser, base_url, "signed-out")
    for path in ["/dashboard/", "/dashboard/reports/centres?measure=instrument_breakage",
                 "/dashboard/reports/complications.csv", f"/dashboard/submissions/{seeded['submission_a']}"]:
        visit.open(path)
        assert visit.page.url.startswith(base_url + "/dashboard/sign-in")
        content = visit.page.content()
        assert "CENTRE-" not in content and "<svg" not in content and "%" not in visit.page.inner_text("main")
    visit.close()


def test_an_analyst_sees_every_report_as_a_plot_with_its_table(browser, registry):
    base_url, tokens, _ = registry
    visit = Visit(browser, base_url, "analyst")
    visit.sign_in(tokens.secrets["analyst"][1])
    assert visit.page.url == base_url + "/dashboard/"
    for report in REPORTS:
        visit.open(f"/dashboard/reports/{report}")
        assert visit.page.locator("figure.plot svg").count() == 1, report
        titles = visit.plot_titles()
        assert len(titles) > 3, report  # the plot's own title and its marks
        assert visit.page.locator("table.figures tbody tr").count() >= 1
        for fmt in ("csv", "svg", "png"):
            assert visit.page.locator(f"a.download[href^='/dashboard/reports/{report}.{fmt}']").count() == 1
    visit.close()


def test_the_funnel_has_one_point_per_published_centre_and_none_for_a_withheld_one(browser, registry):
    base_url, tokens, seeded = registry
    visit = Visit(browser, base_url, "analyst-funnel")
    visit.sign_in(tokens.secrets["analyst"][1])
    visit.open("/dashboard/reports/centres?measure=instrument_breakage")
    titles = visit.plot_titles()
    points = funnel_points(titles)
    assert sorted(points) == seeded["published_centres"]  # each once
    assert seeded["withheld"] not in points
    assert f"{seeded['withheld']}: withheld" in titles
    # the table under it: the withheld centre's row says withheld, no rate
    rate_cell = visit.page.locator("table.figures tbody tr", has_text=seeded["withheld"]).locator("td").first
    assert rate_cell.inner_text() == "withheld"
    visit.close()


def test_the_filter_form_makes_a_bookmarkable_view(browser, registry):
    base_url, tokens, _ = registry
    visit = Visit(browser, base_url, "analyst-filters")
    visit.sign_in(tokens.secrets["analyst"][1])
    visit.open("/dashboard/reports/complications")
    visit.page.select_option("select[name=group_by] >> nth=0", "approach")
    visit.page.select_option("select[name=region]", "cervical")
    visit.page.click("form.filters button[type=submit]")
    visit.page.wait_for_load_state()
    # the blank fields are dropped: the address is the view's short URL, to bookmark and share
    assert visit.page.url == base_url + "/dashboard/reports/complications?group_by=approach&region=cervical"
    assert any("posterior, Intraoperative event" in t for t in visit.plot_titles())
    csv_link = visit.page.locator("a.download[href*='.csv']").get_attribute("href")
    assert csv_link == "/dashboard/reports/complications.csv?group_by=approach&region=cervical"
    visit.close()


def test_a_bad_parameter_is_a_readable_message_naming_it(browser, registry):
    base_url, tokens, _ = registry
    visit = Visit(browser, base_url, "analyst-bad-parameter")
    visit.sign_in(tokens.secrets["analyst"][1])
    response = visit.open("/dashboard/reports/complications?group_by=approach,region,year")
    assert response.status == 422
    alert = visit.page.inner_text("[role=alert]")
    assert "group_by" in alert and "Group by at most two dimensions." in alert
    assert visit.page.locator("svg").count() == 0
    # the browser logs the 422 answer itself, and nothing else
    visit.errors.remove("Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)")
    visit.close()


def test_a_submitter_sees_its_centre_only(browser, registry):
    base_url, tokens, seeded = registry
    visit = Visit(browser, base_url, "submitter", viewport=(1024, 1366))  # a tablet, portrait
    visit.sign_in(tokens.secrets["submitter_a"][1])
    pages = ["/dashboard/", *(f"/dashboard/reports/{r}" for r in REPORTS),
             "/dashboard/reports/centres?measure=instrument_breakage",
             "/dashboard/reports/complications?group_by=centre",
             "/dashboard/submissions/", f"/dashboard/submissions/{seeded['submission_a']}",
             f"/dashboard/submissions/{seeded['submission_b']}"]
    for path in pages:
        visit.open(path)
        content = visit.page.content()
        for other in OTHER_CENTRES_OF_A:
            assert other not in content, (path, other)
        assert B_REJECTED_REF not in content, path
    visit.open("/dashboard/reports/centres?measure=instrument_breakage")
    assert funnel_points(visit.plot_titles()) == ["CENTRE-A"]
    visit.close()


def test_a_submitter_sees_its_rejected_rows_and_downloads_them(browser, registry):
    base_url, tokens, seeded = registry
    visit = Visit(browser, base_url, "submitter-rejected")
    visit.sign_in(tokens.secrets["submitter_a"][1])
    visit.open("/dashboard/submissions/")
    visit.page.click(f"a[href='/dashboard/submissions/{seeded['submission_a']}']")
    visit.page.wait_for_load_state()
    table = visit.page.inner_text("table.figures")
    for ref in A_REJECTED_REFS:
        assert ref in table
    assert "region" in table and "patient.birth_year" in table
    with visit.page.expect_download() as download:
        visit.page.click("a.download")
    saved = ARTIFACTS / "submitter-rejected.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == "row,local_ref,column,message"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["3", A_REJECTED_REFS[0], "region"], ["4", A_REJECTED_REFS[1], "patient.birth_year"]]
    visit.close()


def test_signing_out_ends_the_session(browser, registry):
    base_url, tokens, _ = registry
    visit = Visit(browser, base_url, "sign-out")
    visit.sign_in(tokens.secrets["analyst"][1])
    visit.page.click("form.who button")
    visit.page.wait_for_load_state()
    assert visit.page.url.startswith(base_url + "/dashboard/sign-in")
    visit.open("/dashboard/reports/centres")
    assert visit.page.url.startswith(base_url + "/dashboard/sign-in")
    assert visit.page.locator("svg").count() == 0
    visit.close()

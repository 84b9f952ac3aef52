"""Tests that need a system package (a browser, PgBouncer) are marked, never silently skipped.

- `@pytest.mark.needs_chromium`: Debian's `chromium` (the dashboard's browser tests).
- `@pytest.mark.needs_pgbouncer`: Debian's `pgbouncer` (the cluster tests).

Where the package is installed the tests run. Where it is not, they are not run, and the
summary says so in one line with the command that installs it; with
REGISTRY_REQUIRE_SYSTEM_PACKAGES=1 (set by `.ci/run`) a missing package fails them instead.
"""

import os
import shutil

import pytest

# marker: (what it is, how to find it, how to install it)
PACKAGES = {
    "needs_chromium": ("Chromium", ("chromium", "chromium-browser"), "apt-get install chromium"),
    "needs_pgbouncer": ("PgBouncer", ("pgbouncer", "/usr/sbin/pgbouncer"), "apt-get install pgbouncer"),
}
REQUIRED = os.environ.get("REGISTRY_REQUIRE_SYSTEM_PACKAGES") == "1"


def find_executable(marker: str) -> str | None:
    """The package's executable, or None when it is not installed."""
    for name in PACKAGES[marker][1]:
        if found := shutil.which(name):
            return found
    return None


def _from_environment(variable: str) -> str | None:
    path = os.environ.get(variable)
    return path if path and os.access(path, os.X_OK) else None


def chromium_executable() -> str | None:
    """CHROMIUM_PATH, else Debian's chromium on PATH."""
    return _from_environment("CHROMIUM_PATH") or find_executable("needs_chromium")


def pgbouncer_executable() -> str | None:
    """PGBOUNCER_PATH, else Debian's pgbouncer."""
    return _from_environment("PGBOUNCER_PATH") or find_executable("needs_pgbouncer")


_LOOKUP = {"needs_chromium": chromium_executable, "needs_pgbouncer": pgbouncer_executable}


def register(config) -> None:
    for marker, (what, _, _) in PACKAGES.items():
        config.addinivalue_line("markers", f"{marker}: needs {what}, a system package (tests/system_packages.py)")
    config.stash[_NOT_RUN] = {}


_NOT_RUN = pytest.StashKey[dict]()


def set_aside_missing(config, items: list) -> None:
    """Deselect the tests whose package is missing (recorded for the summary), unless required."""
    missing = {marker for marker in PACKAGES if _LOOKUP[marker]() is None}
    if not missing:
        return
    kept, not_run = [], config.stash[_NOT_RUN]
    for item in items:
        needs = [marker for marker in missing if item.get_closest_marker(marker)]
        if needs and not REQUIRED:
            not_run.setdefault(needs[0], []).append(item)
        else:
            kept.append(item)
    if not_run:
        config.hook.pytest_deselected(items=[item for group in not_run.values() for item in group])
        items[:] = kept


def fail_if_required_and_missing(item) -> None:
    for marker in PACKAGES:
        if item.get_closest_marker(marker) and _LOOKUP[marker]() is None:
            what, _, install = PACKAGES[marker]
            pytest.fail(f"{what} is required here (REGISTRY_REQUIRE_SYSTEM_PACKAGES=1) but not installed: "
                        f"{install}", pytrace=False)


def report_not_run(terminalreporter, config) -> None:
    for marker, items in config.stash.get(_NOT_RUN, {}).items():
        what, _, install = PACKAGES[marker]
        terminalreporter.write_line(
            f"NOT RUN: {len(items)} tests need {what}, which is not installed; to run them: {install}",
            yellow=True, bold=True)

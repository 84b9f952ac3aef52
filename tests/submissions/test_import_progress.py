"""`registry import` shows its progress in a log too: lines on stderr when it is not a terminal."""

import json
import re

from registry.cli import cli
from registry.submissions import cli as import_cli
from tests.submissions.helpers import document


def test_import_prints_progress_lines_when_stderr_is_not_a_terminal(runner, tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(import_cli, "PROGRESS_INTERVAL", 0.0, raising=False)  # a line at every read
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([document(number) for number in range(1, 21)]))  # ~50 kB: several reads
    size = path.stat().st_size
    result = runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("importing batch.json: ")]
    assert len(lines) >= 2, result.stderr
    read = [int(re.search(r": ([\d,]+) bytes", line).group(1).replace(",", "")) for line in lines]
    assert read == sorted(read) and read[-1] == size
    assert f"of {size:,} (100%) read" in lines[-1]
    assert "20 created" in result.stdout


def test_progress_lines_are_periodic_not_one_per_read(runner, tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(import_cli, "PROGRESS_INTERVAL", 3600.0, raising=False)
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([document(number) for number in range(1, 21)]))
    result = runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("importing batch.json: ")]
    assert len(lines) == 1 and "(100%)" in lines[0], result.stderr  # only the closing line within an hour

"""Synthetic data that cannot fit is refused from arithmetic alone, before any allocation (issue 10, item 15)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from backforge._resources import available_memory, format_bytes, require_memory
from backforge._time import parse_duration
from backforge.cli import app
from backforge.data.synth import _calendar, bar_count, gbm, synthetic_market, synthetic_series
from backforge.errors import ConfigError


@pytest.mark.parametrize("years, bar, calendar", [
    (10, "1min", "equities"), (1, "1d", "equities"), (0.3, "15min", "equities"), (2.5, "1h", "crypto"),
    (3, "5min", "crypto"), (7.7, "1d", "crypto"), (0.01, "1h", "equities"), (50, "1d", "equities"),
])
def test_bar_count_matches_the_generated_calendar(years, bar, calendar):
    assert bar_count(years, bar, calendar) == len(_calendar(years, parse_duration(bar), calendar))


@pytest.mark.parametrize("call", [
    lambda: gbm(7, 1e9), lambda: synthetic_series(0, 1e9), lambda: synthetic_market(3, 1e9),
    lambda: gbm(1, float("inf")), lambda: gbm(1, 300, bar="1d"),
])
def test_impossible_sizes_are_refused_at_once(call):
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        call()
    assert time.perf_counter() - started < 1.0
    assert info.value.field == "years" and ("2262-04-11" in str(info.value) or "finite" in str(info.value))


def test_sizes_beyond_the_available_memory_are_refused():
    available = available_memory()
    if available is None:
        pytest.skip("the platform does not report available memory")
    years = 200  # 1000 assets of 200 years of minutes: 19.7e9 bars, far beyond any machine's memory
    need = float(bar_count(years, "1min")) * 1000 * 8
    assert need > available
    with pytest.raises(ConfigError, match=r"needs about .* of memory, but only .* is available; use fewer years"):
        gbm(1000, years, bar="1min")
    with pytest.raises(ConfigError, match="of memory"):
        require_memory(available * 2, what="twice the free memory")
    assert format_bytes(2**40) == "1.0 TiB"


def test_the_cli_says_so_in_one_line(tmp_path):
    runner = CliRunner()
    for args in (["data", "synth", "--years", "1e9", "--catalog", str(tmp_path / "cat")],
                 ["demo", "--assets", "1000", "--years", "50", "--bar", "1min", "--out", str(tmp_path / "runs")]):
        started = time.perf_counter()
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        assert time.perf_counter() - started < 5
    assert "2262-04-11" in runner.invoke(app, ["data", "synth", "--years", "1e9", "--catalog", str(tmp_path / "c")]).output
    if (available_memory() or 0) < 500 * 2**30:
        assert "of memory" in result.output
    assert not (tmp_path / "cat").exists() and not (tmp_path / "runs").exists()


def test_negative_seeds_and_non_regular_files_are_one_line(tmp_path):
    import os

    from backforge.data.importers import read_file
    from backforge.errors import DataError

    for call in (lambda: gbm(1, 1, seed=-1), lambda: synthetic_series(0, 1, seed=-1), lambda: synthetic_market(1, 1, seed=-2)):
        with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
            call()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # reading it would block forever
        read_file(fifo)
    result = CliRunner().invoke(app, ["data", "quality", str(fifo)])
    assert result.exit_code == 2 and "not a regular file" in result.output
    result = CliRunner().invoke(app, ["demo", "--seed", "-1", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.output.strip() == "error: field seed: seed must be a non-negative integer, got -1"

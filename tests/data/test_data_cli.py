"""``backforge data ...`` commands, driven through Typer's test runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from backforge.data.catalog import Catalog
from backforge.data.cli import data_app

runner = CliRunner()


def run(*args: str, catalog: Path, input: str | None = None):
    result = runner.invoke(data_app, [*args, "--catalog", str(catalog)], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_import_list_show_quality_delete(tmp_path: Path, shared: Path) -> None:
    cat = tmp_path / "cat"
    result = run("import", str(shared / "GOOG.csv"), "--symbol", "GOOG", catalog=cat)
    assert result.exit_code == 0
    assert "2,148 rows read" in result.output and "GOOG 1d: 2,148 rows added" in result.output
    result = run("import", str(shared / "fxcm-usdjpy-m1-bid-2013.csv"), "--ask", str(shared / "fxcm-usdjpy-m1-ask-2013.csv"),
                 "--symbol", "USDJPY", "--policy", "drop", catalog=cat)
    assert result.exit_code == 0 and "crossed_quote: dropped 683 rows" in result.output
    result = run("list", catalog=cat)
    assert result.exit_code == 0 and "GOOG" in result.output and "quote_bars" in result.output
    result = run("show", "GOOG", "--rows", "2", catalog=cat)
    assert result.exit_code == 0 and "2004-08-19" in result.output and "806.19" in result.output
    result = run("quality", "GOOG", catalog=cat)
    assert result.exit_code == 0 and "gaps in time" in result.output
    result = run("delete", "USDJPY", catalog=cat, input="n\n")
    assert result.exit_code == 1
    result = run("delete", "USDJPY", "--yes", catalog=cat)
    assert result.exit_code == 0 and Catalog(cat).symbols() == ["GOOG"]


def test_bad_input_is_one_red_line_and_exit_code_2(tmp_path: Path, shared: Path) -> None:
    cat = tmp_path / "cat"
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Close\n2020-01-02,1\n2020-01-03,oops\n")
    result = run("import", str(bad), "--symbol", "X", catalog=cat)
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "row 3, field Close: cannot parse 'oops'" in lines[0]
    assert "Traceback" not in result.output
    for args in (["import", str(shared / "GOOG.csv")], ["show", "NOPE"], ["import", str(tmp_path / "none.csv"), "--symbol", "X"],
                 ["sql", "SELECT * FROM nope"], ["synth", "--regimes", "x"], ["import", str(shared / "GOOG.csv"), "--symbol", "X", "--policy", "zap"]):
        result = run(*args, catalog=cat)
        assert result.exit_code == 2, args
        assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_quality_of_a_file_with_errors_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n2020-01-02,1,2,0.5,1.5\n")
    result = run("quality", str(bad), catalog=tmp_path / "cat")
    assert result.exit_code == 1 and "duplicate_timestamp" in result.output


def test_synth_and_sql(tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    cat = tmp_path / "cat"
    result = run("synth", "--assets", "3", "--years", "1", "--bar", "1h", "--seed", "7", "--jumps", "2", "--regimes", "1,2", catalog=cat)
    assert result.exit_code == 0 and "wrote 3 synthetic series" in result.output
    catalog = Catalog(cat)
    assert catalog.symbols() == ["AAPL", "GOOG", "MSFT"]
    from backforge.data.synth import synthetic_market

    expected = synthetic_market(3, 1, bar="1h", seed=7, jump_intensity=2, volatility_regimes=(1.0, 2.0))
    assert catalog.load(["AAPL", "MSFT", "GOOG"], bar="1h").fingerprint() == expected.fingerprint()
    result = run("sql", "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol", catalog=cat)
    assert result.exit_code == 0 and "AAPL" in result.output and "1512" in result.output
    out = tmp_path / "eps.csv"
    result = run("sql", "SELECT * FROM fundamentals WHERE field = 'eps'", "--output", str(out), catalog=cat)
    assert result.exit_code == 0 and out.read_text().count("\n") == 1 + 3 * 4


def test_import_fundamentals_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("symbol,field,published_at,value\nA,eps,2020-02-01,1.5\n")
    result = run("import", str(path), "--format", "fundamentals", catalog=tmp_path / "cat")
    assert result.exit_code == 0 and "1 fundamentals rows" in result.output
    assert Catalog(tmp_path / "cat").fundamentals().fields == ("eps",)

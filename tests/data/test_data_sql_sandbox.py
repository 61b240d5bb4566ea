"""``Catalog.sql`` / ``backforge data sql`` is a read-only sandbox over the catalog's views (issue 10, item 1):
no statement reads or writes a file, attaches a database, loads an extension or unlocks the settings;
``--output`` is the only way to write."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("duckdb")

from backforge.data.catalog import Catalog  # noqa: E402
from backforge.data.cli import data_app  # noqa: E402
from backforge.data.synth import gbm, synthetic_fundamentals  # noqa: E402
from backforge.errors import DataError  # noqa: E402


@pytest.fixture()
def filled(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog")
    cat.write_market(gbm(2, 1, bar="1d", seed=3))
    cat.write_fundamentals(synthetic_fundamentals(("AAPL", "MSFT"), 1, seed=3))
    return cat


def _refused(cat: Catalog, query: str) -> str:
    with pytest.raises(DataError) as info:
        cat.sql(query)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_no_statement_reaches_the_file_system(filled: Catalog, tmp_path: Path, snapshot) -> None:
    before = snapshot(filled.root)
    data_file = next(filled.root.glob("AAPL/1d/v*/data.parquet"))
    for query in (
        f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'",
        f"COPY (SELECT * FROM bars WHERE symbol = 'MSFT') TO '{data_file}' (FORMAT parquet)",
        f"COPY (SELECT * FROM bars WHERE symbol = 'MSFT') TO '{data_file}' (FORMAT parquet, USE_TMP_FILE false)",
        "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM read_parquet('{data_file}')",
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        f"EXPORT DATABASE '{tmp_path / 'export'}'",
        "INSTALL httpfs", "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        f"SET lock_configuration = false; COPY (SELECT 1) TO '{tmp_path / 'out2.csv'}'",
    ):
        message = _refused(filled, query)
        assert "field query" in message, message
    assert not any(tmp_path.glob("out*.csv")) and not (tmp_path / "other.duckdb").exists() and not (tmp_path / "export").exists()
    assert snapshot(filled.root) == before  # the catalog's own files are untouched
    assert filled.read("AAPL").equals(Catalog(filled.root).read("AAPL"))
    assert filled.sql("SELECT count(*) AS n FROM bars WHERE symbol = 'AAPL'")["n"][0] == filled.read("AAPL").height


def test_the_views_still_answer_and_cannot_be_lost(filled: Catalog) -> None:
    out = filled.sql("SELECT symbol, count(*) AS n, typeof(any_value(timestamp)) AS t FROM bars GROUP BY symbol ORDER BY symbol")
    assert out.rows() == [("AAPL", 252, "TIMESTAMP WITH TIME ZONE"), ("MSFT", 252, "TIMESTAMP WITH TIME ZONE")]
    assert filled.sql("SELECT count(*) AS n FROM series")["n"][0] == 2
    assert filled.sql("SELECT count(DISTINCT field) AS n FROM fundamentals")["n"][0] == 5
    filled.sql("DROP VIEW bars")  # only this query's private in-memory session is affected
    assert filled.sql("SELECT count(*) AS n FROM bars")["n"][0] == 504


def test_output_is_the_only_way_to_write(filled: Catalog, tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "result" / "aapl.parquet"
    result = runner.invoke(data_app, ["sql", "SELECT * FROM bars WHERE symbol = 'AAPL'", "--output", str(target),
                                      "--catalog", str(filled.root)])
    assert result.exit_code == 0, result.output
    import polars as pl

    assert pl.read_parquet(target).height == 252 and not list(target.parent.glob(".*.tmp"))
    result = runner.invoke(data_app, ["sql", f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", "--catalog", str(filled.root)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "--output" in result.output
    assert not (tmp_path / "x.csv").exists()

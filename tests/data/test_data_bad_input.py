"""Malformed files get a precise DataError (file, line, column) and leave the catalog unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backforge.data.catalog import Catalog
from backforge.data.importers import read_file
from backforge.errors import DataError

GOOD = "Date,Open,High,Low,Close,Volume\n" + "".join(
    f"2020-01-{d:02d},10,11,9,10.5,100\n" for d in range(1, 11)
)


def write(tmp_path: Path, content: str | bytes, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture()
def filled(tmp_path: Path, shared: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog")
    cat.import_file(shared / "GOOG.csv", symbol="GOOG")
    cat.import_file(shared / "truefx-usdjpy-ticks.csv", symbol="USDJPY")
    return cat


CASES = [
    # (content, expected message fragment, line, field)
    ("Date,Open,High\n2020-01-02,1,2\n", "no price column found", None, "close"),
    ("Time,Price2\n2020-01-02,1\n", "no price column found", None, "close"),
    ("open,close\n1,2\n", "no timestamp column found", None, "timestamp"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,2\n2020-13-45,3\n2020-01-05,4\n", "invalid timestamp '2020-13-45'", 4, "Date"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,2\nyesterday,3\n", "cannot parse timestamp 'yesterday'", 4, "Date"),
    ("Date,Close\n13/01/2020,1\n14/01/2020,2\n01/15/2020,3\n", "cannot parse timestamp '01/15/2020'", 4, "Date"),
    ("Date,Close\n02/01/2020,1\n03/01/2020,2\n", "ambiguous timestamps", None, "Date"),
    ("timestamp,bid,ask\n2020-01-02T00:00:00+00:00,1,2\n2020-01-02T00:00:01+00:00,1,2\n2020-01-02T00:00:02,1,2\n",
     "mixed time zones", 4, "timestamp"),
    ("timestamp,bid,ask\n2020-01-02T00:00:00,1,2\n2020-01-02T00:00:01Z,1,2\n", "mixed time zones", 3, "timestamp"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,abc\n", "cannot parse 'abc' as a number", 3, "Close"),
    ("Date;Close\n2020-01-02;1,5\n", "decimal commas", 2, "Close"),
    ("Date,Close\n2020-01-02,1\n2020-01-03,2,7\n2020-01-04,3\n", "expected 2 fields, found 3", 3, None),
    ("Date,Close\n", "no data rows", None, None),
    ("\n\n  \n", "empty file", None, None),
    ("", "empty file (0 bytes)", None, None),
    (b"PK\x03\x04\x14\x00\x00\x00", "zip or Excel", None, None),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content (a NUL byte at offset 8)", None, None),
    (b"Date,Close\n2020-01-02,1\xff\xfe\n", "not UTF-8 text (undecodable byte 0xff at offset 23)", None, None),
    (b"\x1f\x8b\x08\x00garbage", "cannot read the file", None, None),
    (b"PAR1not really parquet", "cannot read Parquet file", None, None),
    ("Date,Close\n2020-01-02,1\n", "unknown format 'yahooo'; use one of", None, "format"),
]


@pytest.mark.parametrize(("content", "fragment", "line", "field"), CASES, ids=[c[1][:30] for c in CASES])
def test_malformed_file_precise_error_and_catalog_unchanged(tmp_path: Path, filled: Catalog, snapshot, content, fragment, line, field) -> None:
    path = write(tmp_path, content)
    before = snapshot(filled.root)
    fmt = "yahooo" if "unknown format" in fragment else "auto"
    with pytest.raises(DataError) as info:
        filled.import_file(path, symbol="GOOG", format=fmt)
    err = info.value
    assert fragment in err.message
    assert err.path == str(path)
    assert err.row == line
    if field is not None:
        assert err.field == field
    assert snapshot(filled.root) == before
    assert filled.load("GOOG", bar="1d").n_bars == 2148


def test_wrong_explicit_delimiter_names_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "Date;Open;High;Low;Close\n2020-01-02;1;2;0.5;1.5\n")
    with pytest.raises(DataError, match="seems to use ';' as delimiter, not ','"):
        read_file(path, delimiter=",")


def test_unparsable_timestamp_deep_in_a_large_file_reports_its_line(tmp_path: Path) -> None:
    n = 300_000
    stamps = pl.datetime_range(pl.datetime(2020, 1, 1), pl.datetime(2020, 1, 1) + pl.duration(seconds=n - 1), "1s", eager=True)
    frame = pl.DataFrame({"timestamp": stamps.dt.strftime("%Y-%m-%d %H:%M:%S"), "bid": 1.0, "ask": 1.1})
    text = frame.write_csv().splitlines()
    text[250_001] = "2020-01-03 25:00:00,1.0,1.1"  # line 250,002 of the file
    path = write(tmp_path, "\n".join(text) + "\n")
    with pytest.raises(DataError) as info:
        read_file(path)
    assert info.value.row == 250_002 and "'2020-01-03 25:00:00'" in info.value.message


def test_blank_lines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Close\n2020-01-02,1\n\n2020-01-03,2\n\n2020-01-04,x\n")
    with pytest.raises(DataError) as info:
        read_file(path)
    assert info.value.row == 6


def test_bad_rows_are_refused_under_the_default_policy(tmp_path: Path, filled: Catalog, snapshot) -> None:
    path = write(tmp_path, "Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n2020-01-03,1,0.5,2,1.5\n2020-01-03,1,2,0.5,1.5\n")
    before = snapshot(filled.root)
    with pytest.raises(DataError) as info:
        filled.import_file(path, symbol="NEW")
    assert info.value.row == 3 and info.value.field == "high" and "high below low" in info.value.message
    assert "other kind" in info.value.message  # the duplicate is mentioned too
    assert snapshot(filled.root) == before


def test_local_time_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Close\n2020-03-08 01:30,1\n2020-03-08 02:30,2\n")
    with pytest.raises(DataError, match="does not exist or is ambiguous in America/New_York") as info:
        read_file(path, timezone="America/New_York")
    assert info.value.row == 3


def test_timezone_option_conflicts_with_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Close\n2020-01-02T10:00:00+01:00,1\n")
    with pytest.raises(DataError, match="carry UTC offsets"):
        read_file(path, timezone="Europe/Paris")


def test_unknown_timezone_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Close\n2020-01-02,1\n")
    with pytest.raises(DataError, match="did you mean 'America/New_York'"):
        read_file(path, timezone="America/NewYork")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_file(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        read_file(tmp_path)


def test_parquet_without_price_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pl.DataFrame({"timestamp": [1, 2], "foo": [1.0, 2.0]}).write_parquet(path)
    with pytest.raises(DataError, match="no price column found"):
        read_file(path)


# ---------------------------------------------------------------------- fuzzing

def _outcome(path: Path) -> str:
    """Read a file: 'ok' or 'error'; anything but DataError fails the test."""
    try:
        read_file(path)
    except DataError as exc:
        assert exc.path == str(path)
        assert exc.message
        return "error"
    return "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_raise_data_error_only(tmp_path: Path, data: bytes) -> None:
    _outcome(write(tmp_path, data))


_mutation = st.tuples(
    st.integers(min_value=0, max_value=10),  # line
    st.integers(min_value=0, max_value=5),  # field
    st.one_of(st.text(max_size=12), st.sampled_from(["", "nan", "-1", "1e400", "2020-02-30", "24:00", ",", ";", '"', "\x00"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutation, min_size=1, max_size=3), truncate=st.integers(min_value=0, max_value=len(GOOD)))
def test_fuzz_mutated_csv_is_read_or_refused_precisely(tmp_path: Path, mutations, truncate: int) -> None:
    lines = [line.split(",") for line in GOOD[: max(truncate, 40)].splitlines()]
    for line, field, value in mutations:
        if line < len(lines) and field < len(lines[line]):
            lines[line][field] = value
    text = "\n".join(",".join(fields) for fields in lines) + "\n"
    path = write(tmp_path, text.encode("utf-8", "surrogatepass"))
    try:
        fd = read_file(path)
    except DataError as exc:
        assert exc.path == str(path)
        if exc.row is not None:
            assert 1 <= exc.row <= text.count("\n") + 1
        return
    assert fd.frame["timestamp"].dtype == pl.Datetime("ns", "UTC")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["2020-01-02", "2020-01-03", "2020-01-01", "bad"]),
                               st.floats(allow_nan=True, allow_infinity=True, width=32)), min_size=1, max_size=6),
       policy=st.sampled_from(["error", "drop", "repair"]))
def test_fuzz_import_is_all_or_nothing(tmp_path_factory, shared: Path, rows, policy: str) -> None:
    from hypothesis import assume

    root = tmp_path_factory.mktemp("fuzz")
    cat = Catalog(root / "catalog")
    cat.import_file(shared / "BTCUSD.csv", symbol="BTC")
    before = {str(p.relative_to(cat.root)): p.read_bytes() for p in sorted(cat.root.rglob("*")) if p.is_file() and p.name != ".lock"}
    path = write(root, "date,close\n" + "".join(f"{d},{v!r}\n" for d, v in rows))
    assume(os.path.getsize(path) > 0)
    try:
        cat.import_file(path, symbol="BTC", policy=policy, bar="1mo")
    except DataError:
        after = {str(p.relative_to(cat.root)): p.read_bytes() for p in sorted(cat.root.rglob("*")) if p.is_file() and p.name != ".lock"}
        assert after == before
        return
    md = cat.load("BTC", bar="1mo")
    md.validate()


@pytest.mark.parametrize("bar", ["5h", "1w", "1min"])
def test_a_bar_label_the_data_contradicts_is_refused(tmp_path, bar):
    """Issue 10, item 17: ``--bar 5h`` on daily bars was stored under the wrong label."""
    import backforge.data as data
    import backforge.errors as bf_errors

    catalog = data.Catalog(tmp_path / "cat")
    frame = data.normalize_frame(__import__("polars").DataFrame({
        "date": ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08"],
        "close": [1.0, 2.0, 3.0, 4.0, 5.0]})).frame
    with pytest.raises(bf_errors.DataError, match=rf"the bars are 1d apart .* --bar says {bar}") as caught:
        catalog.write("X", frame, kind="bars", bar=bar)
    assert caught.value.field == "bar" and not catalog.list()
    assert catalog.write("X", frame, kind="bars", bar="1d").rows == 5

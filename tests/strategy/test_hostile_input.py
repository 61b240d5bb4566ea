"""Hostile and out-of-range strategy files: each one is refused with one clear line naming the file or
field, before anything expensive happens (issue 10, items 4, 5 and 17)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backforge.errors import BackforgeError, ConfigError
from backforge.strategy.schema import load_portfolio, read_config

BASE = """name: hostile
universe: [AAA]
strategies:
  - name: s
    condition: {lhs: close, op: ">", rhs: {sma: {window: 20}}}
    action: {buy: {allocation: {equity_fraction: 0.5}}}
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _alias_bomb() -> str:
    text = BASE + 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ", ".join(f"*{previous}" for _ in range(9)) + "]\n"
        previous = name
    return text


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`backforge` in a fresh interpreter (nothing imported by the test process can hide a missing import)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "backforge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# ------------------------------------------------------------------------------------ item 4

def test_deep_nesting_is_refused_before_parsing(tmp_path):
    flow = _write(tmp_path, BASE + "extra: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"nested more than \d+ levels deep"):
        read_config(flow)
    block = _write(tmp_path, "".join("  " * i + "a:\n" for i in range(200)), "block.yaml")
    with pytest.raises(ConfigError, match="block.yaml: nested more than"):
        read_config(block)
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ConfigError, match="nested more than"):
        load_portfolio(deep)


def test_alias_bomb_is_refused_quickly(tmp_path):
    path = _write(tmp_path, _alias_bomb())
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than .* YAML aliases"):
        load_portfolio(path)
    assert time.perf_counter() - started < 5
    # a recursive alias cannot loop either
    with pytest.raises(ConfigError, match="recursive"):
        read_config(_write(tmp_path, "name: &a [*a]\n", "rec.yaml"))
    # ordinary aliases still work
    shared = BASE.replace("equity_fraction: 0.5", "equity_fraction: *half") + "half: &half 0.5\n"
    shared = shared.replace("half: &half 0.5\n", "")
    shared = "x-defaults: {f: &half 0.5}\n" + shared
    with pytest.raises(ConfigError, match="unknown field 'x-defaults'"):  # aliases resolved, then validated
        load_portfolio(_write(tmp_path, shared, "alias.yaml"))


def test_devices_fifos_and_huge_files_are_not_read(tmp_path):
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        read_config(Path("/dev/zero"))
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="pipe.yaml: not a regular file"):
        read_config(fifo)
    assert time.perf_counter() - started < 5
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(5 * 1024 * 1024)
    with pytest.raises(ConfigError, match="big.yaml: the file is 5,242,880 bytes"):
        read_config(big)
    with pytest.raises(ConfigError, match="not found"):
        read_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        read_config(Path(tmp_path))


def test_cli_refuses_a_fifo_in_one_line(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    _one_line_error(_cli("validate", str(fifo), timeout=30), "fifo.yaml", "not a regular file")


@pytest.mark.slow
def test_cli_refuses_an_alias_bomb_and_deep_nesting_in_one_line(tmp_path):
    bomb = _write(tmp_path, _alias_bomb(), "bomb.yaml")
    _one_line_error(_cli("validate", str(bomb), timeout=30), "bomb.yaml", "alias")
    deep = _write(tmp_path, BASE + "extra: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    _one_line_error(_cli("validate", str(deep), timeout=30), "deep.yaml", "nested more than")


# ------------------------------------------------------------------------------------ item 17: duplicate keys

def test_duplicate_keys_are_refused_with_the_key_and_line(tmp_path):
    text = BASE.replace("name: s\n", "name: s\n    name: t\n")
    with pytest.raises(ConfigError, match=r"s.yaml: duplicate key 'name' at line 5 \(first given at line 4\)"):
        load_portfolio(_write(tmp_path, text))
    json_text = '{"name": "a", "universe": ["A"], "name": "b", "strategies": [{"name": "s", "action": {"kind": "alert"}}]}'
    with pytest.raises(ConfigError, match=r"s.json: duplicate key 'name' at line 1"):
        load_portfolio(_write(tmp_path, json_text, "s.json"))
    # merge keys may override what they merge in (that is what they are for)
    merged = "base: &b {window: 5}\n" + "x: {<<: *b, window: 7}\n"
    assert read_config(merged)[0]["x"] == {"window": 7}


# ------------------------------------------------------------------------------------ items 5 and 17: numbers

@pytest.mark.parametrize("edit, where", [
    (("window: 20", "window: .inf"), "window"),
    (("window: 20", "window: .nan"), "window"),
    (("equity_fraction: 0.5", "equity_fraction: .inf"), "allocation.value"),
    (("equity_fraction: 0.5", "equity_fraction: true"), "allocation.value"),
])
def test_non_finite_and_boolean_numbers_are_refused(tmp_path, edit, where):
    with pytest.raises(ConfigError) as info:
        load_portfolio(_write(tmp_path, BASE.replace(*edit)))
    assert where in str(info.value) and "s.yaml" in str(info.value)


@pytest.mark.parametrize("extra, where, words", [
    ("costs: {fee_rate: true}", "costs.fee_rate", "not a boolean"),
    ("costs: {fee_rate: {AAA: true}}", "costs.fee_rate", "not a boolean"),
    ("costs: {leverage: .inf}", "costs.leverage", "finite"),
    ("costs: {allow_short: 1}", "costs.allow_short", "boolean"),
    ("cash: .inf", "cash", "finite"),
    ("data: {years: .inf}", "data.years", "finite"),
    ("data: {years: 1e308}", "data.years", "less than or equal to 200"),
    ("data: {years: 100000}", "data.years", "less than or equal to 200"),
    ("data: {seed: -1}", "data.seed", "greater than or equal to 0"),
    ("data: {seed: 99999999999999999999999}", "data.seed", "less than or equal to"),
    ("data: {seed: true}", "data.seed", "not a boolean"),
    ("data: {bar: 5parsecs}", "data.bar", "unknown duration unit"),
    ("data: {start: garbage}", "data.start", "not a date/time"),
    ("data: {end: '2020-03-16T25:00'}", "data.end", "not a date/time"),
    ("data: {start: ''}", "data.start", "not a date/time"),
])
def test_out_of_range_fields_name_their_field(tmp_path, extra, where, words):
    with pytest.raises(ConfigError) as info:
        load_portfolio(_write(tmp_path, BASE + extra + "\n"))
    message = str(info.value)
    assert f"s.yaml: {where}" in message and words in message, message


def test_plain_numbers_still_load():
    p = load_portfolio(BASE + "cash: 5000\ncosts: {fee_rate: 1e-4, lot_size: {AAA: 10}}\ndata: {years: 2.5, seed: 0}\n")
    assert p.cash == 5000.0 and p.costs.fee_rate == 1e-4 and p.costs.lot_size == {"AAA": 10.0}
    assert p.data.years == 2.5 and p.data.seed == 0


def test_garbage_is_still_one_error():
    with pytest.raises(BackforgeError, match="not valid YAML/JSON at line"):
        read_config("name: [unclosed\nuniverse: x")


def test_an_empty_or_nat_period_is_not_a_time():
    from backforge.strategy.compiler import _scalar_ns

    for value in ("", "NaT", "garbage"):
        with pytest.raises(ConfigError, match="not a date/time"):
            _scalar_ns(value, "start")

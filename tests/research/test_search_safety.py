"""Searches that cannot hang, explode, collide or outlive their parent (issue 10, items 5, 9-11, 14, 16;
issue 18: the frozen search config)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge.errors import ConfigError
from backforge.research.folders import INCOMPLETE_MARKER, ResultFolder
from backforge.research.optimize import LocalExecutor, SearchConfig, _probes, optimize
from backforge.research.params import ParameterSpace
from backforge.research.walkforward import walk_forward, windows

SRC = str(Path(__file__).resolve().parents[2] / "src")


def huge(n_values: int = 1000, n_params: int = 4) -> dict:
    """A strategy whose grid has ``n_values ** n_params`` combinations (10^12 by default)."""
    names = [f"p{i}" for i in range(n_params)]
    conditions = [{"lhs": {"sma": {"window": {"param": name, "range": [2, 1 + n_values]}}}, "op": ">", "rhs": 0}
                  for name in names]
    return {"name": "huge", "universe": ["AAPL"], "strategies": [
        {"name": "in", "condition": {"all": conditions}, "action": {"buy": {}}}]}


@pytest.fixture(scope="module")
def data():
    return bf.synth(n_assets=1, years=3, seed=3)


# ------------------------------------------------------------------------------ search config (issue 18)

def test_search_config_is_frozen_keyword_only_and_checked():
    config = SearchConfig(method="random", samples=5, seed=3)
    with pytest.raises(Exception):
        config.seed = 4  # frozen
    with pytest.raises(ConfigError, match="unknown search option 'metod'; did you mean 'method'"):
        SearchConfig(metod="grid")
    for seed, words in ((-1, "greater than or equal to 0"), (99999999999999999999999, "less than or equal to")):
        with pytest.raises(ConfigError, match=words):
            SearchConfig(seed=seed)
    with pytest.raises(ConfigError, match="unknown metric 'sharp'"):
        SearchConfig(metric=["sharpe", "sharp"])
    with pytest.raises(ConfigError, match="mutation_rate"):
        SearchConfig(mutation_rate=float("inf"))
    with pytest.raises(TypeError):
        SearchConfig("grid")  # keyword-only


def test_optimize_refuses_bad_seeds_before_any_work(data):
    with pytest.raises(ConfigError, match="seed"):
        optimize(huge(3, 2), data, method="random", seed=-1, executor=LocalExecutor(1))


# ------------------------------------------------------------------------------ item 14: huge grids

def test_a_huge_grid_is_refused_from_its_count(data):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"grid search over 1,000,000,000,000 combinations .* use method random"):
        optimize(huge(), data, method="grid", executor=LocalExecutor(1))
    assert time.perf_counter() - started < 3


def test_probes_and_sampling_never_walk_a_huge_grid():
    space = ParameterSpace.from_config({**huge(), "constraints": ["p0 < p1", "p2 < p3"]})
    started = time.perf_counter()
    probes = _probes(space)
    sample = space.sample(20, seed=5)
    assert time.perf_counter() - started < 2
    assert {p["p0"] for p in probes} >= {2} and all(space.allowed(p) for p in probes)
    assert len(sample) == 20 and sample == space.sample(20, seed=5) and all(space.allowed(v) for v in sample)
    with pytest.raises(ConfigError, match="range has 1,000,000,001 values"):
        ParameterSpace.from_config({"a": {"param": "x", "range": [0, 1_000_000_000]}})


def test_random_and_genetic_search_sample_a_huge_space_deterministically(data):
    raw = huge(300, 3)  # 27 million combinations: never enumerated
    one = optimize(raw, data, method="random", samples=4, seed=9, executor=LocalExecutor(1))
    two = optimize(raw, data, method="random", samples=4, seed=9, executor=LocalExecutor(1))
    assert one.n_trials == 4 and [t.params for t in one.trials] == [t.params for t in two.trials]
    gen = optimize(raw, data, method="genetic", population=4, generations=2, seed=1, executor=LocalExecutor(1))
    assert 4 <= gen.n_trials <= 8


# ------------------------------------------------------------------------------ items 5 and 16: periods

def test_walk_forward_spans_cannot_overflow():
    ts = np.arange(100, dtype=np.int64) * 86_400_000_000_000
    with pytest.raises(ConfigError, match="in_sample '300y' must be a duration between"):
        windows(ts, "300y", 10)


def test_walk_forward_covers_only_the_period_it_is_given(data):
    raw = huge(3, 1)
    lo, hi = 126, 126 + 252 + 2 * 126
    wf = walk_forward(raw, data, in_sample=252, out_of_sample=126, start=lo, end=hi, executor=LocalExecutor(1),
                      method="grid")
    first = wf.equity["timestamp"].cast(int).to_numpy()[0]
    last = wf.equity["timestamp"].cast(int).to_numpy()[-1]
    assert first == data.timestamps[lo + 252] and last <= data.timestamps[hi - 1]


STRATEGY = """
name: period
universe: [AAPL]
strategies:
  - name: in
    condition: {lhs: close, op: ">", rhs: {sma: {window: {param: n, choices: [5, 10]}}}}
    action: {buy: {}}
  - name: out
    condition: {lhs: close, op: "<", rhs: {sma: {window: {param: n, choices: [5, 10]}}}}
    action: {close: {}}
data: {years: 3, seed: 2, start: "2016-01-04", end: "2016-12-30"}
"""


def _optimize_cli(tmp_path: Path, *extra: str):
    from backforge.cli import app

    strategy = tmp_path / "period.yaml"
    strategy.write_text(STRATEGY)
    return CliRunner().invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "1", "--out",
                                    str(tmp_path / "out"), *extra])


def test_optimize_honours_the_strategy_period_and_checks_the_heatmap_first(tmp_path):
    result = _optimize_cli(tmp_path, "--heatmap", "n,nope")
    assert result.exit_code == 2 and "unknown parameter 'nope'" in result.output
    assert not (tmp_path / "out").exists()  # refused before the search, nothing written
    result = _optimize_cli(tmp_path)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out").iterdir()
    summary = bf.load_result(folder / "best-1").summary()
    assert summary["start"][:10] >= "2016-01-04" and summary["end"][:10] <= "2016-12-30"
    again = _optimize_cli(tmp_path)  # the same second: another folder, never shared
    assert again.exit_code == 0, again.output
    assert len([p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]) == 2


# ------------------------------------------------------------------------------ items 9-11: folders

def test_result_folders_are_unique_and_appear_only_complete(tmp_path):
    a, b = ResultFolder(tmp_path, "optimize-x"), ResultFolder(tmp_path, "optimize-x")
    assert a.final != b.final and a.path != b.path
    assert (a.path / INCOMPLETE_MARKER).exists() and not a.final.exists()
    (a.path / "summary.json").write_text("{}")
    final = a.commit()
    assert final.is_dir() and not a.path.exists() and not (final / INCOMPLETE_MARKER).exists()
    with pytest.raises(RuntimeError):
        with b:
            raise RuntimeError("boom")
    assert not b.path.exists() and not b.final.exists()


def test_concurrent_saves_to_one_folder_never_show_a_half_run(tmp_path):
    data = bf.synth(n_assets=1, years=1, seed=3)
    result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    target = tmp_path / "same"
    result.save(target)
    expected = sorted(p.name for p in target.iterdir())
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for _ in range(4):
                result.save(target)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        while not done.is_set():
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)  # never missing: FileNotFoundError fails the test
            try:
                names = sorted(os.listdir(fd))
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            # a listing may be short only when that folder was an old run already swapped out and being removed
            if names != expected and os.stat(target).st_ino == inode:
                errors.append(AssertionError(f"half a run at the target: {names}"))
                return

    writers = [threading.Thread(target=write) for _ in range(4)]
    def read_safely() -> None:
        try:
            read()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    reader = threading.Thread(target=read_safely)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    reader.join(10)
    assert not errors, errors
    assert sorted(p.name for p in target.iterdir()) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["same"]  # no temporary folder left behind


def test_a_search_killed_while_saving_leaves_only_a_marked_temporary_folder(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {SRC!r})
        from backforge.research.folders import ResultFolder
        folder = ResultFolder({str(tmp_path)!r}, "optimize-killed")
        for rank in range(1, 4):
            (folder.path / f"best-{{rank}}").mkdir()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".optimize-killed-") and left.name.endswith(".incomplete")
    assert (left / INCOMPLETE_MARKER).exists()


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_optimize(tmp_path):
    strategy = tmp_path / "big.yaml"
    strategy.write_text(STRATEGY.replace("choices: [5, 10]", "range: [2, 400]"))
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "backforge.cli", "optimize", str(strategy), "--workers", "2",
                             "--out", str(tmp_path / "out")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [pid for pid in _children(proc.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
            if len(workers) >= 2:
                break
            time.sleep(0.5)
        assert len(workers) >= 2, "the search did not start its workers"
        time.sleep(2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.25)
        assert not any(_alive(pid) for pid in workers), "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


def test_monte_carlo_refuses_a_seed_beyond_its_uint64_state():
    from backforge.research.montecarlo import monte_carlo

    data = bf.synth(n_assets=1, years=1, seed=3)
    result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    with pytest.raises(ConfigError, match="seed must be a whole number <= 18446744073709551615"):
        monte_carlo(result, seed=99999999999999999999999, n_simulations=10)
    with pytest.raises(ConfigError, match="seed must be a whole number >= 0"):
        monte_carlo(result, seed=-1, n_simulations=10)


@pytest.mark.slow
def test_four_concurrent_identical_cli_runs_leave_one_complete_folder(tmp_path):
    """Issue 10 item 9 as reported: four `backforge run examples/sma_cross.yaml --out same` at once."""
    example = Path(__file__).resolve().parents[2] / "examples" / "sma_cross.yaml"
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-m", "backforge.cli", "run", str(example), "--out", str(tmp_path)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
    (folder,) = [p for p in tmp_path.iterdir()]
    names = {p.name for p in folder.iterdir()}
    assert {"equity.parquet", "trades.parquet", "metrics.json", "config.json", "report.html"} <= names
    bf.load_result(folder).metrics()


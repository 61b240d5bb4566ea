"""Event engine benchmark (issue 15), with hftbacktest in the same run.

1. **L2 + queue model + market maker**: the synthetic L2 market (``synthetic_l2``), the grid market
   maker every 100 ms (20 post-only orders, risk-averse queue, 5 ms order latency each way) —
   backforge and hftbacktest (``ROIVectorMarketDepthBacktest``, the same strategy code) on the same
   events. Figure: events per second of the run (compiled code warm; data generation excluded).
2. **Quotes**: ``synthetic_quotes`` (bid/ask pairs, two rows each) through the quote breakout strategy
   evaluated on every tick (``wait_next_feed``).

    PYTHONPATH=src python3 benchmarks/bench_events.py            # 5M L2 events, 10M quote ticks
    PYTHONPATH=src python3 benchmarks/bench_events.py --quick    # 1M / 1M, no BENCHMARKS.md update
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_section  # noqa: E402

from backforge.data.events import synthetic_l2, synthetic_quotes  # noqa: E402
from backforge.engine.events import EventConfig, new_sim  # noqa: E402
from backforge.engine.events import core as c  # noqa: E402
from backforge.engine.events.strategies import grid_market_maker, quote_breakout  # noqa: E402

GRID = (100_000_000, 2, 1, 10, 0.1, 1.0)  # step, half spread ticks, interval ticks, levels, qty, max position
LATENCY = 5_000_000


CPU: dict[str, float] = {}


def best_of(function, repeats: int, label: str = "") -> float:
    """Best wall time of ``repeats`` runs; the best CPU time of this process goes to ``CPU[label]`` (on a
    loaded machine the wall time includes waiting for a core; the CPU time does not)."""
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[label] = min(cpu)
    return min(times)


def state_bytes(sim) -> int:
    """Bytes the engine allocates for a run (every array of the state but the six event columns)."""
    return sum(getattr(sim, name).nbytes for name in sim._fields[6:])


def l2_scenario(n_events: int, repeats: int, peers: bool) -> dict:
    data = synthetic_l2(n_events=n_events, seed=2024)
    cfg = EventConfig(entry_latency_ns=LATENCY, response_latency_ns=LATENCY, maker_fee=-0.00005, taker_fee=0.0007)
    small = synthetic_l2(n_events=50_000, seed=1)
    grid_market_maker(new_sim(small, cfg), *GRID)  # warm (compiled code is cached on disk)
    holder = {}

    def ours():
        sim = new_sim(data, cfg)
        grid_market_maker(sim, *GRID)
        holder["fills"] = int(sim.ints[c.I_NFILL])

    seconds = best_of(ours, repeats, "l2")
    holder["state_mib"] = state_bytes(new_sim(data, cfg)) / 2**20
    holder["state_small_mib"] = state_bytes(new_sim(small, cfg)) / 2**20
    row = {"events": len(data), "backforge_s": seconds, "backforge_rate": len(data) / seconds, "fills": holder["fills"],
           "backforge_cpu": CPU["l2"],
           "state_mib": holder["state_mib"], "state_small_mib": holder["state_small_mib"]}
    if peers:
        try:
            from _hbt_grid import build_hbt, hbt_grid
        except ImportError:
            return row
        events = data.to_hftbacktest()
        lo, hi = data.price_range()
        out, out_ts = np.zeros((2_000_000, 5)), np.zeros(2_000_000, dtype=np.int64)

        def theirs():
            hbt = build_hbt(events, tick_size=data.tick_size, lot_size=data.lot_size, entry_ns=LATENCY,
                            response_ns=LATENCY, queue_model="risk_averse", maker_fee=-0.00005, taker_fee=0.0007,
                            roi=(lo - 200 * data.tick_size, hi + 200 * data.tick_size))
            holder["hbt_fills"] = hbt_grid(hbt, *GRID, out, out_ts)
            hbt.close()

        small_events = small.to_hftbacktest()  # hftbacktest reads this memory: keep it alive
        hbt_small = build_hbt(small_events, tick_size=0.1, lot_size=0.001, entry_ns=LATENCY,
                              response_ns=LATENCY, queue_model="risk_averse")
        hbt_grid(hbt_small, *GRID, out, out_ts)
        hbt_small.close()
        row["hftbacktest_s"] = best_of(theirs, repeats, "hbt")
        row["hftbacktest_rate"] = len(data) / row["hftbacktest_s"]
        row["hftbacktest_cpu"] = CPU["hbt"]
        row["hftbacktest_fills"] = holder["hbt_fills"]
    return row


def quote_scenario(n_ticks: int, repeats: int) -> dict:
    data = synthetic_quotes(n_ticks=n_ticks, seed=7, mean_gap_ns=100_000_000)
    cfg = EventConfig(entry_latency_ns=LATENCY, response_latency_ns=LATENCY, taker_fee=0.00002, sample_every="1min")
    quote_breakout(new_sim(synthetic_quotes(n_ticks=10_000, seed=1), cfg), 200, 1_000.0, True, 0)
    holder = {}

    def ours():
        sim = new_sim(data, cfg)
        holder["observations"] = quote_breakout(sim, 200, 1_000.0, True, 0)
        holder["fills"] = int(sim.ints[c.I_NFILL])

    seconds = best_of(ours, repeats, "quotes")
    return {"ticks": n_ticks, "rows": len(data), "backforge_s": seconds, "rate": n_ticks / seconds,
            "backforge_cpu": CPU["quotes"], **holder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1M events / 1M ticks, one repeat, no BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section without updating BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.events, args.ticks, args.repeats = 1_000_000, 1_000_000, 1
    l2 = l2_scenario(args.events, args.repeats, not args.no_peers)
    quotes = quote_scenario(args.ticks, args.repeats)
    m = machine()
    target_l2, target_quotes = 5_000_000, 2.0
    l2_ok = "✓" if l2["backforge_rate"] >= target_l2 else f"✗ wall, {'✓' if l2['events'] / l2['backforge_cpu'] >= target_l2 else '✗'} CPU"
    q_ok = ("✓" if quotes["backforge_s"] < target_quotes else "✗") if quotes["ticks"] >= 10_000_000 else "(not at full size)"
    peer = (f"{l2['hftbacktest_s']:.2f} s ({l2['hftbacktest_rate'] / 1e6:.1f} M/s; CPU {l2['hftbacktest_cpu']:.2f} s) | "
            f"{l2['hftbacktest_s'] / l2['backforge_s']:.1f}× | {l2['fills']:,} / {l2['hftbacktest_fills']:,}"
            if "hftbacktest_s" in l2 else f"— | — | {l2['fills']:,} / —")
    lines = [
        "<!-- ticks:start -->",
        "## Event engine (`benchmarks/bench_events.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']}, {m['ram']}, {m['os']}; measured under load (load average {m['load']}); "
        f"{m['date']}.",
        "",
        "| scenario | rows | backforge wall (rows/s) | backforge CPU | hftbacktest wall (rows/s) | hbt ÷ bf | fills bf / hbt | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| L2 grid market maker (20 post-only orders every 100 ms), risk-averse queue, 5 ms latency each way | "
        f"{l2['events']:,} | {l2['backforge_s']:.2f} s ({l2['backforge_rate'] / 1e6:.1f} M/s) | "
        f"{l2['backforge_cpu']:.2f} s ({l2['events'] / max(l2['backforge_cpu'], 1e-9) / 1e6:.1f} M/s) | {peer} | "
        f"≥ 5 M rows/s {l2_ok} |",
        f"| quote breakout (200-tick channel) on every tick, market orders, 5 ms latency | "
        f"{quotes['rows']:,} ({quotes['ticks']:,} ticks) | {quotes['backforge_s']:.2f} s "
        f"({quotes['rows'] / quotes['backforge_s'] / 1e6:.1f} M/s) | {quotes['backforge_cpu']:.2f} s | — | — | "
        f"{quotes['fills']:,} / — | 10 M ticks < 2 s {q_ok} |",
        "",
        f"Engine state (books, order slots, records, equity grid; the event columns are the caller's or memory-mapped): "
        f"{l2['state_mib']:.1f} MiB for {l2['events']:,} L2 rows, {l2['state_small_mib']:.1f} MiB for 50,000 — the book "
        "window and the record capacity, not the number of events, set it (the equity grid grows with the covered time).",
        "",
        "Best of the repeats (wall and this process's CPU time, separately), compiled code warm, data generation "
        "excluded, engine allocation included. hftbacktest runs the same grid strategy (`tests/engine/_hbt_grid.py`) "
        "on the same events converted to its `event_dtype` (its setup included too).",
        "<!-- ticks:end -->",
    ]
    section = "\n".join(lines)
    print(section)
    if not (args.quick or args.no_write):
        write_section("ticks", section)


if __name__ == "__main__":
    main()

"""USDJPY tick breakout with quote fills, spread and latency — beside the same rules on 1-minute
bid/ask bars (issue 15): what the bar simplification costs.

Data: the shared TrueFX USDJPY quotes (2013-01-01 22:00-22:35 UTC, 1,000 ticks; the one locked quote
on line 943 — its bid and its ask record — is dropped by the ``drop`` policy), read from
``$BACKFORGE_SHARED_DATA`` (default ``../shared/data`` beside the repository). Rules: long 100,000 USD when the mid breaks above the
highest mid of the previous 5 minutes, short when it breaks below the lowest (always in the market
after the first signal). Three runs:

1. **bars** — 1-minute bid/ask bars built from the ticks; decisions at each bar's close, market orders
   filled at the next bar's open (ask for buys, bid for sells): the bar engine (`from_signals`).
2. **events, 1-minute decisions** — the same decisions on a 1-minute clock, but the orders reach the
   exchange 50 ms later (and answers come back 50 ms later) and fill at the quote then prevailing.
3. **events, every tick** — the channel (previous 5 minutes) is checked on every quote as it arrives.

Each run prints the half-spread it paid: the distance between each fill and the mid of the quote it
filled against, times the quantity (buys pay the ask, sells receive the bid).

    PYTHONPATH=src python3 examples/events_usdjpy_ticks_vs_bars.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

import backforge as bf
from backforge.data.events import read_truefx_quotes
from backforge.data.paths import resolve_data_path
from backforge.engine.events import EventConfig, api, run_events
from backforge.engine.events.strategies import quote_breakout

SHARED = resolve_data_path("${BACKFORGE_SHARED_DATA:-../../shared/data}", base=Path(__file__).resolve().parent)
UNITS = 100_000.0
WINDOW_MIN = 5
LATENCY_NS = 50_000_000


@njit
def tick_breakout(sim, window_ns, qty):
    """On every quote: target +qty above the previous ``window_ns`` high of the mid, -qty below its low."""
    times = np.empty(100_000, dtype=np.int64)
    mids = np.empty(100_000)
    n = 0
    target = 0.0
    next_id = 1
    first = -1
    while api.wait_next_feed(sim, False, 3_600_000_000_000) != 1:
        mid = api.mid_price(sim)
        now = api.current_timestamp(sim)
        if not np.isfinite(mid) or n >= times.shape[0]:
            continue
        if first < 0:
            first = now
        if now - first >= window_ns:  # a full window of history
            hi = -np.inf
            lo = np.inf
            for k in range(n - 1, -1, -1):
                if times[k] < now - window_ns:
                    break
                hi = max(hi, mids[k])
                lo = min(lo, mids[k])
            if mid > hi:
                target = qty
            elif mid < lo:
                target = -qty
        times[n] = now
        mids[n] = mid
        n += 1
        gap = target - api.position(sim)
        if gap != 0.0 and not api.order_exists(sim, next_id - 1):
            if gap > 0:
                api.submit_buy_order(sim, next_id, 0.0, gap, api.IOC, api.MARKET)
            else:
                api.submit_sell_order(sim, next_id, 0.0, -gap, api.IOC, api.MARKET)
            next_id += 1
    return n


def bar_run(quotes):
    import polars as pl

    from backforge.data.resample import quotes_to_bars

    frame = quotes.to_frame()
    ticks = pl.DataFrame({
        "timestamp": frame.filter(pl.col("side") == 1)["exch_ts"],
        "bid": frame.filter(pl.col("side") == 1)["price"],
        "ask": frame.filter(pl.col("side") == -1)["price"],
    })
    bars = quotes_to_bars(ticks, "1min")
    q = {side: {f: bars[f"{side}_{f}"].to_numpy().reshape(-1, 1) for f in ("open", "high", "low", "close")}
         for side in ("bid", "ask")}
    data = bf.MarketData.from_arrays(bars["timestamp"], close=None, bid=q["bid"], ask=q["ask"], assets=["USDJPY"])
    mid = data.close[:, 0]
    prev_hi = np.array([mid[max(0, t - WINDOW_MIN):t].max() if t >= WINDOW_MIN else np.inf for t in range(len(mid))])
    prev_lo = np.array([mid[max(0, t - WINDOW_MIN):t].min() if t >= WINDOW_MIN else -np.inf for t in range(len(mid))])
    up, down = mid > prev_hi, mid < prev_lo
    return bf.from_signals(data, up, down, down, up, size=UNITS, size_type="units", cash=10_000_000.0, lot_size=1000)


def quote_at_fills(result, quotes):
    """(bid, ask) each fill of ``result`` traded against: an event run's fills, the quote prevailing at the
    exchange when the order arrived; a bar run's, the open of its fill bar."""
    fills = result.fills
    if result.mode == "events":
        side, ts, price = quotes.side, quotes.exch_ts, quotes.price
        at = fills["timestamp"].cast(int).to_numpy()
        books = []
        for s in (1, -1):
            rows = np.flatnonzero(side == s)
            books.append(price[rows][np.searchsorted(ts[rows], at, "right") - 1])
        return books[0], books[1]
    bar = fills["bar"].to_numpy()
    return result.data.bid.open[bar, 0], result.data.ask.open[bar, 0]


def describe(name, result, quotes):
    """Print one run's line; returns its summary and the half-spread it paid (JPY): each fill's distance
    from the mid of the quote it traded against, times its quantity."""
    s = result.summary()
    fills = result.fills
    bid, ask = quote_at_fills(result, quotes)
    spread_paid = float((fills["qty"].abs().to_numpy() * np.abs(fills["price"].to_numpy() - (bid + ask) / 2)).sum())
    print(f"{name:<28} fills {s['fills']:>3}  final equity {s['final_equity']:>14,.0f} JPY  "
          f"return {s['total_return']:+.4%}  trades {s['trades']}  half-spread paid {spread_paid:,.0f} JPY")
    return s, spread_paid


def runs(quotes, cfg):
    """The three runs: bars, events with 1-minute decisions, events deciding on every tick."""
    bars = bar_run(quotes)
    grid = run_events(quote_breakout, quotes, cfg, args=(WINDOW_MIN, UNITS, False, 60_000_000_000))
    ticks = run_events(tick_breakout, quotes, cfg, args=(WINDOW_MIN * 60_000_000_000, UNITS))
    return bars, grid, ticks


def main() -> None:
    quotes = read_truefx_quotes(SHARED / "truefx-usdjpy-ticks.csv", policy="drop")
    print(quotes, "-", quotes.source.get("dropped_rows", 0), "records dropped by the drop policy")
    cfg = EventConfig(cash=10_000_000.0, lot_size=1.0, entry_latency_ns=LATENCY_NS, response_latency_ns=LATENCY_NS,
                      sample_every="1min")
    bars, grid, ticks = runs(quotes, cfg)
    print()
    describe("bars (1-minute bid/ask)", bars, quotes)
    describe("events, 1-minute decisions", grid, quotes)
    describe("events, every tick", ticks, quotes)
    print("\nfills of the event run on the 1-minute clock (price = the quote 50 ms after the decision):")
    print(grid.fills.select("timestamp", "qty", "price"))
    print("fills of the bar run (price = the next bar's open):")
    print(bars.fills.select("timestamp", "qty", "price"))


if __name__ == "__main__":
    main()

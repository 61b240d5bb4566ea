"""`Result`: what a backtest produced, as Polars DataFrames at the edge.

The core writes record arrays; this module is the one place that turns them into tables with
timestamps, asset names and readable codes. Tables are built lazily and cached.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine.config import SignalConfig, SimConfig
from backforge.engine.records import EventKind, OrderRole, OrderStatus, OrderType, Reason, SizeType, TimeInForce
from backforge.errors import BackforgeError

__all__ = ["Result", "load_result"]

_UTC = pl.Datetime("ns", "UTC")


def _codes(values: np.ndarray, table) -> pl.Series:
    names = {code: name for code, (name, _) in table._descriptions.items()}
    return pl.Series([names.get(int(v), str(int(v))) for v in values], dtype=pl.String)


class Result:
    """The outcome of a backtest: equity, cash, exposure, positions, orders, the order log, fills,
    trades and a summary.

    Every table is a Polars DataFrame (call ``.to_pandas()`` for pandas). Timestamps are UTC.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    >>> result.equity.columns
    ['timestamp', 'equity', 'cash', 'gross_exposure', 'net_exposure']
    """

    def __init__(self, *, data: MarketData, state: k.State, sim_config: SimConfig,
                 signal_config: SignalConfig | None, mode: str, strategy: dict | None = None) -> None:
        self.data = data
        self._state = state
        self.sim_config = sim_config
        self.signal_config = signal_config
        self.mode = mode
        self.strategy = strategy
        self.signal_events: pl.DataFrame | None = None
        self.data_source: dict | None = None

    # ------------------------------------------------------------------ raw arrays
    @property
    def equity_values(self) -> np.ndarray:
        """Equity per bar, float64 ``[T]``."""
        return self._state.equity

    @property
    def state(self) -> k.State:
        """The final core state (record arrays and counters)."""
        return self._state

    def _records(self, name: str, counter: int) -> np.ndarray:
        return getattr(self._state, name)[: int(self._state.counters[counter])]

    @property
    def order_records(self) -> np.ndarray:
        return self._records("orders", k.C_ORDERS)

    @property
    def fill_records(self) -> np.ndarray:
        return self._records("fills", k.C_FILLS)

    @property
    def trade_records(self) -> np.ndarray:
        return self._records("trades", k.C_TRADES)

    @property
    def event_records(self) -> np.ndarray:
        return self._records("events", k.C_EVENTS)

    # ------------------------------------------------------------------ tables
    def _time(self, ns: np.ndarray) -> pl.Series:
        return pl.Series(np.asarray(ns, dtype=np.int64)).cast(_UTC)

    def _asset_names(self, idx: np.ndarray) -> pl.Series:
        names = np.array(self.data.assets, dtype=object)
        return pl.Series([names[i] if i >= 0 else None for i in idx], dtype=pl.String)

    @cached_property
    def equity(self) -> pl.DataFrame:
        """Per bar: timestamp, equity, cash, gross and net exposure (position values at the close)."""
        s = self._state
        return pl.DataFrame({
            "timestamp": self._time(self.data.timestamps),
            "equity": s.equity, "cash": s.cash_history,
            "gross_exposure": s.gross_exposure, "net_exposure": s.net_exposure,
        })

    @cached_property
    def positions(self) -> pl.DataFrame:
        """Per bar: the signed position in units of every asset (one column per asset)."""
        if self._state.positions.shape[0] == 0:
            raise BackforgeError("positions were not recorded (record_positions=False)", field="positions")
        cols = {"timestamp": self._time(self.data.timestamps)}
        for j, name in enumerate(self.data.assets):
            cols[name] = self._state.positions[:, j]
        return pl.DataFrame(cols)

    @cached_property
    def exposure(self) -> pl.DataFrame:
        """Per bar: gross and net exposure as fractions of equity."""
        s = self._state
        with np.errstate(divide="ignore", invalid="ignore"):
            gross = np.where(s.equity != 0, s.gross_exposure / s.equity, 0.0)
            net = np.where(s.equity != 0, s.net_exposure / s.equity, 0.0)
        return pl.DataFrame({"timestamp": self._time(self.data.timestamps), "gross": gross, "net": net})

    @cached_property
    def orders(self) -> pl.DataFrame:
        """Every order with its final status, reason, fill and bracket links."""
        r = self.order_records
        return pl.DataFrame({
            "order_id": r["id"], "created": self._time(r["created_ts"]), "created_bar": r["created_bar"],
            "asset": self._asset_names(r["asset"]), "side": np.where(r["side"] > 0, "buy", "sell"),
            "order_type": _codes(r["order_type"], OrderType), "role": _codes(r["role"], OrderRole),
            "size_type": _codes(r["size_type"], SizeType), "size": r["size"],
            "limit_price": r["limit_price"], "stop_price": r["stop_price"],
            "time_in_force": _codes(r["tif"], TimeInForce), "status": _codes(r["status"], OrderStatus),
            "reason": _codes(r["reason"], Reason), "parent_id": r["parent_id"],
            "filled": self._time(r["fill_ts"]), "fill_bar": r["fill_bar"], "fill_price": r["fill_price"],
            "filled_qty": r["filled_qty"], "fee": r["fee"],
        }).with_columns(pl.when(pl.col("fill_bar") >= 0).then(pl.col("filled")).alias("filled"))

    @cached_property
    def order_log(self) -> pl.DataFrame:
        """Every state change of every order (submitted, triggered, filled, cancelled...) with its reason."""
        r = self.event_records
        return pl.DataFrame({
            "timestamp": self._time(r["ts"]), "bar": r["bar"], "order_id": r["order_id"],
            "event": _codes(r["kind"], EventKind), "reason": _codes(r["reason"], Reason),
            "price": r["price"], "qty": r["qty"],
        })

    @cached_property
    def fills(self) -> pl.DataFrame:
        """Executions: signed quantity, price paid, the bar price the rules chose, slippage, fee."""
        r = self.fill_records
        return pl.DataFrame({
            "timestamp": self._time(r["ts"]), "bar": r["bar"], "order_id": r["order_id"],
            "asset": self._asset_names(r["asset"]), "qty": r["qty"], "price": r["price"],
            "quote_price": r["quote_price"], "slippage": r["slippage"], "fee": r["fee"],
            "role": _codes(r["role"], OrderRole), "position_after": r["position_after"], "cash_after": r["cash_after"],
        })

    def _open_trade_records(self) -> np.ndarray:
        """Positions still open at the end, valued at the last mark (``is_open = 1``)."""
        s = self._state
        from backforge.engine.records import trade_dt

        rows = []
        n_bars = int(s.counters[k.C_BARS])
        last_ts = int(self.data.timestamps[n_bars - 1]) if n_bars else 0
        for a in np.flatnonzero(s.position != 0.0):
            pos = float(s.position[a])
            direction = 1 if pos > 0 else -1
            entry, exit_ = float(s.avg_price[a]), float(s.mark[a])
            qty = abs(pos)
            fees = float(s.entry_fees[a])
            pnl = direction * (exit_ - entry) * qty - fees
            hi, lo = max(float(s.extreme_high[a]), exit_), min(float(s.extreme_low[a]), exit_)
            mae = lo / entry - 1 if direction > 0 else 1 - hi / entry
            mfe = hi / entry - 1 if direction > 0 else 1 - lo / entry
            rows.append((a, direction, qty, s.open_bar[a], s.open_ts[a], entry, n_bars - 1, last_ts, exit_, fees, pnl,
                         pnl / (entry * qty) if entry * qty else 0.0, mae, mfe, OrderRole.END_OF_DATA, 1))
        return np.array(rows, dtype=trade_dt) if rows else np.zeros(0, dtype=trade_dt)

    @cached_property
    def trades(self) -> pl.DataFrame:
        """Closed trades (one per reducing fill) followed by positions still open at the end (``is_open``).

        Columns: asset, direction (long/short), qty, entry/exit time, bar and price, fees, pnl (net of
        fees), return (pnl / entry value), mae and mfe (fractions of the entry price), duration, bars
        held, exit reason.
        """
        r = np.concatenate([self.trade_records, self._open_trade_records()])
        return pl.DataFrame({
            "asset": self._asset_names(r["asset"]), "direction": np.where(r["direction"] > 0, "long", "short"),
            "qty": r["qty"], "entry_time": self._time(r["entry_ts"]), "entry_bar": r["entry_bar"],
            "entry_price": r["entry_price"], "exit_time": self._time(r["exit_ts"]), "exit_bar": r["exit_bar"],
            "exit_price": r["exit_price"], "fees": r["fees"], "pnl": r["pnl"], "return": r["ret"],
            "mae": r["mae"], "mfe": r["mfe"],
            "duration": pl.Series(r["exit_ts"] - r["entry_ts"]).cast(pl.Duration("ns")),
            "bars": r["exit_bar"] - r["entry_bar"], "exit_reason": _codes(r["exit_role"], OrderRole),
            "is_open": r["is_open"].astype(bool),
        })

    # ------------------------------------------------------------------ figures
    @property
    def returns(self):
        """Per-bar simple returns of equity as a pandas Series indexed by UTC timestamp (for QuantStats)."""
        import pandas as pd

        eq = self._state.equity
        rets = np.zeros_like(eq)
        rets[1:] = eq[1:] / eq[:-1] - 1.0
        rets[0] = eq[0] / self.sim_config.cash - 1.0
        index = pd.DatetimeIndex(pd.to_datetime(self.data.timestamps, utc=True), name="timestamp")
        return pd.Series(rets, index=index, name="returns")

    def summary(self) -> dict[str, Any]:
        """Headline figures: total return, CAGR, Sharpe, max drawdown, trade count, win rate, and costs.

        Conventions: returns are per bar; CAGR uses calendar time between the first and last bar
        (365.25-day years); Sharpe is the mean over the standard deviation (ddof=1) of per-bar returns
        times the square root of bars per year (counted from the data), risk-free rate 0. Closed trades
        only count toward the trade figures.
        """
        from backforge._time import periods_per_year

        eq = self._state.equity
        s = self._state
        cash0 = self.sim_config.cash
        final = float(eq[-1]) if len(eq) else cash0
        total = final / cash0 - 1.0
        ts = self.data.timestamps
        years = (int(ts[-1]) - int(ts[0])) / (365.25 * 86_400e9) if len(ts) > 1 else 0.0
        cagr = (final / cash0) ** (1.0 / years) - 1.0 if years > 0 and final > 0 else (float("nan") if years > 0 else 0.0)
        rets = np.diff(np.concatenate([[cash0], eq])) / np.concatenate([[cash0], eq[:-1]])
        sd = float(np.std(rets, ddof=1)) if len(rets) > 1 else 0.0
        ppy = periods_per_year(ts)
        sharpe = float(np.mean(rets) / sd * math.sqrt(ppy)) if sd > 0 else 0.0
        peak = np.maximum.accumulate(np.concatenate([[cash0], eq]))
        mdd = float(np.min(np.concatenate([[cash0], eq]) / peak - 1.0))
        pnl = self.trade_records["pnl"]
        n_trades = int(len(pnl))
        return {
            "start": str(self.equity["timestamp"][0]) if len(eq) else None,
            "end": str(self.equity["timestamp"][-1]) if len(eq) else None,
            "bars": int(len(eq)), "assets": self.data.n_assets,
            "initial_cash": cash0, "final_equity": final, "total_return": total, "cagr": cagr, "sharpe": sharpe,
            "max_drawdown": mdd, "trades": n_trades,
            "win_rate": float(np.mean(pnl > 0)) if n_trades else float("nan"),
            "open_positions": int(np.count_nonzero(s.position)),
            "fees": float(s.totals[k.T_FEES]), "financing": float(s.totals[k.T_FINANCING]),
            "slippage": float(s.totals[k.T_SLIPPAGE]), "orders": int(s.counters[k.C_ORDERS]),
            "fills": int(s.counters[k.C_FILLS]),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Result({s['bars']} bars × {s['assets']} assets, total return {s['total_return']:.2%}, "
                f"Sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%}, {s['trades']} trades)")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the run to a folder: Parquet tables, JSON config/summary/metadata. Returns the folder.

        The folder is written to a temporary sibling and renamed into place, so a crash never leaves
        a half-written run.

        Examples
        --------
        >>> import backforge as bf, tempfile, pathlib
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
        >>> folder = result.save(pathlib.Path(tempfile.mkdtemp()) / "run")
        >>> sorted(p.name for p in folder.iterdir())[:3]
        ['config.json', 'equity.parquet', 'fills.parquet']
        """
        import shutil
        import tempfile

        from backforge import __version__

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.equity.write_parquet(tmp / "equity.parquet")
            self.fills.write_parquet(tmp / "fills.parquet")
            self.trades.write_parquet(tmp / "trades.parquet")
            self.orders.write_parquet(tmp / "orders.parquet")
            self.order_log.write_parquet(tmp / "order_log.parquet")
            if self._state.positions.shape[0]:
                self.positions.write_parquet(tmp / "positions.parquet")
            if self.signal_events is not None:
                self.signal_events.write_parquet(tmp / "signal_events.parquet")
            config = {
                "mode": self.mode,
                "sim_config": self.sim_config.model_dump(mode="json"),
                "signal_config": self.signal_config.model_dump(mode="json") if self.signal_config else None,
                "strategy": self.strategy,
                "data_source": self.data_source,
            }
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
            (tmp / "summary.json").write_text(json.dumps(self.summary(), indent=2, default=_json_default))
            meta = {
                "backforge_version": __version__, "assets": list(self.data.assets), "bars": self.data.n_bars,
                "data_fingerprint": self.data.fingerprint(), "has_quotes": self.data.has_quotes,
            }
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a saved run folder back: its tables (Polars) and JSON documents.

    Examples
    --------
    >>> import backforge as bf, tempfile, pathlib
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> folder = bf.from_signals(data, data.close > data.open).save(pathlib.Path(tempfile.mkdtemp()) / "r")
    >>> sorted(bf.load_result(folder))[:3]
    ['config', 'equity', 'fills']
    """
    folder = Path(path)
    if not folder.is_dir():
        raise BackforgeError("no saved run here (not a folder)", path=str(folder))
    out: dict[str, Any] = {}
    for name in ("config", "summary", "metadata"):
        file = folder / f"{name}.json"
        if not file.exists():
            raise BackforgeError(f"saved run is incomplete: {file.name} is missing", path=str(folder))
        try:
            out[name] = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise BackforgeError(f"{file.name} is corrupted: {exc.msg} at line {exc.lineno}", path=str(file)) from None
    for file in sorted(folder.glob("*.parquet")):
        try:
            out[file.stem] = pl.read_parquet(file)
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupted file
            raise BackforgeError(f"{file.name} cannot be read: {exc}", path=str(file)) from None
    return out

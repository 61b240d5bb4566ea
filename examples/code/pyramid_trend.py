"""A stateful pyramiding trend strategy: enter on a 50-bar breakout, add one unit of risk every time the
price moves another 2 ATR in favour (at most 3 adds), and exit everything on a 20-bar low.

Run it: ``backforge run examples/code/pyramid_trend.py`` (synthetic data for its universe).
The state the strategy keeps itself — the price of the last add and how many adds were made — is what
a strategy file cannot express.
"""

import numpy as np

import backforge as bf
from backforge.strategy.indicators import atr, rolling_max, rolling_min


class PyramidTrend(bf.Strategy):
    universe = ("AAPL",)
    data_spec = {"source": "synthetic", "years": 8, "seed": 11}

    entry_window = 50
    exit_window = 20
    add_every_atr = 2.0
    max_adds = 3
    unit = 0.2  # fraction of equity per add

    def init(self):
        d = self.data
        self.high_n = self.I(rolling_max, d.high, d.timestamps, self.entry_window)
        self.low_n = self.I(rolling_min, d.low, d.timestamps, self.exit_window)
        self.atr = self.I(atr, d.high, d.low, d.close, d.timestamps, 20)
        self.adds = 0
        self.last_add = np.nan

    def next(self):
        close = self.data.close[-1]
        if len(self.data.close) < 2 or np.isnan(self.high_n[-2]) or np.isnan(self.atr[-1]):
            return
        if not self.position:
            if close > self.high_n[-2]:  # a breakout above the previous 50-bar high
                self.buy(self.unit)
                self.adds, self.last_add = 0, close
            return
        if close < self.low_n[-2]:
            self.close()
            self.adds, self.last_add = 0, np.nan
        elif self.adds < self.max_adds and close >= self.last_add + self.add_every_atr * self.atr[-1]:
            self.buy(self.unit)
            self.adds, self.last_add = self.adds + 1, close

"""A custom trailing exit: enter when the close is above its 100-bar average and the 10-bar momentum
turns positive; exit when the close falls 3 ATR below the highest close since entry (a chandelier
stop the strategy tracks itself, bar by bar), or after 60 bars.

Run it: ``backforge run examples/code/chandelier_exit.py``.
"""

import numpy as np

import backforge as bf
from backforge.strategy.indicators import atr, sma


class ChandelierExit(bf.Strategy):
    universe = ("GOOG",)
    data_spec = {"source": "synthetic", "years": 8, "seed": 3}

    trend = 100
    momentum = 10
    atr_multiple = 3.0
    max_bars = 60

    def init(self):
        d = self.data
        self.average = self.I(sma, d.close, d.timestamps, self.trend)
        self.atr = self.I(atr, d.high, d.low, d.close, d.timestamps, 22)
        self.highest = np.nan
        self.entry_bar = -1

    def next(self):
        close = self.data.close
        if len(close) <= self.momentum or np.isnan(self.average[-1]) or np.isnan(self.atr[-1]):
            return
        if not self.position:
            if close[-1] > self.average[-1] and close[-1] > close[-1 - self.momentum] >= close[-2 - self.momentum]:
                self.buy(0.9)
                self.highest, self.entry_bar = close[-1], self.bar
            return
        self.highest = max(self.highest, close[-1])
        stop = self.highest - self.atr_multiple * self.atr[-1]
        if close[-1] < stop or self.bar - self.entry_bar >= self.max_bars:
            self.close()
            self.highest, self.entry_bar = np.nan, -1

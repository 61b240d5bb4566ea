"""A pairs trade with its own hedge-ratio state: every 20 bars the strategy re-estimates the hedge ratio
of MSFT on AAPL by least squares over the last 120 bars, keeps it, and trades the spread
``MSFT - beta * AAPL`` when its z-score leaves [-2, 2], closing both legs when it crosses back through 0.

Run it: ``backforge run examples/code/pairs_hedge.py``.
"""

import numpy as np

import backforge as bf


class PairsHedge(bf.Strategy):
    universe = ("AAPL", "MSFT")
    data_spec = {"source": "synthetic", "years": 6, "seed": 5}

    lookback = 120
    refit_every = 20
    entry_z = 2.0
    leg = 0.4  # fraction of equity in the MSFT leg

    def init(self):
        self.beta = np.nan
        self.fitted_at = -10**9
        self.side = 0  # +1 long the spread, -1 short it

    def _refit(self, x, y):
        x0, y0 = x - x.mean(), y - y.mean()
        self.beta = float((x0 @ y0) / (x0 @ x0)) if (x0 @ x0) > 0 else np.nan
        self.fitted_at = self.bar

    def next(self):
        closes = np.asarray(self.data.close)
        if closes.shape[0] < self.lookback:
            return
        x, y = closes[-self.lookback:, 0], closes[-self.lookback:, 1]
        if self.bar - self.fitted_at >= self.refit_every:
            self._refit(x, y)
        if not np.isfinite(self.beta) or self.beta <= 0:
            return
        spread = y - self.beta * x
        std = spread.std()
        if std == 0:
            return
        z = (spread[-1] - spread.mean()) / std
        if self.side == 0 and abs(z) > self.entry_z:
            self.side = -1 if z > 0 else 1
            hedge = self.leg * self.beta * x[-1] / y[-1]  # the AAPL leg's equity fraction, beta-weighted
            if self.side > 0:
                self.buy(self.leg, asset="MSFT")
                self.sell(hedge, asset="AAPL")
            else:
                self.sell(self.leg, asset="MSFT")
                self.buy(hedge, asset="AAPL")
        elif self.side != 0 and z * self.side >= 0:  # back through the mean
            self.close(asset="MSFT")
            self.close(asset="AAPL")
            self.side = 0

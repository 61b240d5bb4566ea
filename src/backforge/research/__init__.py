"""Research: parameter search (grid, random, genetic; local cores or Ray), walk-forward analysis, Monte Carlo,
overfitting statistics and vectorized signal sweeps.

>>> from backforge.research import walk_forward, monte_carlo, sweep_sma_cross, deflated_sharpe_ratio
>>> callable(walk_forward) and callable(sweep_sma_cross)
True

The search itself is ``backforge.optimize`` (or :func:`backforge.research.optimize.optimize`): inside this
package the name ``optimize`` is its module.
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

_EXPORTS = {
    "OptimizationResult": "backforge.research.optimize", "SearchConfig": "backforge.research.optimize",
    "make_executor": "backforge.research.optimize",
    "walk_forward": "backforge.research.walkforward", "WalkForwardResult": "backforge.research.walkforward",
    "monte_carlo": "backforge.research.montecarlo", "MonteCarloResult": "backforge.research.montecarlo",
    "sweep_signals": "backforge.research.sweep", "sweep_sma_cross": "backforge.research.sweep",
    "ParameterSpace": "backforge.research.params",
    "deflated_sharpe_ratio": "backforge.research.stats", "probabilistic_sharpe_ratio": "backforge.research.stats",
    "probability_of_backtest_overfitting": "backforge.research.stats",
    "minimum_track_record_length": "backforge.research.stats",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""The learned cost model: gradient-boosted trees predicting a schedule's log2 cycles.

The trees learn the residual of the analytic prior (log2 measured - log2 predicted), so where
they have seen nothing alike they fall back to the prior plus the typical residual. Their inputs
are `compiler.tune.analytic.features` of (layer, schedule), computed from the layer
key alone, so a model trained on the records of one network's layers ranks the schedules of
another's (transfer). Until it has enough measurements it ranks by the analytic prior.
Candidates that ran past their cycle limit train it with the limit (a lower bound).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from boards.dram import DEFAULT
from compiler.schedule import ConvSchedule
from compiler.tune.analytic import counters, features, predict_cycles
from compiler.tune.log import TuningRecord, parse_layer_key
from isa.config import HwConfig

MIN_SAMPLES = 8  # measurements before the trees replace the analytic prior
PRIOR_FEATURE = -2  # index of log2(prior) in the feature vector


class CostModel:
    """Ranks schedules of any layer of one config; retrained as measurements arrive."""

    def __init__(self, cfg: HwConfig, dram: str = DEFAULT, seed: int = 0):
        self.cfg, self.dram, self.seed = cfg, dram, seed
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._trees: GradientBoostingRegressor | None = None
        self._layers: dict = {}

    def featurize(self, key: str, schedule: ConvSchedule) -> np.ndarray:
        """The feature vector of a layer (by key) under a schedule."""
        if key not in self._layers:
            layer = parse_layer_key(key)
            self._layers[key] = (layer.conv_shape(self.cfg), layer.epilogue_ops,
                                 layer.per_channel)
        shape, ops, per_channel = self._layers[key]
        c = counters(self.cfg, shape, schedule, ops, per_channel)
        prior = predict_cycles(self.cfg, c, schedule.threads, self.dram)
        return features(self.cfg, shape, schedule, c, prior)

    def add(self, records: list[TuningRecord]) -> None:
        """Learn from measurements (records without cycles or a cycle limit are skipped)."""
        for record in records:
            if record.config_id != self.cfg.config_id_hex:
                continue
            if record.cycles is not None:
                value = record.cycles
            elif (record.error or "").startswith("exceeded "):
                value = int(record.error.split()[1])
            else:
                continue
            x = self.featurize(record.layer, record.conv_schedule)
            self._x.append(x)
            self._y.append(math.log2(value) - x[PRIOR_FEATURE])

    @property
    def samples(self) -> int:
        """Measurements learned from."""
        return len(self._y)

    def fit(self) -> None:
        """Retrain the trees on everything learned so far."""
        if self.samples < MIN_SAMPLES:
            return
        self._trees = GradientBoostingRegressor(
            n_estimators=150, max_depth=4, learning_rate=0.1, subsample=0.8,
            random_state=self.seed,
        ).fit(np.array(self._x), np.array(self._y))

    def predict(self, key: str, schedules: list[ConvSchedule]) -> np.ndarray:
        """Predicted log2 cycles of each schedule of a layer (lower is better)."""
        x = np.array([self.featurize(key, s) for s in schedules])
        if self._trees is None:
            return x[:, PRIOR_FEATURE]
        return x[:, PRIOR_FEATURE] + self._trees.predict(x)

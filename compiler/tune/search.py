"""Schedule search: model-guided simulated annealing with exploration, and the random baseline.

Per layer, in batches of `batch` candidates: simulated annealing walks the schedule space on the
cost model's predictions from the best schedules measured so far and from random points; the
best-predicted unmeasured points it visits, plus a share of random points (exploration), are
measured on sim.rtl (in parallel); the model is retrained on every measurement, of this layer and
of others. The compiler's heuristic schedule is measured first, alone, so tuning never ends
worse than not tuning and every later candidate has a bound: it is stopped at `CUTOFF` times the
best cycles so far (random search is bounded by the heuristic's cycles when it is given them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from compiler.schedule import ConvSchedule
from compiler.tune.log import TuningRecord
from compiler.tune.measure import Measurer
from compiler.tune.model import CostModel
from compiler.tune.space import ScheduleSpace
from compiler.tune.tasks import TuneTask

CUTOFF = 3  # a candidate slower than this many times the best so far is stopped
POOL = 1024  # random points the annealing considers per batch
CHAINS, STEPS = 8, 40  # annealing walks per batch and their length
TEMPERATURE = 0.3  # in log2 cycles, cooling linearly to zero


@dataclass
class TuneResult:
    """The measurements of one layer, in the order they were made."""

    task: TuneTask
    records: list[TuningRecord] = field(default_factory=list)

    @property
    def best(self) -> TuningRecord | None:
        """The fastest measured record."""
        done = [r for r in self.records if r.cycles is not None]
        return min(done, key=lambda r: r.cycles) if done else None

    def best_so_far(self) -> list[float]:
        """Best cycles after each trial (inf until one succeeds)."""
        best, curve = math.inf, []
        for record in self.records:
            if record.cycles is not None:
                best = min(best, record.cycles)
            curve.append(best)
        return curve


Progress = Callable[[TuneResult], None]


def _limit(result: TuneResult) -> int | None:
    best = result.best
    return None if best is None else CUTOFF * best.cycles


def tune_task(task: TuneTask, measurer: Measurer, model: CostModel, trials: int, *,
              seed: int = 0, batch: int = 8, explore: float = 0.25,
              progress: Progress | None = None) -> TuneResult:
    """Model-guided search of one layer's schedules with `trials` measurements."""
    rng = np.random.default_rng(seed)
    space = ScheduleSpace(task.cfg, task.shape)
    result = TuneResult(task)
    seen: set[ConvSchedule] = set()
    while len(result.records) < min(trials, len(space)):
        if not seen:
            picks = [task.heuristic()]
        else:
            size = min(batch, trials - len(result.records), len(space) - len(seen))
            randoms = max(1, round(size * explore)) if size > 1 else 0
            picks = _propose(task, space, model, result, seen, size - randoms, rng)
            picks += _unseen(space, seen | set(picks), size - len(picks), rng)
        seen.update(picks)
        records = measurer.measure(task, picks, _limit(result))
        result.records += records
        model.add(records)
        model.fit()
        if progress is not None:
            progress(result)
    return result


def random_search(task: TuneTask, measurer: Measurer, trials: int, *, seed: int = 0,
                  batch: int = 8, reference: int | None = None,
                  progress: Progress | None = None) -> TuneResult:
    """The baseline: `trials` schedules drawn uniformly from the space, measured in batches.

    `reference` (cycles, e.g. the heuristic's) bounds candidates until one has been measured.
    """
    rng = np.random.default_rng(seed)
    space = ScheduleSpace(task.cfg, task.shape)
    result = TuneResult(task)
    picks = space.sample(rng, trials)
    for start in range(0, len(picks), batch):
        limit = _limit(result)
        if reference is not None:
            limit = min(limit or CUTOFF * reference, CUTOFF * reference)
        result.records += measurer.measure(task, picks[start:start + batch], limit)
        if progress is not None:
            progress(result)
    return result


def _unseen(space: ScheduleSpace, seen: set, count: int, rng) -> list[ConvSchedule]:
    """Up to `count` random schedules not in `seen`."""
    picks: list[ConvSchedule] = []
    for _ in range(8):
        if len(picks) >= count:
            break
        for s in space.sample(rng, 2 * count):
            if s not in seen and s not in picks and len(picks) < count:
                picks.append(s)
    return picks


def _propose(task: TuneTask, space: ScheduleSpace, model: CostModel, result: TuneResult,
             seen: set, count: int, rng) -> list[ConvSchedule]:
    """The `count` best-predicted unmeasured schedules that annealing on the model visits."""
    if count <= 0:
        return []
    pool = space.sample(rng, POOL)
    measured = sorted((r for r in result.records if r.cycles is not None),
                      key=lambda r: r.cycles)
    starts = [r.conv_schedule for r in measured[:CHAINS // 2]]
    scores = dict(zip(pool, model.predict(task.key, pool), strict=True))
    starts += sorted(pool, key=scores.get)[:CHAINS - len(starts)]
    current = list(starts)
    current_score = model.predict(task.key, current)
    for step in range(STEPS):
        temperature = TEMPERATURE * (1 - step / STEPS) + 1e-9
        moves = [space.neighbour(s, rng) for s in current]
        move_score = model.predict(task.key, moves)
        scores.update(zip(moves, move_score, strict=True))
        accept = rng.random(len(moves)) < np.exp((current_score - move_score) / temperature)
        for i in np.flatnonzero(accept):
            current[i], current_score[i] = moves[i], move_score[i]
    ranked = sorted((s for s in scores if s not in seen), key=scores.get)
    return ranked[:count]

"""The search space of a convolution's schedule: every legal `ConvSchedule`.

Knobs: output rows and columns per tile (1 .. the output's height and width), output and input
channel blocks per tile (1 .. the layer's blocks) and virtual threads (1 or 2). A point is legal
when `compiler.schedule.fits` says so: one tile fits a thread's share of every buffer and the
loop fields. Fitting is monotone in the rows of a tile, so the space is stored as the largest
legal row count of every (threads, cin, cout, cols); that gives its exact size and uniform samples
without listing millions of points.
"""

from __future__ import annotations

import bisect
from dataclasses import replace

import numpy as np

from compiler.schedule import ConvSchedule, ConvShape, fits
from isa.config import HwConfig

KNOBS = ("rows", "cols", "cout", "cin", "threads")


class ScheduleSpace:
    """The legal schedules of one layer on one config."""

    def __init__(self, cfg: HwConfig, shape: ConvShape):
        self.cfg, self.shape = cfg, shape
        self.limits = {"rows": shape.out_height, "cols": shape.out_width,
                       "cout": shape.cout_blocks, "cin": shape.cin_blocks, "threads": 2}
        self._columns: list[tuple[int, int, int, int, int]] = []  # threads cin cout cols rows
        for threads in (1, 2):
            for cin in range(1, shape.cin_blocks + 1):
                for cout in range(1, shape.cout_blocks + 1):
                    for cols in range(1, shape.out_width + 1):
                        rows = self._largest_rows(ConvSchedule(1, cols, cout, cin, threads))
                        if rows == 0:
                            break  # wider tiles fit no better
                        self._columns.append((threads, cin, cout, cols, rows))
        self._ends = np.cumsum([c[-1] for c in self._columns]).tolist()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __contains__(self, schedule: ConvSchedule) -> bool:
        return fits(self.cfg, self.shape, schedule)

    def _largest_rows(self, s: ConvSchedule) -> int:
        lo, hi = 0, self.shape.out_height
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(self.cfg, self.shape, replace(s, rows=mid)):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def point(self, index: int) -> ConvSchedule:
        """The schedule at a position of the space's fixed order (0 <= index < len)."""
        column = bisect.bisect_right(self._ends, index)
        threads, cin, cout, cols, _ = self._columns[column]
        start = self._ends[column - 1] if column else 0
        return ConvSchedule(index - start + 1, cols, cout, cin, threads)

    def sample(self, rng: np.random.Generator, count: int) -> list[ConvSchedule]:
        """Up to `count` distinct schedules drawn uniformly."""
        count = min(count, len(self))
        indices = rng.choice(len(self), size=count, replace=False)
        return [self.point(int(i)) for i in indices]

    def neighbour(self, schedule: ConvSchedule, rng: np.random.Generator) -> ConvSchedule:
        """A legal schedule one knob away (a step, a doubling or halving, or a random value)."""
        for _ in range(32):
            knob = KNOBS[rng.integers(len(KNOBS))]
            value, limit = getattr(schedule, knob), self.limits[knob]
            moves = [value - 1, value + 1, value * 2, value // 2, int(rng.integers(1, limit + 1))]
            new = int(moves[rng.integers(len(moves))])
            if 1 <= new <= limit and new != value:
                candidate = replace(schedule, **{knob: new})
                if candidate in self:
                    return candidate
        return schedule

"""Per-layer schedules of an accelerated convolution: tile sizes and virtual threads.

A `ConvSchedule` holds every knob the tuner may search. Tiles are counted in the GEMM core's
units: output rows and columns (pixels), and blocks of `block_out` output / `block_in` input
channels. `fits` checks a schedule against one thread's share of the buffers, and
`default_schedule` is the heuristic used when no tuning record exists.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from isa.config import HwConfig
from isa.formats import LOOP_ITER_BITS

MAX_ITER = (1 << LOOP_ITER_BITS) - 1


@dataclass(frozen=True)
class ConvShape:
    """The geometry of one convolution in accelerator units (batch and channel blocks)."""

    batch_blocks: int
    cin_blocks: int
    cout_blocks: int
    height: int
    width: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right

    @property
    def out_height(self) -> int:
        """Output rows."""
        kh = self.kernel[0]
        return (self.height + self.pads[0] + self.pads[2] - kh) // self.strides[0] + 1

    @property
    def out_width(self) -> int:
        """Output columns."""
        kw = self.kernel[1]
        return (self.width + self.pads[1] + self.pads[3] - kw) // self.strides[1] + 1

    def in_span(self, out_count: int, axis: int) -> int:
        """Input rows (axis 0) or columns (axis 1) that `out_count` outputs read."""
        return (out_count - 1) * self.strides[axis] + self.kernel[axis]


@dataclass(frozen=True)
class ConvSchedule:
    """Tile sizes (output rows, output columns, output and input channel blocks) and threads."""

    rows: int
    cols: int
    cout: int
    cin: int
    threads: int = 2

    def to_dict(self) -> dict:
        """The knobs by name (for tuning logs)."""
        return asdict(self)


def footprint(shape: ConvShape, s: ConvSchedule) -> dict[str, int]:
    """Elements of each buffer one tile of the schedule uses."""
    kh, kw = shape.kernel
    return {
        "inp": s.cin * shape.in_span(s.rows, 0) * shape.in_span(s.cols, 1),
        "wgt": s.cout * s.cin * kh * kw,
        # the tile's accumulators plus a bias row and a multiplier row per output block
        "acc": s.cout * (s.rows * s.cols + 2),
        "uop": s.cout * s.cin * kh * kw,
    }


def fits(cfg: HwConfig, shape: ConvShape, s: ConvSchedule) -> bool:
    """True when one tile fits a thread's share of every buffer and the loop fields."""
    if min(s.rows, s.cols, s.cout, s.cin) < 1 or s.threads not in (1, 2):
        return False
    if s.rows > shape.out_height or s.cols > shape.out_width:
        return False
    if s.cout > shape.cout_blocks or s.cin > shape.cin_blocks:
        return False
    use = footprint(shape, s)
    return (
        all(use[kind] <= cfg.depth(kind) // s.threads for kind in ("inp", "wgt", "acc"))
        and use["uop"] <= cfg.uop_depth // 2
        and max(s.rows, s.cols) <= MAX_ITER
    )


def estimate_cycles(cfg: HwConfig, shape: ConvShape, s: ConvSchedule) -> float:
    """A rough cost: per tile, the larger of compute cycles and DRAM beats (they overlap)."""
    kh, kw = shape.kernel
    bus = cfg.axi_data_bits // 8
    tiles_h = math.ceil(shape.out_height / s.rows)
    tiles_w = math.ceil(shape.out_width / s.cols)
    tiles_co = math.ceil(shape.cout_blocks / s.cout)
    steps = math.ceil(shape.cin_blocks / s.cin)
    pixels = s.rows * s.cols
    gemm = pixels * s.cout * s.cin * kh * kw * steps
    epilogue = pixels * s.cout * 8
    use = footprint(shape, s)
    beats = steps * (use["inp"] * cfg.elem_bytes("inp") + use["wgt"] * cfg.elem_bytes("wgt"))
    beats = (beats + pixels * s.cout * cfg.elem_bytes("out")) / bus
    per_tile = max(gemm + epilogue, beats) + 40  # fixed cost of a tile's instructions
    return shape.batch_blocks * tiles_h * tiles_w * tiles_co * per_tile


def default_schedule(cfg: HwConfig, shape: ConvShape, threads: int = 2) -> ConvSchedule:
    """The heuristic schedule: the legal tiling with the lowest `estimate_cycles`."""
    best, best_cost = None, math.inf
    for cin in _candidates(shape.cin_blocks):
        for cout in _candidates(shape.cout_blocks):
            for cols in _candidates(shape.out_width):
                rows = _largest_rows(cfg, shape, ConvSchedule(1, cols, cout, cin, threads))
                if rows == 0:
                    continue
                schedule = ConvSchedule(rows, cols, cout, cin, threads)
                cost = estimate_cycles(cfg, shape, schedule)
                if cost < best_cost:
                    best, best_cost = schedule, cost
    if best is None:
        if threads == 2:
            return default_schedule(cfg, shape, threads=1)
        raise ValueError("no tiling fits the buffers")
    return best


def _candidates(extent: int) -> list[int]:
    """Tile sizes worth trying along one axis: even splits into up to 8 parts, powers of two."""
    sizes = {math.ceil(extent / parts) for parts in range(1, min(extent, 8) + 1)}
    sizes |= {1 << k for k in range(extent.bit_length()) if 1 << k <= extent}
    return sorted(sizes, reverse=True)


def _largest_rows(cfg: HwConfig, shape: ConvShape, s: ConvSchedule) -> int:
    """The most output rows a tile with the other knobs of `s` can hold (0 if none fits)."""
    lo, hi = 0, shape.out_height
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(cfg, shape, ConvSchedule(mid, s.cols, s.cout, s.cin, s.threads)):
            lo = mid
        else:
            hi = mid - 1
    return lo

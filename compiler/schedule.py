"""Per-layer schedules of an accelerated convolution: tile sizes and virtual threads.

A `ConvSchedule` holds every knob the tuner may search. Tiles are counted in the GEMM core's
units: output rows and columns (pixels), and blocks of `block_out` output / `block_in` input
channels. `fits` checks a schedule against one thread's share of the buffers, and
`default_schedule` is the heuristic used when no tuning record exists.

A grouped convolution's weights are block-diagonal; `ConvShape.block_inputs` lists, per output
block, the input blocks whose weights are not all zero, and a tile of output blocks walks only
the union of theirs (`tile_steps`), with one weight block per non-zero pair (`step_pairs`).
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
    # Per output block, the input blocks [first, end) with non-zero weights; None when dense.
    block_inputs: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self):
        if self.block_inputs is not None:  # read back from JSON as lists
            object.__setattr__(self, "block_inputs",
                               tuple((int(a), int(b)) for a, b in self.block_inputs))

    @property
    def sparse(self) -> bool:
        """True when some (output block, input block) weights are all zero (grouped conv)."""
        return self.block_inputs is not None

    def inputs_of(self, co: int) -> range:
        """The input blocks output block `co` reads."""
        if self.block_inputs is None:
            return range(self.cin_blocks)
        return range(*self.block_inputs[co])

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


def block_inputs(c_in: int, c_out: int, groups: int, block_in: int,
                 block_out: int) -> tuple[tuple[int, int], ...] | None:
    """`ConvShape.block_inputs` of a convolution with `groups` groups (None when dense)."""
    if groups == 1:
        return None
    gi, go = c_in // groups, c_out // groups
    ranges = []
    for co in range(-(-c_out // block_out)):
        first = co * block_out // go  # the groups of the block's output channels
        last = (min(c_out, (co + 1) * block_out) - 1) // go
        ranges.append((first * gi // block_in, ((last + 1) * gi - 1) // block_in + 1))
    return tuple(ranges)


def tile_steps(shape: ConvShape, co0: int, cout: int, cin: int) -> list[range]:
    """The input blocks of each reduction step of a tile of output blocks [co0, co0 + cout)."""
    if shape.block_inputs is None:
        first, end = 0, shape.cin_blocks
    else:
        first = min(shape.block_inputs[co][0] for co in range(co0, co0 + cout))
        end = max(shape.block_inputs[co][1] for co in range(co0, co0 + cout))
    return [range(c, min(c + cin, end)) for c in range(first, end, cin)]


def step_pairs(shape: ConvShape, co0: int, cout: int, step: range) -> list[tuple[int, int]]:
    """The (output block, input block) pairs with non-zero weights in a step, in WGT order."""
    return [(co, ci) for co in range(co0, co0 + cout) for ci in shape.inputs_of(co)
            if ci in step]


def block_offsets(shape: ConvShape) -> list[int]:
    """The index of each output block's first weight block in a grouped conv's weights."""
    counts = [len(shape.inputs_of(co)) for co in range(shape.cout_blocks)]
    return [sum(counts[:co]) for co in range(shape.cout_blocks)]


def block_runs(shape: ConvShape, pairs: list[tuple[int, int]],
               offsets: list[int]) -> list[tuple[int, int]]:
    """(first, count) runs of consecutive weight blocks of a grouped conv's pairs (one LOAD
    each)."""
    runs: list[tuple[int, int]] = []
    for co, ci in pairs:
        index = offsets[co] + ci - shape.inputs_of(co).start
        if runs and sum(runs[-1]) == index:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


def _most_pairs(shape: ConvShape, s: ConvSchedule) -> int:
    """The most non-zero weight pairs any step of a grouped convolution's schedule holds."""
    most = 0
    for co0 in range(0, shape.cout_blocks, s.cout):
        cout = min(s.cout, shape.cout_blocks - co0)
        for step in tile_steps(shape, co0, cout, s.cin):
            most = max(most, len(step_pairs(shape, co0, cout, step)))
    return most


def footprint(shape: ConvShape, s: ConvSchedule) -> dict[str, int]:
    """Elements of each buffer one tile of the schedule uses."""
    kh, kw = shape.kernel
    pairs = _most_pairs(shape, s) if shape.sparse else s.cout * s.cin
    return {
        "inp": s.cin * shape.in_span(s.rows, 0) * shape.in_span(s.cols, 1),
        "wgt": pairs * kh * kw,
        # the tile's accumulators plus a bias row and a multiplier row per output block
        "acc": s.cout * (s.rows * s.cols + 2),
        "uop": pairs * kh * kw,
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
    if shape.sparse:
        return _estimate_sparse(cfg, shape, s)
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


def _estimate_sparse(cfg: HwConfig, shape: ConvShape, s: ConvSchedule) -> float:
    """`estimate_cycles` of a grouped convolution: each tile walks only its own input blocks."""
    taps = shape.kernel[0] * shape.kernel[1]
    bus = cfg.axi_data_bits // 8
    spatial = math.ceil(shape.out_height / s.rows) * math.ceil(shape.out_width / s.cols)
    pixels = s.rows * s.cols
    window = shape.in_span(s.rows, 0) * shape.in_span(s.cols, 1)
    total = 0.0
    for co0 in range(0, shape.cout_blocks, s.cout):
        cout = min(s.cout, shape.cout_blocks - co0)
        steps = tile_steps(shape, co0, cout, s.cin)
        pairs = sum(len(step_pairs(shape, co0, cout, step)) for step in steps)
        gemm = pixels * pairs * taps + pixels * cout * 8
        beats = (sum(len(step) for step in steps) * window * cfg.elem_bytes("inp")
                 + pairs * taps * cfg.elem_bytes("wgt") + pixels * cout * cfg.elem_bytes("out"))
        total += max(gemm, beats / bus) + 40 * len(steps)
    return shape.batch_blocks * spatial * total


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

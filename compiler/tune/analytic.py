"""An analytic model of a scheduled convolution: the work counters and a cycle estimate.

`counters` computes, from the schedule alone and without building the Program, what the
functional simulator counts when it runs the lowered layer (`compiler.lower`): DRAM bytes per
memory type, GEMM and ALU micro-ops, and instructions by opcode (the tests check the two agree).
`predict_cycles` turns them into a rough cycle count for a DRAM model: the slowest of the load,
compute and store stages when two virtual threads let them overlap, their sum otherwise. The
tuner uses it as a prior before it has measurements, and as a feature of its learned model.
"""

from __future__ import annotations

import math

import numpy as np

from boards.dram import DramModel, dram_model
from compiler.schedule import (
    ConvSchedule,
    ConvShape,
    block_offsets,
    block_runs,
    step_pairs,
    tile_steps,
)
from isa.config import HwConfig

# Fixed costs per instruction (pipeline fill, DMA set-up): rough, the learned model corrects them.
COMPUTE_INSN_CYCLES = 8
DMA_INSN_CYCLES = 12


def _tiles(extent: int, size: int) -> list[int]:
    """Sizes of the tiles that cover `extent` in steps of `size` (the last may be smaller)."""
    return [min(size, extent - start) for start in range(0, extent, size)]


def _valid_inputs(shape: ConvShape, size: int, axis: int) -> int:
    """Input rows (axis 0) or columns read from DRAM over all tiles of one axis (no padding)."""
    extent = (shape.out_height, shape.out_width)[axis]
    stride, length = shape.strides[axis], (shape.height, shape.width)[axis]
    before = shape.pads[axis]
    total = 0
    for start in range(0, extent, size):
        lo = start * stride - before
        hi = lo + shape.in_span(min(size, extent - start), axis) - 1
        total += max(0, min(hi, length - 1) - max(lo, 0) + 1)
    return total


def _acc_row_loads(shape: ConvShape, s: ConvSchedule) -> tuple[int, int]:
    """LOAD ACCs of bias rows, and the rows they load, over the whole layer.

    The lowering skips a tile's loads when the previous tile of its ACC half (`threads` tiles
    earlier) had the same output blocks and pixel count, hence the same rows at the same place.
    """
    rows = np.array(_tiles(shape.out_height, s.rows))
    cols = np.array(_tiles(shape.out_width, s.cols))
    couts = np.array(_tiles(shape.cout_blocks, s.cout))
    pixels = np.tile(np.outer(rows, cols).ravel(), shape.batch_blocks)
    pix = np.repeat(pixels, len(couts))
    first = np.tile(np.arange(len(couts)), len(pixels))
    count = np.tile(couts, len(pixels))
    t = s.threads
    same = (pix[t:] == pix[:-t]) & (first[t:] == first[:-t]) & (count[t:] == count[:-t])
    return len(pix) - int(same.sum()), int(count.sum() - count[t:][same].sum())


def counters(cfg: HwConfig, shape: ConvShape, s: ConvSchedule, epilogue_ops: int,
             per_channel: bool) -> dict[str, int]:
    """What the functional simulator counts for the layer's Program (kernels resident).

    `epilogue_ops` is the number of requantization ALU instructions per tile, `per_channel`
    whether the multiplier is a per-channel ACC row (loaded with the bias).
    """
    kh, kw = shape.kernel
    taps = kh * kw
    nb = shape.batch_blocks
    row_tiles = len(_tiles(shape.out_height, s.rows))
    col_tiles = len(_tiles(shape.out_width, s.cols))
    cout_tiles = len(_tiles(shape.cout_blocks, s.cout))
    steps = len(_tiles(shape.cin_blocks, s.cin))
    spatial = nb * row_tiles * col_tiles
    tiles = spatial * cout_tiles
    outputs = nb * shape.out_height * shape.out_width * shape.cout_blocks
    acc_rows = 1 + per_channel
    inp_rows = _valid_inputs(shape, s.rows, 0) * _valid_inputs(shape, s.cols, 1)
    acc_loads, acc_blocks = _acc_row_loads(shape, s)
    # Over the tiles of output blocks: input blocks read, weight blocks, WGT LOADs and steps.
    inputs, blocks, wgt_loads, all_steps = (cout_tiles * shape.cin_blocks,
                                            shape.cout_blocks * shape.cin_blocks,
                                            cout_tiles * steps, cout_tiles * steps)
    if shape.sparse:
        inputs = blocks = wgt_loads = all_steps = 0
        offsets = block_offsets(shape)
        for co0 in range(0, shape.cout_blocks, s.cout):
            cout = min(s.cout, shape.cout_blocks - co0)
            for step in tile_steps(shape, co0, cout, s.cin):
                pairs = step_pairs(shape, co0, cout, step)
                inputs, blocks, all_steps = inputs + len(step), blocks + len(pairs), all_steps + 1
                wgt_loads += len(block_runs(shape, pairs, offsets))
    pixels = nb * shape.out_height * shape.out_width
    return {
        "inp_bytes": nb * inp_rows * inputs * cfg.elem_bytes("inp"),
        "wgt_bytes": spatial * blocks * taps * cfg.elem_bytes("wgt"),
        "acc_bytes": acc_blocks * acc_rows * cfg.elem_bytes("acc"),
        "out_bytes": outputs * cfg.elem_bytes("out"),
        "gemm_uops": pixels * blocks * taps,
        "alu_uops": outputs * (1 + epilogue_ops),
        "load_insns": acc_loads * acc_rows + spatial * (inputs + wgt_loads),
        "gemm_insns": spatial * all_steps,
        "alu_insns": tiles * (1 + epilogue_ops),
        "store_insns": spatial * shape.cout_blocks,
        "tiles": tiles,
    }


def predict_cycles(cfg: HwConfig, c: dict[str, int], threads: int,
                   dram: DramModel | str = "zynq7020") -> float:
    """A cycle estimate from the counters: overlapped stages with two threads, serial with one."""
    model = dram_model(dram)
    bus = cfg.axi_data_bits / 8
    rate = bus if model.bytes_per_cycle is None else min(bus, model.bytes_per_cycle)
    load = (c["inp_bytes"] + c["wgt_bytes"]) / rate + c["load_insns"] * DMA_INSN_CYCLES
    compute = (c["gemm_uops"] + c["alu_uops"] + c["acc_bytes"] / rate
               + (c["gemm_insns"] + c["alu_insns"]) * COMPUTE_INSN_CYCLES)
    store = c["out_bytes"] / rate + c["store_insns"] * DMA_INSN_CYCLES
    latency = model.read_latency + model.write_latency
    if threads > 1:
        per_tile = (load + store) / max(1, c["tiles"])
        return max(load, compute, store) + per_tile + latency
    return load + compute + store + c["tiles"] * latency


def features(cfg: HwConfig, shape: ConvShape, s: ConvSchedule, c: dict[str, int],
             prior: float) -> np.ndarray:
    """The learned model's inputs: layer geometry, knobs, work per MAC block and the prior."""
    gemm = max(1, c["gemm_uops"])
    logs = [math.log2(max(1, v)) for v in (
        shape.out_height, shape.out_width, shape.cin_blocks, shape.cout_blocks,
        shape.kernel[0] * shape.kernel[1], shape.strides[0],
        s.rows, s.cols, s.rows * s.cols, c["tiles"],
    )]
    ratios = [c[k] / gemm for k in ("inp_bytes", "wgt_bytes", "acc_bytes", "out_bytes",
                                    "alu_uops", "load_insns", "gemm_insns", "alu_insns",
                                    "store_insns")]
    fill = [s.rows / shape.out_height, s.cols / shape.out_width, s.cout / shape.cout_blocks,
            s.cin / shape.cin_blocks]
    return np.array([*logs, *ratios, *fill, s.threads, math.log2(prior), prior / gemm])

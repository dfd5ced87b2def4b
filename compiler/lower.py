"""Lowering of one quantized convolution (QCONV) to an accelerator Program.

Data layout in DRAM (elements of the ISA; `B` = batch, `Bi`/`Bo` = block_in/block_out, channels
zero-padded to whole blocks):

- input ``x``: INP elements ``[N/B][C_in/Bi][H][W]``, each ``[b][i]``;
- weights ``w``: WGT elements ``[C_out/Bo][C_in/Bi][KH][KW]``, each ``[o][i]``; for a grouped
  convolution (block-diagonal weights) only the non-zero blocks, ``[C_out/Bo][its input
  blocks][KH][KW]`` (`ConvShape.block_inputs`);
- ``bias`` and ``mult`` (the multipliers, per channel even when uniform): one ACC element per
  output block (repeated over ``b``);
- output ``y``: OUT elements ``[N/B][C_out/Bo][H_out][W_out]``, each ``[b][o]``.

Per output tile (batch block, output rows and columns, output-channel blocks) compute loads the bias
and multiplier rows (unless its ACC half holds them from an earlier tile) and initialises the
accumulators from the bias (ALU MOV); per input channel step, load brings the padded input window of
each input block and the weight blocks, and one GEMM runs the uop kernel over (output block, input
block, kh, kw) while its two loops walk the tile's output rows and columns (VTA's direct
convolution: no im2col). The epilogue is the requantization of `compiler.ir` on the ALU: MULR by
the multiplier rows with post_shift (after an RSHR by pre_shift if there is one), then CLIP when
both bounds fit a signed byte, else MAX and MIN as needed; then one STORE per output block. Each
ALU instruction runs one uop over the output blocks (outer loop) and their pixels (inner loop), so
the MOV and the MULR, whose ACC source is one row per block, issue one uop per cycle on the
execute pipeline's source-row cache.
A grouped convolution's tile walks only the input blocks its output blocks read, and its uop
kernels and weight loads only the (output block, input block) pairs whose weights are not all
zero: a depthwise 3x3 costs C/Bo * 9 uops per output pixel instead of (C/Bi) * (C/Bo) * 9.
An average pool (a grouped conv of constant weights, `shares_blocks`) keeps each distinct
weight block once and loads per step only the distinct blocks it uses (one or two diagonals).
Buffers are split into `threads` halves that alternate between tiles and steps, with dependency
tokens as in `loom.samples` so loads, compute and stores overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from compiler.ir import CompileError
from compiler.program_builder import (
    AtDram,
    ProgramBuilder,
    WithKernel,
    clip_steps,
    with_fields,
)
from compiler.schedule import (
    ConvSchedule,
    ConvShape,
    block_inputs,
    block_offsets,
    block_runs,
    default_schedule,
    fits,
    step_pairs,
    tile_steps,
)
from isa.config import HwConfig
from isa.formats import PAD_BITS, AluOp, MemType, Opcode
from isa.instructions import Insn, Uop
from isa.packing import pack_elements
from isa.program import Program, Segment

MAX_PAD = (1 << PAD_BITS) - 1


@dataclass
class LoweredConv:
    """A convolution lowered to a Program, with the packing of its input and output."""

    program: Program
    shape: ConvShape
    schedule: ConvSchedule
    batch: int
    in_channels: int
    out_channels: int
    macs: int

    def pack_input(self, x: np.ndarray) -> np.ndarray:
        """NCHW integers to the input segment's elements."""
        return to_elements(x, self.program.config, "inp")

    def pack_inputs(self, xs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The node's input arrays by input segment (as every lowered layer packs them)."""
        return {"x": self.pack_input(xs[0])}

    def unpack_output(self, elements: np.ndarray) -> np.ndarray:
        """The output segment's elements to NCHW integers."""
        s = self.shape
        return from_elements(
            elements, self.program.config, "out",
            (self.batch, self.out_channels, s.out_height, s.out_width),
        )


def to_elements(x: np.ndarray, cfg: HwConfig, kind: str) -> np.ndarray:
    """NCHW to elements [N/B][C/Bk][H][W] of (B, Bk) lanes, zero-padding N and C."""
    batch, block = cfg.elem_shape(kind)
    n, c, h, w = x.shape
    nb, cb = -(-n // batch), -(-c // block)
    padded = np.zeros((nb * batch, cb * block, h, w), dtype=np.int64)
    padded[:n, :c] = x
    grid = padded.reshape(nb, batch, cb, block, h, w).transpose(0, 2, 4, 5, 1, 3)
    return grid.reshape(nb * cb * h * w, batch, block)


def from_elements(elements: np.ndarray, cfg: HwConfig, kind: str, shape) -> np.ndarray:
    """Inverse of `to_elements` for an NCHW tensor of `shape`."""
    batch, block = cfg.elem_shape(kind)
    n, c, h, w = shape
    nb, cb = -(-n // batch), -(-c // block)
    grid = elements.reshape(nb, cb, h, w, batch, block).transpose(0, 4, 1, 5, 2, 3)
    return grid.reshape(nb * batch, cb * block, h, w)[:n, :c]


def conv_shape(cfg: HwConfig, input_shape, attrs: dict) -> ConvShape:
    """The ConvShape of a QCONV node on an NCHW input."""
    n, c, h, w = input_shape
    c_out, c_group, kh, kw = np.shape(attrs["weights"])
    groups = attrs.get("groups", 1)
    c_in = c_group * groups
    if c_in != c or c_out % groups:
        raise CompileError(f"weights {np.shape(attrs['weights'])} in {groups} groups do not fit "
                           f"{c} input channels")
    return ConvShape(
        batch_blocks=-(-n // cfg.batch),
        cin_blocks=-(-c // cfg.block_in),
        cout_blocks=-(-c_out // cfg.block_out),
        height=h,
        width=w,
        kernel=(kh, kw),
        strides=tuple(attrs["strides"]),
        pads=tuple(attrs["pads"]),
        block_inputs=block_inputs(c_in, c_out, groups, cfg.block_in, cfg.block_out),
    )


def lower_conv(
    cfg: HwConfig, input_shape, attrs: dict, schedule: ConvSchedule | None = None,
    name: str = "conv",
) -> LoweredConv:
    """Lower a QCONV (attributes as in `compiler.ir`) on an NCHW input shape to a Program."""
    shape = conv_shape(cfg, input_shape, attrs)
    if max(shape.pads) > MAX_PAD:
        raise CompileError(f"{name}: padding {shape.pads} exceeds {MAX_PAD}, the ISA's limit")
    if schedule is None:
        try:
            schedule = default_schedule(cfg, shape)
        except ValueError:
            raise CompileError(
                f"{name}: no tiling of {shape} fits the buffers of {cfg.name}"
            ) from None
    elif not fits(cfg, shape, schedule):
        raise CompileError(f"{name}: schedule {schedule} does not fit {cfg.name}")
    program = _ConvBuilder(cfg, shape, schedule, attrs).program()
    c_out, c_in, kh, kw = attrs["weights"].shape  # c_in per group
    n = input_shape[0]
    macs = n * c_out * shape.out_height * shape.out_width * c_in * kh * kw
    return LoweredConv(program, shape, schedule, n, input_shape[1], c_out, macs)


def shares_blocks(attrs: dict) -> bool:
    """True for a grouped QCONV of constant weights (an average pool), whose weight segment
    holds each distinct block once and whose steps load only the distinct blocks they use."""
    weights = np.asarray(attrs["weights"])
    return attrs.get("groups", 1) > 1 and bool(np.all(weights == weights.flat[0]))


def epilogue_steps(cfg: HwConfig, attrs: dict) -> list[tuple[AluOp, int]]:
    """The requantization ALU ops of a QCONV after the bias MOV, with their immediates."""
    steps = [(AluOp.RSHR, attrs["pre_shift"])] if attrs["pre_shift"] else []
    steps.append((AluOp.MULR, attrs["post_shift"]))
    steps += clip_steps(cfg, attrs["clip"])
    return steps


class _Tile(NamedTuple):
    """An output tile: batch block, first row/col/output block and their counts, ACC half."""

    nb: int
    r0: int
    rows: int
    c0: int
    cols: int
    co0: int
    cout: int
    half: int


class _Step(NamedTuple):
    """An input-channel step of a tile: first input block, how many, its INP/WGT half."""

    ci0: int
    cin: int
    half: int


class _ConvBuilder(ProgramBuilder):
    """Emits the instructions, uop kernels and segments of one tiled convolution."""

    def __init__(self, cfg: HwConfig, shape: ConvShape, schedule: ConvSchedule, attrs: dict):
        super().__init__(cfg, schedule.threads)
        self.s, self.t, self.attrs = shape, schedule, attrs
        # Per ACC half: the (first block, blocks, ACC index) of the bias and multiplier rows it
        # holds. Only LOAD ACC writes those rows, so a later tile of that layout keeps them.
        self.rows_held: dict[int, tuple[int, int, int]] = {}
        # Grouped convolutions: the first weight block of each output block in the segment.
        self.wgt_first = block_offsets(shape)
        # Constant-weight convolutions (pools): the distinct block of each weight element.
        self.shared: np.ndarray | None = None

    # -- data -------------------------------------------------------------------------------

    def _segments(self) -> list[Segment]:
        cfg, s, a = self.cfg, self.s, self.attrs
        weights = np.asarray(a["weights"])
        c_out, c_in, kh, kw = weights.shape
        bo, bi = cfg.block_out, cfg.block_in
        if s.sparse:
            wgt = self._grouped_blocks(weights, a["groups"])
            if shares_blocks(a):
                # A pool: every block is one of a few diagonals; keep each once.
                wgt, inverse = np.unique(wgt.reshape(len(wgt), -1), axis=0, return_inverse=True)
                wgt, self.shared = wgt.reshape(-1, bo, bi), inverse.reshape(-1)
        else:
            padded = np.zeros((s.cout_blocks * bo, s.cin_blocks * bi, kh, kw), dtype=np.int64)
            padded[:c_out, :c_in] = weights
            grid = padded.reshape(s.cout_blocks, bo, s.cin_blocks, bi, kh, kw)
            wgt = grid.transpose(0, 2, 4, 5, 1, 3).reshape(-1, bo, bi)
        segments = [
            Segment("x", "input", "inp", s.batch_blocks * s.cin_blocks * s.height * s.width),
            Segment("w", "weights", "wgt", len(wgt), pack_elements(wgt, cfg, "wgt")),
            Segment("bias", "weights", "acc", s.cout_blocks, self._acc_rows(a["bias"])),
            Segment("mult", "weights", "acc", s.cout_blocks, self._acc_rows(a["multiplier"])),
        ]
        out_count = s.batch_blocks * s.cout_blocks * s.out_height * s.out_width
        segments.append(Segment("y", "output", "out", out_count))
        return segments

    def _grouped_blocks(self, weights: np.ndarray, groups: int) -> np.ndarray:
        """WGT elements of a grouped convolution: its block-diagonal weight matrix's blocks
        that `ConvShape.block_inputs` lists, [co][ci][kh][kw] in `_wgt_index` order."""
        s, bo, bi = self.s, self.cfg.block_out, self.cfg.block_in
        c_out, c_group = weights.shape[:2]
        per_group = c_out // groups
        blocks = []
        for co in range(s.cout_blocks):
            o = co * bo + np.arange(bo)[:, None]  # rows of the block: output channels
            for ci in s.inputs_of(co):
                i = ci * bi + np.arange(bi)[None, :]  # columns: input channels
                k = i - o // per_group * c_group  # index within the output's group
                inside = (o < c_out) & (k >= 0) & (k < c_group)
                block = weights[np.minimum(o, c_out - 1), np.clip(k, 0, c_group - 1)]
                block = np.where(inside[..., None, None], block, 0)  # [o][i][kh][kw]
                blocks.append(block.transpose(2, 3, 0, 1).reshape(-1, bo, bi))
        return np.concatenate(blocks)

    def _wgt_index(self, co: int, ci: int) -> int:
        """The first WGT element of block (co, ci) in the weight segment."""
        s = self.s
        taps = s.kernel[0] * s.kernel[1]
        if not s.sparse:
            return (co * s.cin_blocks + ci) * taps
        return (self.wgt_first[co] + ci - s.inputs_of(co).start) * taps

    def _acc_rows(self, per_channel) -> bytes:
        """A per-output-channel vector as ACC elements, repeated over the batch lanes."""
        cfg, s = self.cfg, self.s
        values = np.zeros(s.cout_blocks * cfg.block_out, dtype=np.int64)
        values[: np.size(per_channel)] = np.asarray(per_channel).reshape(-1)
        rows = values.reshape(s.cout_blocks, 1, cfg.block_out)
        return pack_elements(np.repeat(rows, cfg.batch, axis=1), cfg, "acc")

    # -- schedule ---------------------------------------------------------------------------

    def _schedule(self) -> list[tuple[_Tile, list[_Step]]]:
        s, t = self.s, self.t
        schedule, step_count = [], 0
        for nb in range(s.batch_blocks):
            for r0 in range(0, s.out_height, t.rows):
                for c0 in range(0, s.out_width, t.cols):
                    for co0 in range(0, s.cout_blocks, t.cout):
                        tile = _Tile(nb, r0, min(t.rows, s.out_height - r0), c0,
                                     min(t.cols, s.out_width - c0), co0,
                                     min(t.cout, s.cout_blocks - co0), len(schedule) % t.threads)
                        steps = []
                        for step in tile_steps(s, co0, tile.cout, t.cin):
                            steps.append(_Step(step.start, len(step), step_count % t.threads))
                            step_count += 1
                        schedule.append((tile, steps))
        return schedule

    # -- program ----------------------------------------------------------------------------

    def program(self) -> Program:
        """The complete Program."""
        schedule = self._schedule()
        segments = self._segments()  # before the tiles: it finds a pool's shared blocks
        body = []
        for tile, steps in schedule:
            body += self._tile(tile, steps)
        return self.assemble(segments, body)

    # -- one tile ---------------------------------------------------------------------------

    def _acc_layout(self, tile: _Tile) -> tuple[int, int, int]:
        """ACC indices of the tile's accumulators, bias rows and multiplier rows."""
        acc = self.half_base("acc", tile.half)
        pixels = tile.rows * tile.cols
        return acc, acc + tile.cout * pixels, acc + tile.cout * (pixels + 1)

    def _tile(self, tile: _Tile, steps: list[_Step]) -> list:
        _, bias_rows, mult_rows = self._acc_layout(tile)
        init, epilogue = self._rows_pass(tile, bias_rows), self._rows_pass(tile, mult_rows)
        init = with_fields(init, alu_op=AluOp.MOV)
        items = []
        held = (tile.co0, tile.cout, bias_rows)
        if self.rows_held.get(tile.half) == held:
            # Skipping the loads also skips their wait behind the load unit's DRAM reads.
            init = with_fields(init, pop_next=1)
        else:
            self.rows_held[tile.half] = held
            rows = {"mem_type": MemType.ACC, "y_size": 1, "x_size": tile.cout,
                    "x_stride": tile.cout}
            items.append(AtDram(Insn(Opcode.LOAD, sram_base=bias_rows, pop_next=1, **rows),
                                "bias", tile.co0))
            items.append(AtDram(Insn(Opcode.LOAD, sram_base=mult_rows, **rows), "mult",
                                tile.co0))
        items.append(init)
        for step in steps:
            items += self._step(tile, step)
        items += self._epilogue(epilogue)
        items += self._stores(tile)
        return items

    def _rows_pass(self, tile: _Tile, src: int) -> WithKernel:
        """An ALU over every accumulator of the tile whose ACC source for block c is src + c.

        The outer loop walks the output blocks and the inner one their pixels with one uop, so
        consecutive uops share their source row and the execute pipeline reads it once per
        block. When those loop fields do not fit the ISA, one uop per block and loops over the
        tile's rows and columns.
        """
        acc = self.half_base("acc", tile.half)
        pixels = tile.rows * tile.cols
        loop = {"iter_out": tile.cout, "iter_in": pixels, "dst_factor_out": pixels,
                "dst_factor_in": 1, "src_factor_out": 1, "src_factor_in": 0}
        uops = [Uop(acc, src, 0)]
        fmt = self.cfg.insn_formats[Opcode.ALU]
        if any(value > fmt.field(name).max for name, value in loop.items()):
            loop = {"iter_out": tile.rows, "iter_in": tile.cols,
                    "dst_factor_out": tile.cols, "dst_factor_in": 1}
            uops = [Uop(acc + c * pixels, src + c, 0) for c in range(tile.cout)]
        return WithKernel(self.kernel(uops), Insn(Opcode.ALU, **loop))

    def _window(self, tile: _Tile) -> tuple[int, int, int, int, int, int, int, int]:
        """Input window of a tile: first valid row/col, valid rows/cols, and the four pads."""
        s = self.s
        r_lo = tile.r0 * s.strides[0] - s.pads[0]
        c_lo = tile.c0 * s.strides[1] - s.pads[1]
        r_hi = r_lo + s.in_span(tile.rows, 0) - 1
        c_hi = c_lo + s.in_span(tile.cols, 1) - 1
        top, left = max(0, -r_lo), max(0, -c_lo)
        bottom, right = max(0, r_hi - (s.height - 1)), max(0, c_hi - (s.width - 1))
        rows = r_hi - r_lo + 1 - top - bottom
        cols = c_hi - c_lo + 1 - left - right
        if cols <= 0:
            raise CompileError(f"a tile's input window {tile} lies entirely in the padding")
        return max(r_lo, 0), max(c_lo, 0), max(rows, 0), cols, top, bottom, left, right

    def _step(self, tile: _Tile, step: _Step) -> list:
        s = self.s
        kh, kw = s.kernel
        row0, col0, rows, cols, top, bottom, left, right = self._window(tile)
        win_h, win_w = s.in_span(tile.rows, 0), s.in_span(tile.cols, 1)
        inp, wgt = self.half_base("inp", step.half), self.half_base("wgt", step.half)
        items = []
        for j in range(step.cin):
            block = (tile.nb * s.cin_blocks + step.ci0 + j) * s.height
            load = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=inp + j * win_h * win_w,
                        y_size=rows, x_size=cols, x_stride=s.width, y_pad_0=top,
                        y_pad_1=bottom, x_pad_0=left, x_pad_1=right, pop_next=int(j == 0))
            items.append(AtDram(load, "x", (block + row0) * s.width + col0))
        taps = kh * kw
        slots = None  # WGT offset of each (pair, tap) when not pair order
        if s.sparse:
            pairs = step_pairs(s, tile.co0, tile.cout,
                               range(step.ci0, step.ci0 + step.cin))
            if self.shared is None:
                items += self._sparse_wgt_loads(pairs, wgt)
            else:
                slots, loads = self._shared_wgt_loads(pairs, wgt)
                items += loads
        else:
            pairs = [(tile.co0 + co, step.ci0 + ci)
                     for co in range(tile.cout) for ci in range(step.cin)]
            load_wgt = Insn(Opcode.LOAD, mem_type=MemType.WGT, sram_base=wgt, y_size=tile.cout,
                            x_size=step.cin * taps, x_stride=s.cin_blocks * taps, push_next=1)
            items.append(AtDram(load_wgt, "w", self._wgt_index(tile.co0, step.ci0)))
        acc = self.half_base("acc", tile.half)
        pixels = tile.rows * tile.cols
        # WGT holds the step's blocks in pair order, or the distinct ones at `slots`
        uops = [
            Uop(acc + (co - tile.co0) * pixels,
                inp + (ci - step.ci0) * win_h * win_w + y * win_w + x,
                wgt + (k * taps + y * kw + x if slots is None else slots[k * taps + y * kw + x]))
            for k, (co, ci) in enumerate(pairs)
            for y in range(kh) for x in range(kw)
        ]
        gemm = Insn(Opcode.GEMM, iter_out=tile.rows, iter_in=tile.cols,
                    dst_factor_out=tile.cols, dst_factor_in=1,
                    src_factor_out=s.strides[0] * win_w, src_factor_in=s.strides[1],
                    pop_prev=1, push_prev=1)
        items.append(WithKernel(self.kernel(uops), gemm))
        return items

    def _sparse_wgt_loads(self, pairs: list[tuple[int, int]], wgt: int) -> list:
        """WGT LOADs of a grouped convolution's step: the pairs' blocks, one LOAD per run of
        consecutive blocks in DRAM; the last tells compute the step's data is in."""
        taps = self.s.kernel[0] * self.s.kernel[1]
        runs = block_runs(self.s, pairs, self.wgt_first)
        items, sram = [], wgt
        for k, (first, count) in enumerate(runs):
            load = Insn(Opcode.LOAD, mem_type=MemType.WGT, sram_base=sram, y_size=1,
                        x_size=count * taps, x_stride=count * taps,
                        push_next=int(k == len(runs) - 1))
            items.append(AtDram(load, "w", first * taps))
            sram += count * taps
        return items

    def _shared_wgt_loads(self, pairs: list[tuple[int, int]], wgt: int) -> tuple[list, list]:
        """A constant-weight (pooling) conv's step: the distinct blocks its pairs use, one LOAD
        per run of consecutive ones; returns each (pair, tap)'s WGT offset and the LOADs."""
        taps = self.s.kernel[0] * self.s.kernel[1]
        used = [int(self.shared[self._wgt_index(co, ci) + tap])
                for co, ci in pairs for tap in range(taps)]
        distinct = sorted(set(used))
        runs: list[list[int]] = []
        for u in distinct:
            if runs and runs[-1][0] + runs[-1][1] == u:
                runs[-1][1] += 1
            else:
                runs.append([u, 1])
        items, sram = [], wgt
        for k, (first, count) in enumerate(runs):
            load = Insn(Opcode.LOAD, mem_type=MemType.WGT, sram_base=sram, y_size=1,
                        x_size=count, x_stride=count, push_next=int(k == len(runs) - 1))
            items.append(AtDram(load, "w", first))
            sram += count
        position = {u: k for k, u in enumerate(distinct)}
        return [position[u] for u in used], items

    def _epilogue(self, mult: WithKernel) -> list:
        """Requantization on the ALU; the last instruction tells store the tile is ready.

        `mult` reads the multiplier rows (MULR's ACC source, its immediate the post shift); the
        ops with an immediate run the same loops (the source field is unused).
        """
        ops = epilogue_steps(self.cfg, self.attrs)
        items = []
        for index, (op, imm) in enumerate(ops):
            insn = mult.insn.replace(alu_op=op, push_next=int(index == len(ops) - 1), imm=imm,
                                     use_imm=int(op != AluOp.MULR))
            items.append(WithKernel(mult.kernel, insn))
        return items

    def _stores(self, tile: _Tile) -> list:
        s = self.s
        acc = self.half_base("acc", tile.half)
        pixels = tile.rows * tile.cols
        items = []
        for co in range(tile.cout):
            plane = (tile.nb * s.cout_blocks + tile.co0 + co) * s.out_height
            store = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=acc + co * pixels,
                         y_size=tile.rows, x_size=tile.cols, x_stride=s.out_width,
                         pop_prev=int(co == 0), push_prev=int(co == tile.cout - 1))
            items.append(AtDram(store, "y", (plane + tile.r0) * s.out_width + tile.c0))
        return items

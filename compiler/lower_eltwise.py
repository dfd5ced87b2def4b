"""Lowering of residual adds (QADD) and max pooling (QMAXPOOL) to accelerator Programs.

The ISA cannot load int8 data into the accumulators, but the GEMM core can copy it there
exactly: a WGT element with `d` on the diagonal adds ``d * x`` lane by lane (for
block_in != block_out, partial diagonals over the input blocks that overlap an output block).
The ALU then finishes on ACC, and the OUT mirror (wrapped to out_bits) is stored. Layouts in
DRAM are the convolution's (`compiler.lower.to_elements`): INP elements ``[N/B][C/Bi][H][W]`` in,
OUT elements ``[N/B][C/Bo][H][W]`` out, one segment ``x<i>`` per input and ``y`` for the output.

QADD (``acc = offset + sum_i x_i * m_i``, then RSHR and the clip; `compiler.qreference.qadd`)
multiplies on the GEMM core by Horner's rule: each multiplier is written in balanced digits of
base 2**wgt_bits (each digit fits a weight lane), and per digit level, from the top, the ALU
shifts the accumulators left by wgt_bits and one GEMM adds ``digit * x_i`` of every input. The
top level starts from a MOV of the offset's top part, lower levels ADD the offset's digits.
Everything wraps modulo 2**acc_bits like the reference's MUL and ADD, so the sum is bit-exact.
A ResNet residual add (two 15-bit multipliers, 8-bit weights, no offset) costs MOV, 2 GEMM, a
shift, 2 GEMM, RSHR and CLIP: 8 cycles per element, all at one uop per cycle.

QMAXPOOL copies the input window of an output tile into ACC (GEMM reset, then identity GEMM from
the zero-padded INP window), overwrites the padding with the input type's lowest value (ALU MOV
immediate: padding never wins, and a window wholly in padding gives what the reference gives),
then MOV of the first tap and one ALU MAX per further tap, each over the tile's output rows and
columns with the strides in the loop factors, so consecutive uops never depend on each other.

Tiles alternate between two buffer halves (virtual threads) with dependency tokens, as in
`compiler.lower`: load brings a tile's inputs, compute runs it, store writes it, overlapping.
Both lowerings assemble their Programs with `compiler.program_builder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from compiler.ir import CompileError, Graph, Node, Op
from compiler.lower import MAX_PAD, from_elements, to_elements
from compiler.program_builder import (
    AtDram,
    ProgramBuilder,
    WithKernel,
    clip_steps,
    with_fields,
)
from compiler.reference import pool_geometry
from isa.config import HwConfig
from isa.formats import AluOp, MemType, Opcode
from isa.instructions import Insn, Uop
from isa.packing import pack_elements
from isa.program import Program, Segment

IMM_MIN, IMM_MAX = -(1 << 15), (1 << 15) - 1
ELTWISE_OPS = (Op.QADD, Op.QMAXPOOL)


def nchw(shape) -> tuple[int, int, int, int]:
    """The NCHW view of a shape: (N, C, ...) with trailing ones, dimensions after the fourth
    folded into the third (a vector is channels, a scalar one element)."""
    shape = tuple(shape)
    if len(shape) < 2:
        return (1, shape[0] if shape else 1, 1, 1)
    if len(shape) > 4:
        return (*shape[:2], int(np.prod(shape[2:])), 1)
    return (*shape, *([1] * (4 - len(shape))))


@dataclass
class LoweredEltwise:
    """An elementwise or pooling layer lowered to a Program, with the packing of its tensors.

    `input_shapes` and `output_shape` are the graph's; the Program sees them as `nchw` views (an
    add's inputs broadcast to its output shape first, on the host). They run no
    multiply-accumulates of the model (`macs` is 0), so their utilization is not reported.
    """

    program: Program
    op: str
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...]
    macs: int = 0

    def pack_inputs(self, xs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Input arrays to the elements of their segments (x0, x1, ...)."""
        cfg, shape = self.program.config, self.output_shape
        if self.op != Op.QADD.value:  # a pool's input is not its output's shape
            shape = self.input_shapes[0]
        return {f"x{i}": to_elements(np.broadcast_to(x, shape).reshape(nchw(shape)), cfg, "inp")
                for i, x in enumerate(xs)}

    def unpack_output(self, elements: np.ndarray) -> np.ndarray:
        """The output segment's elements to an array of the output shape."""
        y = from_elements(elements, self.program.config, "out", nchw(self.output_shape))
        return y.reshape(self.output_shape)


def balanced_digits(value: int, bits: int) -> list[int]:
    """Digits of `value` in base 2**bits, each in [-2**(bits-1), 2**(bits-1)), lowest first."""
    base, half, digits = 1 << bits, 1 << (bits - 1), []
    while value:
        digit = (value + half) % base - half
        digits.append(digit)
        value = (value - digit) >> bits
    return digits


def _channel_blocks(cfg: HwConfig, co: int, cout: int, channels: int) -> range:
    """Input blocks that hold the channels of output blocks co .. co+cout-1."""
    lo = co * cfg.block_out // cfg.block_in
    hi = -(-min((co + cout) * cfg.block_out, channels) // cfg.block_in)
    return range(lo, max(hi, lo + 1))


class _Builder(ProgramBuilder):
    """Shared machinery of QADD and QMAXPOOL: identity weights, the token protocol of a tile."""

    def __init__(self, cfg: HwConfig, name: str):
        super().__init__(cfg, threads=2)
        self.name = name
        self.weights: dict[tuple[int, int], int] = {}  # (input lane - output lane, d) -> WGT

    def weight(self, co: int, ci: int, digit: int) -> int:
        """WGT index of the element adding digit * (input block ci) into output block co."""
        key = (co * self.cfg.block_out - ci * self.cfg.block_in, digit)
        return self.weights.setdefault(key, len(self.weights))

    def weight_segment(self) -> Segment:
        cfg = self.cfg
        wgt = np.zeros((max(len(self.weights), 1), cfg.block_out, cfg.block_in), dtype=np.int64)
        for (delta, digit), index in self.weights.items():
            for o in range(cfg.block_out):
                if 0 <= o + delta < cfg.block_in:
                    wgt[index, o, o + delta] = digit
        if len(wgt) > cfg.wgt_depth:
            raise CompileError(f"{self.name}: {len(wgt)} weight elements exceed WGT")
        return Segment("w", "weights", "wgt", len(wgt), pack_elements(wgt, cfg, "wgt"))

    def alu(self, uops: list[Uop], op: AluOp, imm: int = 0, use_imm: int = 1,
            **loop) -> WithKernel:
        if use_imm and not IMM_MIN <= imm <= IMM_MAX:
            raise CompileError(f"{self.name}: ALU immediate {imm} does not fit 16 bits")
        return WithKernel(self.kernel(uops), Insn(Opcode.ALU, alu_op=op, use_imm=use_imm,
                                                   imm=imm, **loop))

    def gemm(self, uops: list[Uop], reset: int = 0, **loop) -> WithKernel:
        return WithKernel(self.kernel(uops), Insn(Opcode.GEMM, reset=reset, **loop))

    def tile_items(self, loads: list, compute: list, stores: list) -> list:
        """One tile under the token protocol of `compiler.lower`.

        Loads wait for a free INP half and signal compute; compute's first instruction waits for
        a free ACC half (store done with it), its first GEMM for the loads, its last GEMM frees
        the INP half and its last instruction hands the tile to store, which frees the ACC half.
        """
        loads = [with_fields(loads[0], pop_next=1), *loads[1:]]
        loads[-1] = with_fields(loads[-1], push_next=1)
        gemms = [i for i, item in enumerate(compute) if item.insn.op == Opcode.GEMM
                 and not item.insn.reset]
        if not gemms:
            raise CompileError(f"{self.name}: no GEMM reads the inputs")
        compute = list(compute)
        compute[0] = with_fields(compute[0], pop_next=1)
        compute[gemms[0]] = with_fields(compute[gemms[0]], pop_prev=1)
        compute[gemms[-1]] = with_fields(compute[gemms[-1]], push_prev=1)
        compute[-1] = with_fields(compute[-1], push_next=1)
        stores = [with_fields(stores[0], pop_prev=1), *stores[1:]]
        stores[-1] = with_fields(stores[-1], push_prev=1)
        return loads + compute + stores

    def assemble_tiles(self, segments: list[Segment], body: list) -> Program:
        """The Program of the tiles in `body`, the identity weights loaded once before them."""
        segments = [*segments, self.weight_segment()]
        count = segments[-1].count
        load = Insn(Opcode.LOAD, mem_type=MemType.WGT, sram_base=0, y_size=1, x_size=count,
                    x_stride=count)
        return self.assemble(segments, body, setup=[AtDram(load, "w", 0)])


# -- QADD ----------------------------------------------------------------------------------------


class _Level(NamedTuple):
    """One Horner level: the offset digit to add and each input's multiplier digit."""

    offset: int
    digits: tuple[int, ...]


def add_levels(multipliers, offset: int, wgt_bits: int) -> list[_Level]:
    """Horner levels, top first: acc = sum_levels (offset_l + sum_i d_il x_i) 2**(wgt_bits l).

    The top level's offset part is any 16-bit immediate (it starts the accumulators with a MOV);
    lower ones are digits like the multipliers'.
    """
    digits = [balanced_digits(int(m), wgt_bits) for m in multipliers]
    count = max(1, *(len(d) for d in digits))
    while True:
        low = balanced_digits(offset % (1 << (wgt_bits * (count - 1))), wgt_bits)[:count - 1]
        rest = offset - sum(d << (wgt_bits * k) for k, d in enumerate(low))
        top = rest >> (wgt_bits * (count - 1))
        if IMM_MIN <= top <= IMM_MAX:
            break
        count += 1
    offsets = [*low, *([0] * (count - 1 - len(low))), top]
    levels = [_Level(offsets[k], tuple(d[k] if k < len(d) else 0 for d in digits))
              for k in range(count)]
    return levels[::-1]


class _AddBuilder(_Builder):
    """Tiles of a QADD: whole channel planes when they fit, else runs of one plane's pixels."""

    def __init__(self, cfg: HwConfig, shape, count: int, attrs: dict, name: str):
        super().__init__(cfg, name)
        self.shape, self.count, self.attrs = nchw(shape), count, attrs
        n, c, h, w = self.shape
        self.hw = h * w
        self.batch_blocks = -(-n // cfg.batch)
        self.cin_blocks = -(-c // cfg.block_in)
        self.cout_blocks = -(-c // cfg.block_out)
        self.levels = add_levels(attrs["multipliers"], int(attrs["offset"]), cfg.wgt_bits)
        self.tail = ([(AluOp.RSHR, int(attrs["shift"]))] if attrs["shift"] else [])
        self.tail += clip_steps(cfg, attrs["clip"])
        self.cout, self.pixels = self._tiling()

    def _overlap(self, cout: int) -> int:
        """Most input blocks a tile of `cout` output blocks reads (the pattern repeats every
        block_in / block_out tiles at most)."""
        cfg = self.cfg
        period = max(1, cfg.block_in // cfg.block_out) + 1
        return max(len(_channel_blocks(cfg, co, cout, self.shape[1]))
                   for co in range(0, min(self.cout_blocks, period * cout), cout))

    def _uops(self, cout: int) -> int:
        """Uops of a tile's GEMM level: one per input when blocks match, else per block."""
        if self.cfg.block_in == self.cfg.block_out:
            return self.count
        return cout * self.count * self._overlap(1)

    def _tiling(self) -> tuple[int, int]:
        inp, acc = self.half_size("inp"), self.half_size("acc")
        for cout in range(min(self.cout_blocks, acc // self.hw), 0, -1):
            if (self.count * self._overlap(cout) * self.hw <= inp
                    and self._uops(cout) <= self.cfg.uop_depth // 4):
                return cout, self.hw
        pixels = min(acc, inp // (self.count * self._overlap(1)), self.hw)
        if pixels < 1:
            raise CompileError(f"{self.name}: {self.count} inputs do not fit INP")
        return 1, pixels

    def program(self) -> Program:
        segments = [Segment(f"x{i}", "input", "inp",
                            self.batch_blocks * self.cin_blocks * self.hw)
                    for i in range(self.count)]
        segments.append(Segment("y", "output", "out",
                                self.batch_blocks * self.cout_blocks * self.hw))
        body, index = [], 0
        for nb in range(self.batch_blocks):
            for co in range(0, self.cout_blocks, self.cout):
                cout = min(self.cout, self.cout_blocks - co)
                for p0 in range(0, self.hw, self.pixels):
                    pixels = min(self.pixels, self.hw - p0)
                    body += self._tile(nb, co, cout, p0, pixels, index % self.threads)
                    index += 1
        return self.assemble_tiles(segments, body)

    def _tile(self, nb: int, co0: int, cout: int, p0: int, pixels: int, half: int) -> list:
        cfg = self.cfg
        blocks = _channel_blocks(cfg, co0, cout, self.shape[1])
        blocks = range(blocks.start, min(blocks.stop, self.cin_blocks))
        inp, acc = self.half_base("inp", half), self.half_base("acc", half)
        loads = []
        for i in range(self.count):
            # One row needs no stride (which keeps planes over 16 bits of elements legal).
            load = Insn(Opcode.LOAD, mem_type=MemType.INP,
                        sram_base=inp + i * len(blocks) * pixels, y_size=len(blocks),
                        x_size=pixels, x_stride=self.hw if len(blocks) > 1 else pixels)
            first = (nb * self.cin_blocks + blocks.start) * self.hw + p0
            loads.append(AtDram(load, f"x{i}", first))
        rows = {"iter_out": cout, "iter_in": pixels, "dst_factor_out": pixels,
                "dst_factor_in": 1}
        whole = [Uop(acc, 0, 0)]
        compute = []
        for k, level in enumerate(self.levels):
            if k == 0:
                compute.append(self.alu(whole, AluOp.MOV, level.offset, **rows))
            else:
                compute.append(self.alu(whole, AluOp.SHR, -cfg.wgt_bits, **rows))
                if level.offset:
                    compute.append(self.alu(whole, AluOp.ADD, level.offset, **rows))
            if cfg.block_in == cfg.block_out:  # the tile's blocks are one run in INP and ACC
                uops = [Uop(acc, inp + i * len(blocks) * pixels, self.weight(co0, co0, digit))
                        for i, digit in enumerate(level.digits) if digit]
                flat = cout * pixels
            else:
                uops = [
                    Uop(acc + c * pixels, inp + (i * len(blocks) + b - blocks.start) * pixels,
                        self.weight(co0 + c, b, digit))
                    for c in range(cout) for i, digit in enumerate(level.digits) if digit
                    for b in _channel_blocks(cfg, co0 + c, 1, self.shape[1]) if b in blocks
                ]
                flat = pixels
            if uops:
                compute.append(self.gemm(uops, iter_out=flat, iter_in=1, dst_factor_out=1,
                                         src_factor_out=1))
        compute += [self.alu(whole, op, imm, **rows) for op, imm in self.tail]
        store = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=acc, y_size=cout,
                     x_size=pixels, x_stride=self.hw if cout > 1 else pixels)
        stores = [AtDram(store, "y", (nb * self.cout_blocks + co0) * self.hw + p0)]
        return self.tile_items(loads, compute, stores)


# -- QMAXPOOL ------------------------------------------------------------------------------------


class _PoolBuilder(_Builder):
    """Tiles of a QMAXPOOL: one output channel block, output rows and columns as fit."""

    def __init__(self, cfg: HwConfig, shape, attrs: dict, low: int, name: str):
        super().__init__(cfg, name)
        self.shape, self.attrs, self.low = shape, attrs, low
        n, c, h, w = shape
        (self.out_h, self.out_w), _ = pool_geometry(attrs, (h, w))
        self.kernel_hw, self.strides = tuple(attrs["kernel_shape"]), tuple(attrs["strides"])
        self.batch_blocks = -(-n // cfg.batch)
        self.cin_blocks = -(-c // cfg.block_in)
        self.cout_blocks = -(-c // cfg.block_out)
        self.overlap = max(len(_channel_blocks(cfg, co, 1, c))
                           for co in range(self.cout_blocks))
        for axis, (size, out) in enumerate(((h, self.out_h), (w, self.out_w))):
            begin, k, s = attrs["pads"][axis], self.kernel_hw[axis], self.strides[axis]
            if begin >= k or (out - 1) * s - begin >= size:
                raise CompileError(f"{name}: a window lies wholly in the padding")
        self.rows, self.cols = self._tiling()

    def span(self, count: int, axis: int) -> int:
        return (count - 1) * self.strides[axis] + self.kernel_hw[axis]

    def _fits(self, rows: int, cols: int) -> bool:
        window = self.span(rows, 0) * self.span(cols, 1)
        return (window + rows * cols <= self.half_size("acc")
                and self.overlap * window <= self.half_size("inp"))

    def _tiling(self) -> tuple[int, int]:
        for cols in range(self.out_w, 0, -1):
            rows = max((r for r in range(1, self.out_h + 1) if self._fits(r, cols)), default=0)
            if rows:
                return rows, cols
        raise CompileError(f"{self.name}: no window of {self.kernel_hw} fits the buffers")

    def program(self) -> Program:
        _, _, h, w = self.shape
        segments = [Segment("x0", "input", "inp", self.batch_blocks * self.cin_blocks * h * w),
                    Segment("y", "output", "out",
                            self.batch_blocks * self.cout_blocks * self.out_h * self.out_w)]
        body, index = [], 0
        for nb in range(self.batch_blocks):
            for co in range(self.cout_blocks):
                for r0 in range(0, self.out_h, self.rows):
                    for c0 in range(0, self.out_w, self.cols):
                        rows, cols = min(self.rows, self.out_h - r0), min(self.cols,
                                                                          self.out_w - c0)
                        body += self._tile(nb, co, r0, rows, c0, cols, index % self.threads)
                        index += 1
        return self.assemble_tiles(segments, body)

    def _window(self, r0: int, rows: int, c0: int, cols: int):
        """First in-bounds row/col of a tile's window, their counts, and the four pads."""
        _, _, h, w = self.shape
        pads = self.attrs["pads"]
        r_lo, c_lo = r0 * self.strides[0] - pads[0], c0 * self.strides[1] - pads[1]
        r_hi, c_hi = r_lo + self.span(rows, 0) - 1, c_lo + self.span(cols, 1) - 1
        top, left = max(0, -r_lo), max(0, -c_lo)
        bottom, right = max(0, r_hi - (h - 1)), max(0, c_hi - (w - 1))
        if max(top, left, bottom, right) > MAX_PAD:
            raise CompileError(f"{self.name}: padding exceeds {MAX_PAD}, the ISA's limit")
        in_rows = r_hi - r_lo + 1 - top - bottom
        in_cols = c_hi - c_lo + 1 - left - right
        if in_rows <= 0 or in_cols <= 0:
            raise CompileError(f"{self.name}: a tile's window lies wholly in the padding")
        return max(r_lo, 0), max(c_lo, 0), in_rows, in_cols, top, bottom, left, right

    def _tile(self, nb: int, co: int, r0: int, rows: int, c0: int, cols: int,
              half: int) -> list:
        cfg = self.cfg
        _, c, h, w = self.shape
        row0, col0, in_rows, in_cols, top, bottom, left, right = self._window(r0, rows, c0, cols)
        win_h, win_w = self.span(rows, 0), self.span(cols, 1)
        window = win_h * win_w
        blocks = [b for b in _channel_blocks(cfg, co, 1, c) if b < self.cin_blocks]
        inp, acc = self.half_base("inp", half), self.half_base("acc", half)
        out = acc + window
        loads = []
        for j, b in enumerate(blocks):
            load = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=inp + j * window,
                        y_size=in_rows, x_size=in_cols, x_stride=w, y_pad_0=top,
                        y_pad_1=bottom, x_pad_0=left, x_pad_1=right)
            loads.append(AtDram(load, "x0", ((nb * self.cin_blocks + b) * h + row0) * w + col0))
        flat = {"iter_out": window, "iter_in": 1, "dst_factor_out": 1}
        compute = [
            self.gemm([Uop(acc, 0, 0)], reset=1, **flat),
            self.gemm([Uop(acc, inp + j * window, self.weight(co, b, 1))
                       for j, b in enumerate(blocks)], src_factor_out=1, **flat),
        ]
        strips = [(0, top, win_w), ((win_h - bottom) * win_w, bottom, win_w),
                  (0, win_h, left), (win_w - right, win_h, right)]
        for start, count, length in strips:
            if count and length:
                compute.append(self.alu([Uop(acc + start, 0, 0)], AluOp.MOV, self.low,
                                        iter_out=count, iter_in=length, dst_factor_out=win_w,
                                        dst_factor_in=1))
        sh, sw = self.strides
        taps = {"iter_out": rows, "iter_in": cols, "dst_factor_out": cols, "dst_factor_in": 1,
                "src_factor_out": sh * win_w, "src_factor_in": sw}
        kh, kw = self.kernel_hw
        for t in range(kh * kw):
            uops = [Uop(out, acc + (t // kw) * win_w + t % kw, 0)]
            compute.append(self.alu(uops, AluOp.MAX if t else AluOp.MOV, use_imm=0, **taps))
        store = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=out, y_size=rows,
                     x_size=cols, x_stride=self.out_w)
        plane = (nb * self.cout_blocks + co) * self.out_h
        stores = [AtDram(store, "y", (plane + r0) * self.out_w + c0)]
        return self.tile_items(loads, compute, stores)


# -- entry points --------------------------------------------------------------------------------


def _fits_lanes(bits: int | None, lane_bits: int, what: str, name: str) -> None:
    if bits is None or bits > lane_bits:
        raise CompileError(f"{name}: {what} of {bits} bits do not fit {lane_bits}-bit lanes")


def lower_eltwise(cfg: HwConfig, graph: Graph, node: Node) -> LoweredEltwise:
    """Lower a QADD or QMAXPOOL node of `graph`; CompileError says why it cannot run."""
    name = node.name
    if node.op not in ELTWISE_OPS:
        raise CompileError(f"{name}: {node.op} is not an elementwise op")
    if cfg.wgt_bits < 2:
        raise CompileError(f"{name}: {cfg.wgt_bits}-bit weights cannot hold the identity")
    shapes = [tuple(graph.values[x].shape) for x in node.inputs]
    out = graph.values[node.outputs[0]]
    if any(not isinstance(d, int) or d <= 0 for s in shapes for d in s):
        raise CompileError(f"{name}: input shapes {shapes} are not fixed")
    for x in node.inputs:
        quant = graph.values[x].quant
        _fits_lanes(None if quant is None else quant.bits, cfg.inp_bits, "inputs", name)
    _fits_lanes(None if out.quant is None else out.quant.bits, cfg.out_bits, "outputs", name)
    if node.op == Op.QADD:
        if np.broadcast_shapes(*shapes) != tuple(out.shape):
            raise CompileError(f"{name}: inputs {shapes} do not broadcast to {out.shape}")
        lo, hi = node.attrs["clip"]
        if lo < -(1 << (cfg.out_bits - 1)) or hi >= 1 << (cfg.out_bits - 1):
            raise CompileError(f"{name}: clip ({lo}, {hi}) exceeds {cfg.out_bits}-bit outputs")
        builder = _AddBuilder(cfg, out.shape, len(shapes), node.attrs, name)
    else:
        a = node.attrs
        if len(shapes[0]) != 4 or tuple(a["dilations"]) != (1, 1):
            raise CompileError(f"{name}: only 2-D max pooling without dilation")
        low = -(1 << (graph.values[node.inputs[0]].quant.bits - 1))
        builder = _PoolBuilder(cfg, shapes[0], a, low, name)
    return LoweredEltwise(builder.program(), node.op.value, shapes, tuple(out.shape))

"""Builders of sample accelerator programs, with seeded inputs and exact numpy references.

`matmul_program` is the reference pattern the compiler follows for a tiled, double-buffered
layer: uop kernels loaded once, per output tile a bias load (or GEMM reset), GEMMs over k-tiles,
the ALU epilogue and a store, with dependency tokens that let load, compute and store overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from isa.config import HwConfig
from isa.formats import LOOP_ITER_BITS, AluOp, MemType, Opcode
from isa.instructions import FINISH, NOP_COMPUTE, NOP_LOAD, NOP_STORE, Insn, Uop
from isa.packing import wrap
from isa.program import Layout, Program, Segment

MAX_ITER = (1 << LOOP_ITER_BITS) - 1



def blocked(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Cut a matrix into (rows x cols) blocks, row-major by block: shape (count, rows, cols)."""
    height, width = matrix.shape
    blocks = matrix.reshape(height // rows, rows, width // cols, cols).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, rows, cols)


def unblocked(blocks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of `blocked`: reassemble (count, rows, cols) blocks into a height x width matrix."""
    _, rows, cols = blocks.shape
    grid = blocks.reshape(height // rows, width // cols, rows, cols).transpose(0, 2, 1, 3)
    return grid.reshape(height, width)


@dataclass(frozen=True)
class Tiling:
    """Tile sizes in blocks (rows of `batch`, input and output blocks) and virtual threads."""

    rows: int
    k_blocks: int
    n_blocks: int
    threads: int


@dataclass
class Sample:
    """A program with seeded inputs, the exact numpy reference of its output and how to read it."""

    program: Program
    seed: int
    inputs: dict[str, np.ndarray]  # segment name -> elements, shape (count, *element shape)
    reference: np.ndarray
    output_segment: str
    tiling: Tiling

    def fill(self, dram: np.ndarray) -> None:
        """Write every input segment into a DRAM image of the program."""
        for name, values in self.inputs.items():
            self.program.write(dram, name, values)

    def dram(self) -> np.ndarray:
        """A fresh DRAM image of the program with its inputs filled."""
        dram = self.program.dram_image()
        self.fill(dram)
        return dram

    def expected(self) -> np.ndarray:
        """What the output must be, as a matrix."""
        return self.reference.copy()

    def output(self, dram: np.ndarray) -> np.ndarray:
        """The output segment of a DRAM image after a run, as a matrix."""
        return unblocked(self.program.read(dram, self.output_segment), *self.reference.shape)


def matmul_tiling(cfg: HwConfig, rows: int, k_blocks: int, n_blocks: int, threads: int) -> Tiling:
    """Largest tiles that fit one thread's share of the buffers: k first, then n, then rows."""
    inp_cap, wgt_cap, acc_cap = (cfg.depth(kind) // threads for kind in ("inp", "wgt", "acc"))
    kt = min(k_blocks, inp_cap, wgt_cap, MAX_ITER)
    # Uop buffer: a GEMM kernel of nt uops per (ACC half, INP/WGT half, k-tile width: full or
    # tail), plus one tile uop per ACC half.
    uop_cap = (cfg.uop_depth // threads - 1) // (2 * threads)
    nt = min(n_blocks, wgt_cap // kt, acc_cap, uop_cap, MAX_ITER)
    if nt < 1:
        raise ValueError(f"the uop buffer of {cfg.name} is too small for {threads} threads")
    mt = min(rows, inp_cap // kt, acc_cap // nt, MAX_ITER)
    return Tiling(mt, kt, nt, threads)


def matmul_program(
    cfg: HwConfig,
    m: int,
    k: int,
    n: int,
    *,
    bias: bool = True,
    relu: bool = True,
    shift: int = 0,
    virtual_threads: int = 2,
    seed: int | None = None,
) -> Sample:
    """C = wrap_out(relu(A @ W + bias) >> shift) as a tiled program, with seeded A, W and bias.

    A (m x k) is INP elements, row blocks of `batch` by k-blocks; W (k x n) is WGT elements
    [block_out][block_in], n-blocks by k-blocks; bias is one ACC element per n-block (repeated
    over the batch); C (m x n) is OUT elements, row blocks by n-blocks.
    """
    shape = {"m": (m, cfg.batch), "k": (k, cfg.block_in), "n": (n, cfg.block_out)}
    for name, (size, block) in shape.items():
        if size <= 0 or size % block:
            raise ValueError(f"{name}={size} must be a positive multiple of {block} on {cfg.name}")
    if virtual_threads not in (1, 2):
        raise ValueError(f"virtual_threads must be 1 or 2, not {virtual_threads}")
    if not 0 <= shift <= cfg.acc_bits:
        raise ValueError(f"shift must be from 0 to acc_bits={cfg.acc_bits}, not {shift}")
    rows, k_blocks, n_blocks = m // cfg.batch, k // cfg.block_in, n // cfg.block_out
    tiling = matmul_tiling(cfg, rows, k_blocks, n_blocks, virtual_threads)
    builder = _MatmulBuilder(cfg, (rows, k_blocks, n_blocks), tiling, bias, relu, shift)

    seed = int(np.random.SeedSequence().entropy) if seed is None else seed
    a, w, b = _matmul_data(cfg, m, k, n, np.random.default_rng(seed))
    inputs = {
        "A": blocked(a, cfg.batch, cfg.block_in),
        "W": blocked(w.T, cfg.block_out, cfg.block_in),
    }
    if bias:
        inputs["bias"] = blocked(np.broadcast_to(b, (cfg.batch, n)), cfg.batch, cfg.block_out)
    reference = matmul_reference(cfg, a, w, b if bias else None, relu=relu, shift=shift)
    return Sample(builder.program(), seed, inputs, reference, "C", tiling)


def matmul_reference(
    cfg: HwConfig, a: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, relu: bool, shift: int
) -> np.ndarray:
    """The exact result of `matmul_program`: accumulate and wrap to acc_bits, ReLU, shift, wrap."""
    # float64 BLAS is exact here: |A @ W| <= k * 2**(inp_bits + wgt_bits - 2) < 2**53.
    assert a.shape[1] << (cfg.inp_bits + cfg.wgt_bits - 2) < 1 << 53
    acc = (a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    if bias is not None:
        acc = acc + bias
    acc = wrap(acc, cfg.acc_bits)
    if relu:
        acc = np.maximum(acc, 0)
    return wrap(acc >> shift, cfg.out_bits)


def _matmul_data(cfg: HwConfig, m: int, k: int, n: int, rng: np.random.Generator):
    """Uniform A and W over their whole lane ranges; bias about as large as a typical A @ W."""
    a = rng.integers(-(1 << (cfg.inp_bits - 1)), 1 << (cfg.inp_bits - 1), size=(m, k))
    w = rng.integers(-(1 << (cfg.wgt_bits - 1)), 1 << (cfg.wgt_bits - 1), size=(k, n))
    scale = min((1 << (cfg.inp_bits + cfg.wgt_bits - 2)) * math.isqrt(k), 1 << (cfg.acc_bits - 1))
    return a, w, rng.integers(-scale, scale, size=n)


class _MatmulBuilder:
    """Emits the instruction stream, uop kernels and segments of one tiled matmul.

    With T threads each buffer is split into T halves. INP/WGT halves rotate per k-step and
    ACC/OUT halves per output tile. Tokens follow VTA's pattern:

    - load -> compute (data ready): the LOAD WGT of a k-step pushes, its GEMM pops.
    - compute -> load (INP/WGT half free): each GEMM pushes, the LOAD INP that next refills a
      half pops. Compute pushes T "free" tokens first; load pops the last T at the end.
    - compute -> store (tile done): the tile's last compute instruction pushes, its STORE pops.
    - store -> compute (ACC/OUT half free): each STORE pushes, the first instruction of the tile
      that next writes that half pops. Store pushes T tokens first; compute pops the last T.

    The stream is in program order, so every pop follows its push and at most T tokens wait in
    a queue: it never deadlocks, whatever the queue depths.
    """

    def __init__(self, cfg: HwConfig, blocks, tiling: Tiling, bias: bool, relu: bool, shift: int):
        self.cfg = cfg
        self.rows, self.k_blocks, self.n_blocks = blocks
        self.t = tiling
        self.bias, self.relu, self.shift = bias, relu, shift

    def _base(self, kind: str, half: int) -> int:
        """First element of a thread's half of a buffer."""
        return half * (self.cfg.depth(kind) // self.t.threads)

    def _schedule(self) -> list[tuple[_Tile, list[_Step]]]:
        """Every output tile in order, with its k-steps; halves rotate as the class says."""
        t = self.t
        k_tiles = [
            (k0, min(t.k_blocks, self.k_blocks - k0)) for k0 in range(0, self.k_blocks, t.k_blocks)
        ]
        schedule = []
        for r0 in range(0, self.rows, t.rows):
            for c0 in range(0, self.n_blocks, t.n_blocks):
                first = len(schedule) * len(k_tiles)  # k-steps issued before this tile
                tile = _Tile(r0, min(t.rows, self.rows - r0), c0,
                             min(t.n_blocks, self.n_blocks - c0), len(schedule) % t.threads)
                steps = [_Step(k0, kt, (first + s) % t.threads)
                         for s, (k0, kt) in enumerate(k_tiles)]
                schedule.append((tile, steps))
        return schedule

    def _kernels(self, schedule) -> dict[str, list[Uop]]:
        """The tile uop of each ACC half and the GEMM kernels the schedule uses."""
        kernels = {}
        for tile, steps in schedule:
            acc = self._base("acc", tile.half)
            kernels[f"tile{tile.half}"] = [Uop(acc, 0, 0)]
            for step in steps:
                inp, wgt = self._base("inp", step.half), self._base("wgt", step.half)
                kernels[_gemm_kernel(tile, step)] = [
                    Uop(acc + c, inp, wgt + c * step.blocks) for c in range(self.t.n_blocks)
                ]
        return kernels

    def _segments(self) -> list[Segment]:
        rows, kb, nb = self.rows, self.k_blocks, self.n_blocks
        bias = [Segment("bias", "weights", "acc", nb)] if self.bias else []
        return [
            Segment("A", "input", "inp", rows * kb),
            Segment("W", "weights", "wgt", nb * kb),
            *bias,
            Segment("C", "output", "out", rows * nb),
        ]

    def program(self) -> Program:
        """The complete Program."""
        schedule = self._schedule()
        kernels, segments = self._kernels(schedule), self._segments()
        layout = Layout(self.cfg, segments, kernels)
        threads = self.t.threads
        insns = [_load_uops(layout, name) for name in kernels]
        insns += [NOP_COMPUTE.replace(push_prev=1)] * threads
        insns += [NOP_STORE.replace(push_prev=1)] * threads
        for tile, steps in schedule:
            insns += self._tile(layout, tile, steps)
        insns += [NOP_LOAD.replace(pop_next=1)] * threads
        insns += [NOP_COMPUTE.replace(pop_next=1)] * threads
        return Program(self.cfg, [*insns, FINISH], segments, kernels)

    def _tile(self, layout: Layout, tile: _Tile, steps: list[_Step]) -> list[Insn]:
        """Instructions of one output tile: init ACC, k-steps, epilogue, store."""
        acc = self._base("acc", tile.half)
        bgn = layout.kernel_table[f"tile{tile.half}"][0]
        # The one tile uop walks the tile's ACC rows: rows outer, output blocks inner.
        loop = {"uop_bgn": bgn, "uop_end": bgn + 1, "iter_out": tile.rows, "iter_in": tile.cols,
                "dst_factor_out": tile.cols, "dst_factor_in": 1}
        if self.bias:
            init = Insn(Opcode.LOAD, mem_type=MemType.ACC, sram_base=acc, y_size=tile.rows,
                        x_size=tile.cols, x_stride=0, dram_base=layout.elem_addr("bias", tile.c0))
        else:
            init = Insn(Opcode.GEMM, reset=1, **loop)
        insns = [init.replace(pop_next=1)]
        for step in steps:
            insns += self._k_step(layout, tile, step)
        alu = Insn(Opcode.ALU, use_imm=1, **loop)
        if self.relu:
            insns.append(alu.replace(alu_op=AluOp.MAX, imm=0))
        if self.shift:
            insns.append(alu.replace(alu_op=AluOp.SHR, imm=self.shift))
        insns[-1] = insns[-1].replace(push_next=1)
        store = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=acc, y_size=tile.rows,
                     x_size=tile.cols, x_stride=self.n_blocks, pop_prev=1, push_prev=1,
                     dram_base=layout.elem_addr("C", tile.r0 * self.n_blocks + tile.c0))
        return [*insns, store]

    def _k_step(self, layout: Layout, tile: _Tile, step: _Step) -> list[Insn]:
        """LOAD INP, LOAD WGT and the GEMM that accumulates one k-tile into the output tile."""
        row = {"x_size": step.blocks, "x_stride": self.k_blocks}
        load_inp = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=self._base("inp", step.half),
                        dram_base=layout.elem_addr("A", tile.r0 * self.k_blocks + step.k0),
                        y_size=tile.rows, pop_next=1, **row)
        load_wgt = Insn(Opcode.LOAD, mem_type=MemType.WGT, sram_base=self._base("wgt", step.half),
                        dram_base=layout.elem_addr("W", tile.c0 * self.k_blocks + step.k0),
                        y_size=tile.cols, push_next=1, **row)
        # Uop c is output block c; the outer loop walks k (the ACC row stays), the inner one
        # walks rows (the weight block stays), so consecutive uops never hit the same ACC row.
        bgn = layout.kernel_table[_gemm_kernel(tile, step)][0]
        gemm = Insn(Opcode.GEMM, uop_bgn=bgn, uop_end=bgn + tile.cols, iter_out=step.blocks,
                    iter_in=tile.rows, dst_factor_out=0, dst_factor_in=tile.cols,
                    src_factor_out=1, src_factor_in=step.blocks, wgt_factor_out=1,
                    wgt_factor_in=0, pop_prev=1, push_prev=1)
        return [load_inp, load_wgt, gemm]


class _Tile(NamedTuple):
    """An output tile: first row block and row count, first n-block and count, its ACC half."""

    r0: int
    rows: int
    c0: int
    cols: int
    half: int


class _Step(NamedTuple):
    """A k-step of a tile: first k-block, how many, and its INP/WGT half."""

    k0: int
    blocks: int
    half: int


def _gemm_kernel(tile: _Tile, step: _Step) -> str:
    """Name of the GEMM kernel of an (ACC half, INP/WGT half, k-step width)."""
    return f"gemm_acc{tile.half}_in{step.half}_k{step.blocks}"


def _load_uops(layout: Layout, name: str) -> Insn:
    """LOAD UOP of a kernel to the same uop-buffer index as its place in the uops segment."""
    dram_base, length = layout.kernel_addr(name)
    sram_base = layout.kernel_table[name][0]
    return Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=sram_base, dram_base=dram_base,
                y_size=1, x_size=length, x_stride=length)

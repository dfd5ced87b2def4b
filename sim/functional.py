"""The functional simulator: the bit-exact golden model of every instruction and of the pipeline.

Fetch, the three stage queues and the four token queues are modelled with their configured depths,
so a program that deadlocks on the accelerator (a pop never matched, a full token queue, fetch
stalled behind a full stage queue) deadlocks here too, with a message naming every waiting stage.
Stages are scheduled round-robin (load, compute, store), one instruction each per round, which is
one legal interleaving; races between unsynchronized stages are not detected.

Each instruction runs as a few numpy operations over all of its micro-op executions. GEMM turns
its loop nest into batched matrix products: a loop axis along which the ACC index stays put is
folded into the contraction, and one along which the weight index stays put becomes the rows
that share one weight block. Buffers (and the uops loaded) persist across runs of one simulator,
as SRAM does across launches; token and stage queues start empty on every run.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from isa.config import HwConfig
from isa.errors import DeadlockError, SimError
from isa.formats import AluOp, Opcode
from isa.instructions import Insn, Stage, TokenQueue, decode_uop_array, is_nop, pops, pushes
from isa.instructions import stage_of as route
from isa.packing import pack_elements, unpack_elements, wrap
from isa.program import Program
from isa.semantics import alu

# Working memory one instruction may use at a time; larger instructions run in boxes of the loop
# nest that fit.
CHUNK_BYTES = 64 << 20

LOAD_KINDS = ("uop", "inp", "wgt", "acc")
INSN_KINDS = ("LOAD", "STORE", "GEMM", "ALU", "FINISH", "NOP")
_UOP_COLUMNS = {"dst": 0, "src": 1, "wgt": 2}


@dataclass
class Stats:
    """What a run did: instructions by opcode, DRAM bytes moved, GEMM and ALU work."""

    insns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INSN_KINDS, 0))
    bytes_loaded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LOAD_KINDS, 0))
    bytes_stored: dict[str, int] = field(default_factory=lambda: {"out": 0})
    gemm_uops: int = 0
    macs: int = 0
    alu_uops: int = 0
    alu_lane_ops: int = 0

    @property
    def instructions(self) -> int:
        """Instructions executed, NOPs included."""
        return sum(self.insns.values())

    def to_dict(self) -> dict:
        """Plain JSON-ready form: counts, and per-opcode / per-kind dicts."""
        return {
            "instructions": self.instructions,
            "insns": dict(self.insns),
            "bytes_loaded": dict(self.bytes_loaded),
            "bytes_stored": dict(self.bytes_stored),
            "gemm_uops": self.gemm_uops,
            "macs": self.macs,
            "alu_uops": self.alu_uops,
            "alu_lane_ops": self.alu_lane_ops,
        }


def mnemonic(insn: Insn) -> str:
    """Short name of an instruction for messages, e.g. LOAD INP, ALU MAX or NOP COMPUTE."""
    if is_nop(insn):
        return f"NOP {route(insn).name}"
    if insn.op in (Opcode.LOAD, Opcode.STORE):
        return f"{insn.op.name} {insn.mem.name}"
    if insn.op == Opcode.ALU:
        return f"ALU {AluOp(insn.alu_op).name}"
    return insn.op.name


class FunctionalSim:
    """Bit-exact model of one accelerator config: its buffers, queues and every instruction."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.inp = np.zeros((cfg.inp_depth, *cfg.elem_shape("inp")), dtype=np.int64)
        self.wgt = np.zeros((cfg.wgt_depth, *cfg.elem_shape("wgt")), dtype=np.int64)
        self.acc = np.zeros((cfg.acc_depth, *cfg.elem_shape("acc")), dtype=np.int64)
        self.out = np.zeros((cfg.acc_depth, *cfg.elem_shape("out")), dtype=np.int64)
        # Decoded micro-ops, one row (dst, src, wgt) each, and which rows a LOAD UOP has filled.
        self.uop = np.zeros((cfg.uop_depth, 3), dtype=np.int64)
        self.uop_loaded = np.zeros(cfg.uop_depth, dtype=bool)
        self._buffers = {"uop": self.uop, "inp": self.inp, "wgt": self.wgt, "acc": self.acc}
        # GEMM runs on float64 BLAS. One product sums at most 2**16 (uops or loop iterations)
        # times block_in <= 2**8 lanes of |x*w| <= 2**14: below 2**53, so float64 is exact.
        assert (1 << 16) * cfg.block_in << (cfg.inp_bits + cfg.wgt_bits - 2) < 1 << 53

    def run(self, program: Program, dram: np.ndarray | None = None) -> Stats:
        """Run a program to completion on a DRAM image (modified in place); return its stats."""
        if program.config != self.cfg:
            raise SimError(
                f"the program was built for config {program.config.name}, but this simulator "
                f"models {self.cfg.name}: rebuild the program or simulate its config"
            )
        dram = program.dram_image() if dram is None else dram
        if not (isinstance(dram, np.ndarray) and dram.dtype == np.uint8 and dram.ndim == 1
                and dram.flags.c_contiguous and dram.flags.writeable):
            raise SimError("the DRAM image must be a writeable contiguous 1-D uint8 numpy array")
        stats = Stats()
        for index in _Pipeline(program.insns, self.cfg):
            self._execute(index, program.insns[index], dram, stats)
        return stats

    # -- dispatch ------------------------------------------------------------------------------

    def _execute(self, index: int, insn: Insn, dram: np.ndarray, stats: Stats) -> None:
        if is_nop(insn):
            stats.insns["NOP"] += 1
            return
        stats.insns[insn.op.name] += 1
        where = _Site(index, insn)
        if insn.op == Opcode.LOAD:
            self._load(insn, dram, stats, where)
        elif insn.op == Opcode.STORE:
            self._store(insn, dram, stats, where)
        elif insn.op == Opcode.GEMM:
            self._gemm(insn, stats, where)
        elif insn.op == Opcode.ALU:
            self._alu(insn, stats, where)

    # -- LOAD and STORE ------------------------------------------------------------------------

    def _load(self, insn: Insn, dram: np.ndarray, stats: Stats, where: _Site) -> None:
        kind = insn.mem.kind
        cfg = self.cfg
        width = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        height = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        _check_sram(insn.sram_base, width * height, cfg.depth(kind), kind, where)
        rows = _dram_rows(dram, insn, cfg.elem_bytes(kind), where)
        count = insn.y_size * insn.x_size
        data = unpack_elements(np.ascontiguousarray(rows).ravel(), cfg, kind, count)
        if kind == "uop":
            data = np.stack(decode_uop_array(data, cfg), axis=-1)
        buf = self._buffers[kind]
        region = buf[insn.sram_base : insn.sram_base + width * height]
        region = region.reshape(height, width, *buf.shape[1:])
        region[...] = 0
        rows_in = slice(insn.y_pad_0, insn.y_pad_0 + insn.y_size)
        cols_in = slice(insn.x_pad_0, insn.x_pad_0 + insn.x_size)
        region[rows_in, cols_in] = data.reshape(insn.y_size, insn.x_size, *buf.shape[1:])
        if kind == "uop":
            self.uop_loaded[insn.sram_base : insn.sram_base + count] = True
        stats.bytes_loaded[kind] += rows.size

    def _store(self, insn: Insn, dram: np.ndarray, stats: Stats, where: _Site) -> None:
        count = insn.y_size * insn.x_size
        _check_sram(insn.sram_base, count, self.cfg.acc_depth, "out", where)
        packed = pack_elements(self.out[insn.sram_base : insn.sram_base + count], self.cfg, "out")
        rows = _dram_rows(dram, insn, self.cfg.elem_bytes("out"), where)
        data = np.frombuffer(packed, dtype=np.uint8).reshape(rows.shape)
        if insn.x_stride >= insn.x_size:
            rows[...] = data
        else:
            # Overlapping rows: write them in order so later rows win, as the DMA would.
            for y in range(insn.y_size):
                rows[y] = data[y]
        stats.bytes_stored["out"] += rows.size

    # -- GEMM and ALU --------------------------------------------------------------------------

    def _gemm(self, insn: Insn, stats: Stats, where: _Site) -> None:
        nest = _LoopNest(insn, self, where)
        cfg = self.cfg
        # Per execution: three index grids, its INP lanes (int64 and float64) and products
        # (int64 and float64), and a share of the weight block it uses with others.
        lanes = cfg.batch * (2 * cfg.block_in + 2 * cfg.block_out)
        weights = 2 * cfg.block_out * cfg.block_in // nest.shared_len()
        for box in nest.boxes(8 * (3 + lanes + weights)):
            dst = nest.indices(box, "dst", "acc")
            stats.gemm_uops += dst.size
            if insn.reset:
                self.acc[dst] = 0
                self.out[dst] = 0
            else:
                src = nest.indices(box, "src", "inp")
                wgt = nest.indices(box, "wgt", "wgt")
                self._accumulate(nest, dst, src, wgt)
                stats.macs += dst.size * cfg.macs_per_cycle

    def _accumulate(self, nest: _LoopNest, dst, src, wgt) -> None:
        """ACC[dst] += INP[src] @ WGT[wgt]^T for every execution in a box, as batched matmuls."""
        cfg = self.cfg
        # Axes of (groups, shared rows, reduction): dst is constant along the reduction axis and
        # wgt along the shared-rows axis, so each group is one (rows x red*block_in) @
        # (red*block_in x block_out) product.
        dst, src, wgt = (nest.arrange(a) for a in (dst, src, wgt))
        groups, rows, red = src.shape
        x = self.inp[src].transpose(0, 1, 3, 2, 4)
        x = x.reshape(groups, rows * cfg.batch, red * cfg.block_in).astype(np.float64)
        w = self.wgt[wgt[:, 0, :]].transpose(0, 1, 3, 2)
        w = w.reshape(groups, red * cfg.block_in, cfg.block_out).astype(np.float64)
        products = np.matmul(x, w).astype(np.int64).reshape(groups * rows, cfg.batch, cfg.block_out)
        dst = dst[:, :, 0].ravel()
        np.add.at(self.acc, dst, products)
        self._write_back(dst, self.acc[dst])

    def _alu(self, insn: Insn, stats: Stats, where: _Site) -> None:
        nest = _LoopNest(insn, self, where)
        op = AluOp(insn.alu_op)
        for box in nest.boxes(8 * (2 + 3 * self.cfg.batch * self.cfg.block_out)):
            dst = nest.indices(box, "dst", "acc").ravel()
            src = None if insn.use_imm else nest.indices(box, "src", "acc").ravel()
            if self._needs_order(dst, src):
                self._alu_in_order(op, dst, src, insn.imm)
            else:
                y = np.int64(insn.imm) if src is None else self.acc[src]
                self._write_back(dst, alu(op, self.acc[dst], y, self.cfg.acc_bits, insn.imm))
            stats.alu_uops += dst.size
            stats.alu_lane_ops += dst.size * self.cfg.batch * self.cfg.block_out

    def _needs_order(self, dst: np.ndarray, src: np.ndarray | None) -> bool:
        """True when a box must run execution by execution to see its own earlier writes."""
        if np.bincount(dst, minlength=1).max() > 1:
            return True
        if src is None:
            return False
        written_at = np.full(self.cfg.acc_depth, dst.size)
        written_at[dst] = np.arange(dst.size)
        return bool((written_at[src] < np.arange(dst.size)).any())

    def _alu_in_order(self, op: AluOp, dst: np.ndarray, src: np.ndarray | None, imm: int):
        """The ALU one execution at a time (vectorized over lanes only)."""
        acc, bits = self.acc, self.cfg.acc_bits
        for e, d in enumerate(dst):
            acc[d] = alu(op, acc[d], np.int64(imm) if src is None else acc[src[e]], bits, imm)
        self.out[dst] = wrap(acc[dst], self.cfg.out_bits)

    def _write_back(self, dst: np.ndarray, values: np.ndarray) -> None:
        """Wrap values into ACC at dst and mirror them into OUT (dst may repeat: same values)."""
        values = wrap(values, self.cfg.acc_bits)
        self.acc[dst] = values
        self.out[dst] = wrap(values, self.cfg.out_bits)


class _LoopNest:
    """The (iter_out, iter_in, uop) loop nest of a GEMM or ALU and its affine index maps."""

    def __init__(self, insn: Insn, sim: FunctionalSim, where: _Site):
        bgn, end = insn.uop_bgn, insn.uop_end
        missing = np.flatnonzero(~sim.uop_loaded[bgn:end])
        if missing.size:
            raise SimError(
                f"{where}: uop {bgn + missing[0]} was never loaded (the kernel is uops "
                f"[{bgn}, {end}))"
            )
        self.cfg = sim.cfg
        self.where = where
        self.bgn = bgn
        self.shape = (insn.iter_out, insn.iter_in, end - bgn)
        factors = insn.fields()
        self.maps = {
            name: (
                factors.get(f"{name}_factor_out", 0),
                factors.get(f"{name}_factor_in", 0),
                sim.uop[bgn:end, column],
            )
            for name, column in _UOP_COLUMNS.items()
        }
        self.red_axis = self._constant_axis("dst", exclude=None)
        self.shared_axis = self._constant_axis("wgt", exclude=self.red_axis)

    def _constant_axis(self, name: str, exclude: int | None) -> int | None:
        """The longest loop axis (other than `exclude`) along which an index does not move."""
        out, inner, base = self.maps[name]
        constant = (out == 0, inner == 0, base.size == 0 or bool((base == base[0]).all()))
        candidates = [
            a for a in range(3) if constant[a] and a != exclude and self.shape[a] > 1
        ]
        return max(candidates, key=lambda a: self.shape[a], default=None)

    def shared_len(self) -> int:
        """Executions that share one weight block (1 when no loop axis keeps wgt constant)."""
        return 1 if self.shared_axis is None else self.shape[self.shared_axis]

    def boxes(self, bytes_per_point: int) -> Iterator[tuple[slice, slice, slice]]:
        """Split the nest into boxes of bounded working memory, in execution order."""
        limit = max(1, CHUNK_BYTES // bytes_per_point)
        if 0 in self.shape:
            return
        split = next(a for a in range(3) if math.prod(self.shape[a + 1 :]) <= limit)
        step = max(1, limit // math.prod(self.shape[split + 1 :]))
        for outer in itertools.product(*(range(n) for n in self.shape[:split])):
            for start in range(0, self.shape[split], step):
                yield (
                    *(slice(o, o + 1) for o in outer),
                    slice(start, min(start + step, self.shape[split])),
                    *(slice(0, n) for n in self.shape[split + 1 :]),
                )

    def indices(self, box, name: str, kind: str) -> np.ndarray:
        """The (i, j, uop) grid of one index over a box, checked against its buffer's depth."""
        depth = self.cfg.depth(kind)
        out, inner, base = self.maps[name]
        i = np.arange(box[0].start, box[0].stop)[:, None, None]
        j = np.arange(box[1].start, box[1].stop)[None, :, None]
        grid = base[box[2]][None, None, :] + i * out + j * inner
        bad = grid >= depth
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), grid.shape)
            ii, jj, k = (int(p) + b.start for p, b in zip(pos, box, strict=True))
            raise SimError(
                f"{self.where}: {kind.upper()} index {int(grid[pos])} out of range [0, {depth}) "
                f"(i={ii}, j={jj}, uop {self.bgn + k})"
            )
        return grid

    def arrange(self, grid: np.ndarray) -> np.ndarray:
        """Reorder a box grid to (groups, shared rows, reduction), adding unit axes as needed."""
        grid = grid[..., None, None]
        shared = 3 if self.shared_axis is None else self.shared_axis
        red = 4 if self.red_axis is None else self.red_axis
        grid = np.moveaxis(grid, (shared, red), (3, 4))
        return grid.reshape(-1, grid.shape[3], grid.shape[4])


class _Pipeline:
    """Fetch, the stage queues and the token queues: the order in which instructions execute."""

    def __init__(self, insns: list[Insn], cfg: HwConfig):
        self.insns = insns
        self.cfg = cfg
        self.plan = [(route(insn), pops(insn), pushes(insn)) for insn in insns]
        self.queues: dict[Stage, deque[int]] = {stage: deque() for stage in Stage}
        self.tokens = dict.fromkeys(TokenQueue, 0)
        self.fetched = 0

    def __iter__(self) -> Iterator[int]:
        """Yield instruction indices round-robin over the stages; raise DeadlockError if stuck.

        Each yielded instruction has popped its tokens; it pushes them when the caller resumes
        the iteration, i.e. after it has executed.
        """
        self._fetch()
        while any(self.queues.values()):
            progressed = False
            for queue in self.queues.values():
                if queue and not self._waits(queue[0]):
                    index = queue.popleft()
                    _, popped, pushed = self.plan[index]
                    for q in popped:
                        self.tokens[q] -= 1
                    yield index
                    for q in pushed:
                        self.tokens[q] += 1
                    progressed = True
                self._fetch()
            if not progressed:
                raise DeadlockError(self._deadlock_message())

    def _fetch(self) -> None:
        while self.fetched < len(self.insns):
            queue = self.queues[self.plan[self.fetched][0]]
            if len(queue) >= self.cfg.insn_queue_depth:
                return
            queue.append(self.fetched)
            self.fetched += 1

    def _waits(self, index: int) -> list[str]:
        """Why an instruction cannot start: one phrase per queue it waits on (empty if none)."""
        _, popped, pushed = self.plan[index]
        reasons = [f"a token on {q.value} (empty)" for q in popped if not self.tokens[q]]
        depth = self.cfg.dep_queue_depth
        reasons += [
            f"room on {q.value} (full, {self.tokens[q]} tokens)"
            for q in pushed
            if self.tokens[q] >= depth
        ]
        return reasons

    def _deadlock_message(self) -> str:
        parts = []
        for stage, queue in self.queues.items():
            if queue:
                head = queue[0]
                parts.append(
                    f"{stage.name.lower()} waits at #{head} ({mnemonic(self.insns[head])}) "
                    f"for {' and '.join(self._waits(head))}"
                )
        if self.fetched < len(self.insns):
            stage = self.plan[self.fetched][0]
            parts.append(
                f"fetch stalled at #{self.fetched}: {stage.name.lower()} queue full "
                f"({self.cfg.insn_queue_depth})"
            )
        return "deadlock: " + "; ".join(parts)


class _Site:
    """Where an error happened, formatted only when a message needs it: instruction N (OP)."""

    __slots__ = ("index", "insn")

    def __init__(self, index: int, insn: Insn):
        self.index, self.insn = index, insn

    def __str__(self) -> str:
        return f"instruction {self.index} ({mnemonic(self.insn)})"


def _check_sram(base: int, count: int, depth: int, kind: str, where: _Site) -> None:
    if base + count > depth:
        raise SimError(
            f"{where}: {kind.upper()} elements [{base}, {base + count}) out of range [0, {depth})"
        )


def _dram_rows(dram: np.ndarray, insn: Insn, elem_bytes: int, where: _Site) -> np.ndarray:
    """A (y_size, x_size * elem_bytes) byte view of the DRAM rows a LOAD or STORE touches."""
    row_bytes = insn.x_size * elem_bytes
    start = insn.dram_base * elem_bytes
    if insn.y_size:
        stop = start + (insn.y_size - 1) * insn.x_stride * elem_bytes + row_bytes
        if stop > dram.size:
            raise SimError(
                f"{where}: DRAM bytes [{start}, {stop}) out of range [0, {dram.size})"
            )
    else:
        start = 0
    return np.lib.stride_tricks.as_strided(
        dram[start:],
        shape=(insn.y_size, row_bytes),
        strides=(insn.x_stride * elem_bytes, 1),
        writeable=insn.op == Opcode.STORE,
    )


def run(program: Program, dram: np.ndarray | None = None) -> tuple[np.ndarray, Stats]:
    """Run a program on a fresh simulator of its config; return the DRAM image and the stats."""
    dram = program.dram_image() if dram is None else dram
    stats = FunctionalSim(program.config).run(program, dram)
    return dram, stats

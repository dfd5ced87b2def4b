"""Random legal programs for differential testing of the accelerator against the functional sim.

`random_program(cfg, seed)` returns a Program and a DRAM image with random data in every segment.
The programs are legal by construction: every index is in range, no schedule of the three stages
deadlocks, and no schedule changes the result (no data races, no reads of unwritten data). They
are built like the double-buffered programs of `loom.samples`, with randomness in every field:

- A program runs R rounds on T virtual threads (T <= dep_queue_depth). Each of the INP, WGT and
  ACC/OUT buffers has T slots, each a random window of rows; round r loads INP and WGT into slot
  r % T, computes into ACC/OUT slot r % T and stores from it.
- Tokens: load pops compute->load before it writes its slot and pushes load->compute after;
  compute pops load->compute before its first GEMM that reads INP/WGT and pushes compute->load
  after the last one, pops store->compute before its first OUT write and pushes compute->store
  after the last one; store pops compute->store and pushes store->compute. Compute and store
  push T tokens first and some leftovers are drained at the end. Each flag rides on a real
  instruction or on a NOP.
- The three stage streams are interleaved at random, each pop after its matching push, and at
  most T tokens ever wait in a queue, so nothing deadlocks whatever the queue depths.
- The generator tracks which rows of each buffer hold data and which uops are loaded, and draws
  every access from them; loop factors and uop indices are drawn so that the affine indices stay
  in range, with factor 0, repeated rows and ALU chains that read earlier results among them.

`hazards` checks those promises on any Program, independently of the generator.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from isa.config import HwConfig
from isa.formats import IMM_BITS, PAD_BITS, AluOp, MemType, Opcode
from isa.instructions import (
    FINISH,
    NOP_COMPUTE,
    NOP_LOAD,
    NOP_STORE,
    Insn,
    Stage,
    TokenQueue,
    Uop,
    decode_uop,
    is_nop,
    pops,
    pushes,
)
from isa.instructions import stage_of as route
from isa.program import Layout, Program, Segment
from isa.semantics import clip_imm, mulr_max_shift

MAX_PAD = (1 << PAD_BITS) - 1
PAD_FIELDS = ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")
IMM_MIN, IMM_MAX = -(1 << (IMM_BITS - 1)), (1 << (IMM_BITS - 1)) - 1
# DRAM segment of each memory kind; the uop kernels get their own segment from Layout.
SEGMENTS = {"inp": ("A", "input"), "wgt": ("W", "weights"), "acc": ("bias", "weights"),
            "out": ("C", "output")}
_NOPS = {Stage.LOAD: NOP_LOAD, Stage.COMPUTE: NOP_COMPUTE, Stage.STORE: NOP_STORE}
# Memory types a stage may use for a NOP that has its other fields set (x_size = 0 still wins).
_NOP_MEMS = {Stage.LOAD: (MemType.INP, MemType.WGT), Stage.COMPUTE: (MemType.UOP, MemType.ACC),
             Stage.STORE: (MemType.OUT,)}
# (pop flag, push flag, tag) per stage: the pop comes before the first instruction of a round
# tagged `tag`, the push after the last one and after the pop.
_SYNC = {
    Stage.LOAD: [("pop_next", "push_next", "slot")],
    Stage.COMPUTE: [("pop_prev", "push_prev", "io"), ("pop_next", "push_next", "out")],
    Stage.STORE: [("pop_prev", "push_prev", "slot")],
}


@dataclass(frozen=True)
class Size:
    """Bounds on what one program does; `small` keeps an RTL simulation well under a second."""

    rounds: int  # rounds (tiles) of load, compute and store
    transfers: int  # extra LOADs of INP/WGT, or STOREs, per round
    actions: int  # compute actions (ACC loads, GEMM, ALU) per round
    x: int  # elements per DRAM row of a transfer, before padding
    y: int  # rows of a transfer
    elements: int  # SRAM elements one LOAD writes, padding included
    uops: int  # uops in a new kernel
    iters: int  # iterations of each loop of a GEMM or ALU
    executions: int  # uop executions of one GEMM or ALU
    window: int  # rows of each buffer slot the program uses
    segment: int  # elements of each DRAM segment


SIZES = {
    "small": Size(rounds=3, transfers=2, actions=4, x=4, y=4, elements=40, uops=4, iters=4,
                  executions=24, window=48, segment=48),
    "medium": Size(rounds=6, transfers=3, actions=8, x=8, y=8, elements=192, uops=8, iters=8,
                   executions=128, window=256, segment=160),
}


class _Op(NamedTuple):
    """An instruction being built: `ref` names the segment or kernel its dram_base is inside."""

    insn: Insn
    ref: str | None = None
    tags: frozenset[str] = frozenset()


def random_program(
    cfg: HwConfig, rng: random.Random | int, *, size: str = "small"
) -> tuple[Program, np.ndarray]:
    """A random legal program for `cfg` and its DRAM image with random data in every segment."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    return _Builder(cfg, rng, SIZES[size]).build()


def programs(cfg: HwConfig, *, size: str = "small"):
    """A hypothesis strategy of `random_program` results that shrinks toward smaller programs."""
    from hypothesis import strategies as st  # a test dependency: only this function needs it

    return st.randoms(use_true_random=False).map(lambda rng: random_program(cfg, rng, size=size))


def _runs(valid: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of True in valid[lo:hi]."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], valid[lo:hi], [False]))))
    return [(lo + int(a), lo + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class _Builder:
    """Generates one program: buffer state, uop kernels and the three stage streams."""

    def __init__(self, cfg: HwConfig, rng: random.Random, size: Size):
        self.cfg, self.rng, self.size = cfg, rng, size
        self.threads = rng.randint(1, min(3, cfg.dep_queue_depth))
        self.windows = {kind: [self._window(kind, t) for t in range(self.threads)]
                        for kind in ("inp", "wgt", "acc")}
        self.valid = {kind: np.zeros(cfg.depth(kind), dtype=bool)
                      for kind in ("inp", "wgt", "acc", "out")}
        # Rows worth reading: they hold loaded or computed data, or zeros written over data.
        # Other zeros (padding, resets of fresh rows) hide wrong results.
        self.data = {kind: np.zeros(cfg.depth(kind), dtype=bool) for kind in ("inp", "wgt", "acc")}
        # OUT rows the current round's GEMMs and ALUs computed or reset over earlier results:
        # stores prefer them, to show what they did.
        self.fresh = np.zeros(cfg.acc_depth, dtype=bool)
        # A larger output segment keeps stores from overwriting the results of earlier ones.
        self.counts = {kind: size.segment * (4 if kind == "out" else 1) for kind in SEGMENTS}
        self.uops: list[Uop | None] = [None] * cfg.uop_depth
        self.loaded: list[tuple[int, int]] = []  # uop-buffer ranges LOAD UOPs filled
        self.kernels: dict[str, list[Uop]] = {}

    def _window(self, kind: str, thread: int) -> tuple[int, int]:
        part = self.cfg.depth(kind) // self.threads
        rows = min(part, self.size.window)
        lo = thread * part + self.rng.randint(0, part - rows)
        return lo, lo + rows

    # -- the program ---------------------------------------------------------------------------

    def build(self) -> tuple[Program, np.ndarray]:
        """The program and its DRAM image."""
        rng, threads = self.rng, self.threads
        streams = {
            Stage.LOAD: [],
            Stage.COMPUTE: [self._nop(Stage.COMPUTE, push_prev=1) for _ in range(threads)],
            Stage.STORE: [self._nop(Stage.STORE, push_prev=1) for _ in range(threads)],
        }
        rounds = {Stage.LOAD: self._load_round, Stage.COMPUTE: self._compute_round,
                  Stage.STORE: self._store_round}
        for r in range(rng.randint(1, self.size.rounds)):
            for stage, make in rounds.items():  # in this order: each sees what the last wrote
                streams[stage] += self._sync(make(r % threads), stage)
        streams[Stage.LOAD] += [self._nop(Stage.LOAD, pop_next=1)
                                for _ in range(rng.randint(0, threads))]
        drains = rng.randint(0, threads)
        finish = FINISH.replace(pop_next=1) if drains and rng.random() < 0.5 else FINISH
        drains -= finish.pop_next
        streams[Stage.COMPUTE] += [self._nop(Stage.COMPUTE, pop_next=1) for _ in range(drains)]
        ops = [*self._merge(streams), _Op(finish)]

        segments = [Segment(name, kind, mem, self.counts[mem])
                    for mem, (name, kind) in SEGMENTS.items()]
        layout = Layout(self.cfg, segments, self.kernels)
        insns = [self._resolve(op, layout) for op in ops]
        program = Program(self.cfg, insns, segments, self.kernels)
        dram = program.dram_image()
        data = np.random.default_rng(rng.getrandbits(64))
        for name, _ in SEGMENTS.values():
            seg = program.segment(name)
            dram[seg.offset : seg.offset + seg.nbytes(self.cfg)] = data.integers(
                0, 256, seg.nbytes(self.cfg), dtype=np.uint8)
        return program, dram

    def _resolve(self, op: _Op, layout: Layout) -> Insn:
        """The instruction with its dram_base made absolute."""
        if op.ref is None:
            return op.insn
        kernel = op.ref in self.kernels
        base = layout.kernel_addr(op.ref)[0] if kernel else layout.elem_addr(op.ref)
        return op.insn.replace(dram_base=op.insn.dram_base + base)

    def _merge(self, streams: dict[Stage, list[_Op]]) -> list[_Op]:
        """Interleave the stage streams at random, keeping every pop after its matching push."""
        tokens = dict.fromkeys(TokenQueue, 0)
        heads = dict.fromkeys(streams, 0)
        merged, stage = [], None
        while len(merged) < sum(map(len, streams.values())):
            ready = [s for s, ops in streams.items() if heads[s] < len(ops)
                     and all(tokens[q] for q in pops(ops[heads[s]].insn))]
            # Runs of one stage fill its instruction queue, so fetch stalls get exercised.
            if stage not in ready or self.rng.random() < 0.4:
                stage = self.rng.choice(ready)
            op = streams[stage][heads[stage]]
            heads[stage] += 1
            for q in pops(op.insn):
                tokens[q] -= 1
            for q in pushes(op.insn):
                tokens[q] += 1
            merged.append(op)
        return merged

    def _sync(self, ops: list[_Op], stage: Stage) -> list[_Op]:
        """One round of a stage with its token flags on its instructions or on added NOPs."""
        rng, count = self.rng, len(ops)
        flags: list[dict[str, int]] = [{} for _ in ops]
        gaps: dict[int, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for pop, push, tag in _SYNC[stage]:
            tagged = [i for i, op in enumerate(ops) if tag in op.tags]
            at = rng.randint(0, tagged[0] if tagged else count)
            if at < count and rng.random() < 0.6:
                flags[at][pop] = 1
            else:
                gaps[at][0].append(pop)  # a NOP just before instruction `at`
            lo = max(tagged[-1] if tagged else -1, at)
            if lo >= count:
                gaps[count][1].append(push)
                continue
            at = rng.randint(lo, count - 1)
            if rng.random() < 0.6:
                flags[at][push] = 1
            else:
                gaps[at + 1][1].append(push)  # a NOP just after instruction `at`
        out = []
        for gap in range(count + 1):
            popped, pushed = gaps.get(gap, ([], []))
            # Pops first: a push placed in the same gap belongs after its pop.
            groups = [popped + pushed] if rng.random() < 0.5 else [popped, pushed]
            out += [self._nop(stage, **dict.fromkeys(g, 1)) for g in groups if g]
            if gap < count:
                out.append(ops[gap]._replace(insn=ops[gap].insn.replace(**flags[gap])))
        return out

    def _nop(self, stage: Stage, **flags: int) -> _Op:
        """A NOP of a stage: the canonical one, or one with x_size = 0 and other fields set."""
        rng = self.rng
        if rng.random() < 0.7:
            return _Op(_NOPS[stage].replace(**flags))
        mem = rng.choice(_NOP_MEMS[stage])
        pads = {} if mem in (MemType.UOP, MemType.OUT) else {p: self._pad() for p in PAD_FIELDS}
        insn = _NOPS[stage].replace(
            mem_type=mem, sram_base=rng.randrange(self.cfg.depth(mem.kind)),
            dram_base=rng.randrange(self.size.segment), y_size=rng.randint(0, self.size.y),
            x_stride=rng.randint(0, self.size.x), **pads, **flags)
        return _Op(insn)

    # -- rounds --------------------------------------------------------------------------------

    def _load_round(self, slot: int) -> list[_Op]:
        rng = self.rng
        kinds = [k for k in ("inp", "wgt") if rng.random() < 0.9]
        kinds += [rng.choice(("inp", "wgt")) for _ in range(rng.randint(0, self.size.transfers))]
        rng.shuffle(kinds)
        ops = [self._load(kind, slot) for kind in kinds]
        if rng.random() < 0.2:
            ops.insert(rng.randint(0, len(ops)), self._nop(Stage.LOAD))
        return ops

    def _compute_round(self, slot: int) -> list[_Op]:
        rng = self.rng
        actions: list[Callable[[int], list[_Op]]] = [
            self._load_acc, self._reset, self._gemm, self._gemm, self._gemm, self._alu, self._alu,
            self._alu, self._epilogue, self._epilogue, self._empty, self._compute_nop]
        self.fresh[:] = False
        init = self._load_acc if rng.random() < 0.6 else self._reset
        ops = init(slot) if rng.random() < 0.9 else []
        for _ in range(rng.randint(1, self.size.actions)):
            ops += rng.choice(actions)(slot)
        return ops

    def _store_round(self, slot: int) -> list[_Op]:
        ops = [self._store(slot) for _ in range(self.rng.randint(0, self.size.transfers + 1))]
        return [op for op in ops if op is not None]

    # -- LOAD and STORE ------------------------------------------------------------------------

    def _pad(self) -> int:
        """A padding width: mostly 0 (padded rows hold zeros, which hide wrong results)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.8:
            return 0
        if roll < 0.85:
            return MAX_PAD
        return rng.randint(1, MAX_PAD) if roll < 0.9 else rng.randint(1, 3)

    def _shape(self, cap: int) -> dict[str, int]:
        """y/x sizes and pads of a padded LOAD that writes at most `cap` elements (cap >= 1)."""
        rng = self.rng
        dims = {"y_size": 0 if rng.random() < 0.15 else rng.randint(1, self.size.y),
                "x_size": rng.randint(1, self.size.x)}
        dims |= {p: self._pad() for p in PAD_FIELDS}
        if not dims["y_size"] + dims["y_pad_0"] + dims["y_pad_1"] and rng.random() < 0.8:
            dims[rng.choice(("y_pad_0", "y_pad_1"))] = rng.randint(1, 3)  # only rows of zeros
        while _footprint(dims) > cap:
            shrinkable = [k for k, v in dims.items() if v > (1 if k.endswith("size") else 0)]
            key = rng.choice(shrinkable)
            dims[key] //= 2
        return dims

    def _stride(self, x: int, *, broadcast: float = 0.1, overlap: float = 0.15) -> int:
        """A row stride for rows of x elements: 0, dense, with gaps, or overlapping."""
        rng = self.rng
        roll = rng.random()
        if roll < broadcast:
            return 0
        if roll < 0.5:
            return x
        if roll < 1 - overlap or x == 1:
            return x + rng.randint(1, 4)
        return rng.randint(1, x - 1)

    def _dram(self, kind: str, y: int, x: int, stride: int) -> int:
        """An index into the segment of `kind` where y rows of x elements at `stride` fit."""
        extent = (y - 1) * stride + x if y else 1
        return self.rng.randint(0, self.counts[kind] - extent)

    def _load(self, kind: str, slot: int) -> _Op:
        """A LOAD of INP, WGT or ACC into the slot's window, padded and strided at random."""
        lo, hi = self.windows[kind][slot]
        dims = self._shape(min(self.size.elements, hi - lo))
        count = _footprint(dims)
        runs = _runs(self.valid[kind], lo, hi)
        if runs and self.rng.random() < 0.5:
            # Over rows that hold data, a padding or zero-fill bug shows; over fresh rows, it
            # writes the zeros they already hold.
            base = min(self.rng.randint(*self.rng.choice(runs)), hi - max(count, 1))
        else:
            base = self.rng.randint(lo, hi - max(count, 1))
        stride = self._stride(dims["x_size"], broadcast=0.3 if kind == "acc" else 0.1)
        dram = self._dram(kind, dims["y_size"], dims["x_size"], stride)
        insn = Insn(Opcode.LOAD, mem_type=MemType[kind.upper()], sram_base=base, dram_base=dram,
                    x_stride=stride, **dims)
        self.valid[kind][base : base + count] = True
        data = np.zeros((dims["y_pad_0"] + dims["y_size"] + dims["y_pad_1"],
                         dims["x_pad_0"] + dims["x_size"] + dims["x_pad_1"]), dtype=bool)
        data[dims["y_pad_0"] : dims["y_pad_0"] + dims["y_size"],
             dims["x_pad_0"] : dims["x_pad_0"] + dims["x_size"]] = True
        self.data[kind][base : base + count] |= data.ravel()
        return _Op(insn, SEGMENTS[kind][0], frozenset({"slot"}))

    def _store(self, slot: int) -> _Op | None:
        """A STORE of rows of the slot that hold OUT data, or None when there are none."""
        rng = self.rng
        window = self.windows["acc"][slot]
        runs = _runs(self.valid["out"] & self.fresh, *window)
        if not runs or rng.random() < 0.1:
            runs = _runs(self.valid["out"], *window) if rng.random() < 0.3 else []
        if not runs:
            return None
        lo, hi = rng.choice(runs)
        x = rng.randint(1, min(self.size.x, hi - lo))
        y = 0 if rng.random() < 0.05 else rng.randint(1, min(self.size.y, (hi - lo) // x))
        base = rng.randint(lo, hi - max(1, x * y))  # a STORE of no rows still needs a real row
        stride = self._stride(x, overlap=0.4)  # when rows overlap, the later row must win
        insn = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=base, y_size=y, x_size=x,
                    x_stride=stride, dram_base=self._dram("out", y, x, stride))
        return _Op(insn, SEGMENTS["out"][0], frozenset({"slot"}))

    # -- compute actions -----------------------------------------------------------------------

    def _load_acc(self, slot: int) -> list[_Op]:
        return [self._load("acc", slot)._replace(tags=frozenset())]

    def _compute_nop(self, slot: int) -> list[_Op]:
        return [self._nop(Stage.COMPUTE)]

    def _pick(self, kind: str, lo: int, hi: int) -> tuple[int, int] | None:
        """A random interval of rows of [lo, hi) that were all written, or None."""
        runs = _runs(self.valid[kind] & self.data[kind], lo, hi) if self.rng.random() < 0.8 else []
        runs = runs or _runs(self.valid[kind], lo, hi)
        if not runs:
            return None
        a, b = self.rng.choice(runs)
        rows = self.rng.randint(1, b - a)
        start = self.rng.randint(a, b - rows)
        return start, start + rows

    def _reset(self, slot: int) -> list[_Op]:
        return self._gemm(slot, reset=True)

    def _gemm(self, slot: int, *, reset: bool = False) -> list[_Op]:
        cfg = self.cfg
        if reset:
            dst, src, wgt = self.windows["acc"][slot], (0, cfg.inp_depth), (0, cfg.wgt_depth)
        else:
            dst = self._pick("acc", *self.windows["acc"][slot])
            src = self._pick("inp", *self.windows["inp"][slot])
            wgt = self._pick("wgt", *self.windows["wgt"][slot])
            if None in (dst, src, wgt):
                return []
        loads, fields = self._nest(Opcode.GEMM, {"dst": dst, "src": src, "wgt": wgt},
                                   computes=not reset)
        insn = Insn(Opcode.GEMM, reset=int(reset), **fields)
        return [*loads, _Op(insn, tags=frozenset({"out"} if reset else {"out", "io"}))]

    def _alu(self, slot: int) -> list[_Op]:
        rng, cfg = self.rng, self.cfg
        dst = self._pick("acc", *self.windows["acc"][slot])
        if dst is None:
            return []
        op = rng.choice(list(AluOp))
        if op == AluOp.CLIP or (op != AluOp.MULR and rng.random() < 0.5):
            mode, src, imm = "free", (0, cfg.acc_depth), self._operand(op)
        else:
            mode = rng.choice(("same", "chain", "free", "free"))
            src = dst if mode != "free" else self._pick("acc", 0, cfg.acc_depth)
            imm = self._operand(op) if op == AluOp.MULR else {}
        loads, fields = self._nest(Opcode.ALU, {"dst": dst, "src": src, "wgt": (0, cfg.wgt_depth)},
                                   mode)
        return [*loads, _Op(Insn(Opcode.ALU, alu_op=op, **imm, **fields), tags=frozenset({"out"}))]

    def _epilogue(self, slot: int) -> list[_Op]:
        """ALU ops with immediates (or MULR by rows that hold data) over the same rows, then a
        right shift.

        OUT keeps only the low out_bits of ACC; the shift brings higher bits into view.
        """
        rng, cfg = self.rng, self.cfg
        dst = self._pick("acc", *self.windows["acc"][slot])
        if dst is None:
            return []
        # Source rows that hold data, for a MULR among the steps (the other ops ignore them).
        src = self._pick("acc", 0, cfg.acc_depth)
        loads, fields = self._nest(Opcode.ALU, {"dst": dst, "src": src or (0, cfg.acc_depth),
                                                "wgt": (0, cfg.wgt_depth)})
        ops = [op for op in AluOp if src or op != AluOp.MULR]
        steps = [(op, self._operand(op)) for op in rng.sample(ops, rng.randint(1, 3))]
        # Mostly small shifts: GEMM sums of narrow lanes have few high bits to show.
        most = cfg.acc_bits - 1 if rng.random() < 0.3 else 12
        shift = rng.choice((AluOp.SHR, AluOp.RSHR))
        steps.append((shift, {"use_imm": 1, "imm": rng.randint(1, most)}))
        return [*loads, *(_Op(Insn(Opcode.ALU, alu_op=op, **imm, **fields),
                              tags=frozenset({"out"})) for op, imm in steps)]

    def _operand(self, op: AluOp) -> dict[str, int]:
        """use_imm and imm of an ALU op: an immediate, except for MULR (ACC[src], a shift)."""
        if op == AluOp.MULR:
            return {"imm": self._imm(op)}
        return {"use_imm": 1, "imm": self._imm(op)}

    def _imm(self, op: AluOp) -> int:
        rng, bits = self.rng, self.cfg.acc_bits
        if op == AluOp.MULR:  # a shift of the exact product, edges included
            top = mulr_max_shift(bits)
            return rng.choice((0, 1, top, rng.randint(0, top), rng.randint(8, 20)))
        if op == AluOp.CLIP and rng.random() < 0.7:  # bounds in order; else any immediate
            lo, hi = sorted(rng.randint(-128, 127) for _ in range(2))
            return clip_imm(lo, hi)
        if op in (AluOp.SHR, AluOp.RSHR) and rng.random() < 0.7:
            return rng.randint(-bits - 2, bits + 2)
        return rng.randint(IMM_MIN, IMM_MAX) if rng.random() < 0.5 else rng.randint(-16, 16)

    def _empty(self, slot: int) -> list[_Op]:
        """A GEMM or ALU whose loop nest is empty: it executes nothing."""
        rng, cfg = self.rng, self.cfg
        if self.loaded and rng.random() < 0.5:
            bgn, end = rng.choice(self.loaded)
            iters = [0, rng.randint(0, 3)]
            rng.shuffle(iters)
        else:
            bgn = end = rng.randrange(cfg.uop_depth)
            iters = [rng.randint(0, 3), rng.randint(0, 3)]
        loop = {"uop_bgn": bgn, "uop_end": end, "iter_out": iters[0], "iter_in": iters[1],
                "dst_factor_out": rng.randrange(cfg.acc_depth),
                "dst_factor_in": rng.randrange(cfg.acc_depth)}
        if rng.random() < 0.5:
            insn = Insn(Opcode.GEMM, reset=rng.randint(0, 1), **loop)
        else:
            op = rng.choice(list(AluOp))
            insn = Insn(Opcode.ALU, alu_op=op, use_imm=int(op == AluOp.CLIP), **loop)
        return [_Op(insn)]

    # -- loop nests and uop kernels ------------------------------------------------------------

    def _nest(self, op: Opcode, bounds: dict[str, tuple[int, int]], mode: str = "free", *,
              computes: bool = True):
        """LOAD UOPs and loop fields of a GEMM/ALU whose indices stay inside `bounds`.

        `mode` relates an ALU's src to its dst: "same" reads each dst, "chain" makes each uop
        read the previous uop's dst, "free" draws src from its own bounds. `computes` is False
        for a GEMM reset, whose zeros are worth reading or storing only over earlier data.
        """
        rng, size = self.rng, self.size
        iters = [rng.randint(1, size.iters), rng.randint(1, size.iters)]
        count = rng.randint(1, size.uops)
        while iters[0] * iters[1] * count > size.executions:
            if count > 1 and rng.random() < 0.5:
                count -= 1
            else:
                iters[iters[1] > iters[0]] -= 1
        looped = ("dst", "src", "wgt") if op == Opcode.GEMM else ("dst", "src")
        depths = {"dst": self.cfg.acc_depth, "wgt": self.cfg.wgt_depth,
                  "src": self.cfg.inp_depth if op == Opcode.GEMM else self.cfg.acc_depth}
        reused = self._reuse(iters, count, bounds, looped, depths) if mode == "free" else None
        if reused is not None:
            (bgn, end), factors = reused
            loads = []
        else:
            uops, factors = self._kernel_uops(iters, count, bounds, looped, depths, mode)
            bgn, loads = self._place(uops)
            end = bgn + count
        fields = {"uop_bgn": bgn, "uop_end": end, "iter_out": iters[0], "iter_in": iters[1]}
        for name in looped:
            fields[f"{name}_factor_out"], fields[f"{name}_factor_in"] = factors[name]
        for i in range(iters[0]):
            for j in range(iters[1]):
                for uop in self.uops[bgn:end]:
                    row = uop.dst + i * factors["dst"][0] + j * factors["dst"][1]
                    self.fresh[row] |= computes or self.valid["out"][row]
                    self.data["acc"][row] |= computes
                    self.valid["acc"][row] = self.valid["out"][row] = True
        return loads, fields

    def _factors(self, iters: list[int], room: int, depth: int) -> tuple[int, int]:
        """Outer and inner factors whose combined reach over the loops is at most `room`."""
        rng = self.rng

        def factor(most: int) -> int:
            roll = rng.random()
            return 0 if roll < 0.3 else min(1, most) if roll < 0.55 else rng.randint(0, most)

        # A factor of a loop that runs once never moves the index: any value is legal.
        outer = factor(room // (iters[0] - 1)) if iters[0] > 1 else rng.randrange(depth)
        left = room - (iters[0] - 1) * outer if iters[0] > 1 else room
        inner = factor(left // (iters[1] - 1)) if iters[1] > 1 else rng.randrange(depth)
        return outer, inner

    def _reuse(self, iters, count, bounds, looped, depths):
        """((bgn, end), factors) of loaded uops that fit `bounds` with some factors, or None."""
        rng = self.rng
        if not self.loaded or rng.random() < 0.5:
            return None
        bgn, end = rng.choice(self.loaded)
        length = rng.randint(1, min(count, end - bgn))
        bgn = rng.randint(bgn, end - length)
        uops = self.uops[bgn : bgn + length]
        factors = {}
        for name, (lo, hi) in bounds.items():
            values = [getattr(u, name) for u in uops]
            if min(values) < lo or max(values) >= hi:
                return None
            if name in looped:
                factors[name] = self._factors(iters, hi - 1 - max(values), depths[name])
        return (bgn, bgn + length), factors

    def _kernel_uops(self, iters, count, bounds, looped, depths, mode):
        """New uops and factors whose indices stay inside `bounds` (see `_nest` for `mode`)."""
        rng = self.rng
        values, factors = {}, {}
        for name, (lo, hi) in bounds.items():
            span = 0
            if name in looped:
                factors[name] = self._factors(iters, rng.randint(0, hi - lo - 1), depths[name])
                span = (iters[0] - 1) * factors[name][0] + (iters[1] - 1) * factors[name][1]
            pool = [rng.randint(lo, hi - 1 - span) for _ in range(count)]
            # Drawing some values from the pool repeats rows, so results pile up on one row.
            values[name] = [rng.choice(pool) if rng.random() < 0.3 else v for v in pool]
        if mode != "free":
            factors["src"] = factors["dst"]
            dst = values["dst"]
            values["src"] = list(dst) if mode == "same" else [rng.choice(dst), *dst[:-1]]
        return [Uop(*v) for v in zip(values["dst"], values["src"], values["wgt"], strict=True)], \
            factors

    def _place(self, uops: list[Uop]) -> tuple[int, list[_Op]]:
        """Put uops in a new kernel, pick where they go in the uop buffer and emit the LOAD."""
        rng, cfg = self.rng, self.cfg
        count = len(uops)

        def filler() -> Uop:  # uops in the kernel that this LOAD skips
            return Uop(rng.randrange(cfg.acc_depth), rng.randrange(cfg.acc_depth),
                       rng.randrange(cfg.wgt_depth))

        rows = rng.choice([d for d in range(1, count + 1) if count % d == 0])
        width = count // rows
        gap = rng.randint(0, 2) if rows > 1 else 0
        skip = rng.randint(0, 2)
        kernel = [filler() for _ in range(skip)]
        for r in range(rows):
            kernel += uops[r * width : (r + 1) * width]
            kernel += [filler() for _ in range(gap if r < rows - 1 else rng.randint(0, 2))]
        name = f"k{len(self.kernels)}"
        self.kernels[name] = kernel
        bgn = rng.randint(0, cfg.uop_depth - count)
        self.uops[bgn : bgn + count] = uops
        self.loaded.append((bgn, bgn + count))
        insn = Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=bgn, dram_base=skip,
                    y_size=rows, x_size=width, x_stride=width + gap)
        return bgn, [_Op(insn, name)]


def _footprint(dims: dict[str, int]) -> int:
    """SRAM elements a padded LOAD writes."""
    width = dims["x_pad_0"] + dims["x_size"] + dims["x_pad_1"]
    return width * (dims["y_pad_0"] + dims["y_size"] + dims["y_pad_1"])


# -- checking any program ----------------------------------------------------------------------


def hazards(program: Program) -> list[str]:
    """Why a program might deadlock or depend on the schedule; empty when it cannot.

    Under every schedule the token rules allow: each pop's token is pushed earlier in the stream
    and each push finds room (the pop that frees it comes first), so neither a stage nor fetch
    waits forever; stages that share an INP, WGT or OUT row access it in an order the tokens
    enforce; every buffer row and uop is written before it is read; every index and DRAM address
    is in range; and no LOAD reads DRAM that a STORE writes.
    """
    ancestors, problems = _token_order(program.insns, program.config.dep_queue_depth)
    stages = [route(insn) for insn in program.insns]
    users: dict[tuple[str, int], list[tuple[int, bool, bool]]] = defaultdict(list)
    for index, (reads, writes) in enumerate(_accesses(program, problems)):
        for key in reads | writes:
            users[key].append((index, key in reads, key in writes))
    found: dict[tuple, str] = {}
    for (kind, row), uses in users.items():
        for n, (i, reads, writes) in enumerate(uses):
            if reads and not any(w and (stages[j] == stages[i] or ancestors[i] >> j & 1)
                                 for j, _, w in uses[:n]):
                found.setdefault(("read", i, kind), f"#{i} reads {kind.upper()} row {row} before "
                                 "anything writes it")
            for j, _, other_writes in uses[:n]:
                if (stages[j] != stages[i] and (writes or other_writes)
                        and not ancestors[i] >> j & 1):
                    found.setdefault(("race", j, i, kind), f"#{j} and #{i} race on {kind.upper()} "
                                     f"row {row}: no token orders them")
    return problems + list(found.values()) + _dram_overlaps(program)


def _token_order(insns: list[Insn], depth: int) -> tuple[list[int], list[str]]:
    """Per instruction, the bit set of instructions that complete before it starts; problems."""
    ancestors: list[int] = []
    problems = []
    last: dict[Stage, int] = {}
    pushed: dict[TokenQueue, list[int]] = defaultdict(list)
    popped: dict[TokenQueue, list[int]] = defaultdict(list)
    for index, insn in enumerate(insns):
        stage = route(insn)
        preds = [last[stage]] if stage in last else []
        for q in pops(insn):
            k = len(popped[q])
            popped[q].append(index)
            if k < len(pushed[q]):
                preds.append(pushed[q][k])
            else:
                problems.append(f"#{index} pops token {k + 1} of {q.value}, which no earlier "
                                "instruction pushes: it can deadlock")
        bits = 0
        for p in preds:
            bits |= ancestors[p] | 1 << p
        ancestors.append(bits)
        for q in pushes(insn):
            k = len(pushed[q])
            pushed[q].append(index)
            freed = k - depth  # the pop that makes room for this push
            if freed >= 0 and not (freed < len(popped[q]) and bits >> popped[q][freed] & 1):
                problems.append(f"#{index} pushes token {k + 1} of {q.value} without waiting "
                                f"for pop {freed + 1}: the queue of {depth} may be full")
        last[stage] = index
    return ancestors, problems


def _accesses(program: Program, problems: list[str]) -> list[tuple[set, set]]:
    """Per instruction, the (kind, row)s it reads before writing them, and those it writes."""
    cfg = program.config
    dram = program.dram_image()
    uops: list[Uop | None] = [None] * cfg.uop_depth
    result = []
    for index, insn in enumerate(program.insns):
        reads: set[tuple[str, int]] = set()
        writes: set[tuple[str, int]] = set()
        if is_nop(insn) or insn.op == Opcode.FINISH:
            pass
        elif insn.op == Opcode.LOAD:
            kind = insn.mem.kind
            width = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            count = width * (insn.y_pad_0 + insn.y_size + insn.y_pad_1)
            writes = {(kind, row) for row in range(insn.sram_base, insn.sram_base + count)}
            if kind == "uop":
                for n, (start, _) in enumerate(_dram_spans(insn, cfg, insn.x_size)):
                    word = int.from_bytes(dram[start : start + 4].tobytes(), "little")
                    uops[insn.sram_base + n] = decode_uop(word, cfg)
        elif insn.op == Opcode.STORE:
            count = insn.y_size * insn.x_size
            reads = {("out", row) for row in range(insn.sram_base, insn.sram_base + count)}
        else:
            _loop_accesses(insn, uops, cfg, reads, writes)
        for kind, row in reads | writes:
            if row >= cfg.depth(kind):
                problems.append(f"#{index} {kind.upper()} row {row} is out of range")
        result.append((reads, writes))
    return result


def _loop_accesses(insn: Insn, uops: list[Uop | None], cfg: HwConfig, reads: set, writes: set):
    """Add the rows a GEMM or ALU reads (before writing them) and writes."""
    def read(kind: str, row: int) -> None:
        if (kind, row) not in writes:
            reads.add((kind, row))

    fields = insn.fields()
    gemm = insn.op == Opcode.GEMM
    for i in range(insn.iter_out):
        for j in range(insn.iter_in):
            for k in range(insn.uop_bgn, insn.uop_end):
                read("uop", k)
                if uops[k] is None:
                    continue
                at = {name: getattr(uops[k], name) + i * fields.get(f"{name}_factor_out", 0)
                      + j * fields.get(f"{name}_factor_in", 0) for name in ("dst", "src", "wgt")}
                if gemm and not insn.reset:
                    read("acc", at["dst"])
                    read("inp", at["src"])
                    read("wgt", at["wgt"])
                elif not gemm:
                    read("acc", at["dst"])
                    if not insn.use_imm:
                        read("acc", at["src"])
                writes.update({("acc", at["dst"]), ("out", at["dst"])})


def _dram_spans(insn: Insn, cfg: HwConfig, x_count: int | None = None):
    """(start byte, stop byte) of every DRAM element (x_count given) or row a transfer touches."""
    size = cfg.elem_bytes(insn.mem.kind)
    spans = []
    for y in range(insn.y_size):
        row = insn.dram_base + y * insn.x_stride
        if x_count is None:
            spans.append((row * size, (row + insn.x_size) * size))
        else:
            spans += [((row + x) * size, (row + x + 1) * size) for x in range(x_count)]
    return spans


def _dram_overlaps(program: Program) -> list[str]:
    """DRAM problems: transfers out of range, LOADs of bytes a STORE writes, stores over code."""
    cfg = program.config
    transfers = [(i, insn) for i, insn in enumerate(program.insns)
                 if insn.op in (Opcode.LOAD, Opcode.STORE) and not is_nop(insn)]
    written = np.zeros(program.dram_size, dtype=bool)
    problems = []
    for index, insn in transfers:
        for start, stop in _dram_spans(insn, cfg):
            if stop > program.dram_size:
                problems.append(f"#{index} reaches DRAM byte {stop} of {program.dram_size}")
            elif insn.op == Opcode.STORE:
                written[start:stop] = True
    for index, insn in transfers:
        if insn.op == Opcode.LOAD and any(written[a:b].any() for a, b in _dram_spans(insn, cfg)):
            problems.append(f"#{index} loads DRAM bytes that a STORE writes")
    if written[program.insn_offset :].any():
        problems.append("a STORE overwrites the instructions")
    return problems

"""Assembly of a lowered layer into a Program, shared by `compiler.lower` and
`compiler.lower_eltwise`.

A lowering emits a body of items: plain instructions, instructions whose DRAM address is an
element of a segment (`AtDram`), and GEMM or ALU instructions that run a uop kernel
(`WithKernel`), the kernels deduplicated by content. `ProgramBuilder.assemble` lays out the
segments and kernels, resolves the items to instructions (kernels resident in the uop buffer when
they all fit, else each reloaded at offset 0 before its use) and wraps the body in the dependency
tokens of `threads` buffer halves: first compute frees each INP/WGT half for load and store each
ACC half for compute, and before FINISH load and compute take back the tokens left over.
"""

from __future__ import annotations

from typing import NamedTuple

from isa.config import HwConfig
from isa.formats import AluOp, MemType, Opcode
from isa.instructions import FINISH, NOP_COMPUTE, NOP_LOAD, NOP_STORE, Insn, Uop
from isa.program import Layout, Program, Segment
from isa.semantics import clip_imm


class AtDram(NamedTuple):
    """An instruction whose dram_base is element `index` of `segment` (resolved at layout)."""

    insn: Insn
    segment: str
    index: int


class WithKernel(NamedTuple):
    """A GEMM or ALU instruction that runs uop kernel `kernel` (its uop range set at layout)."""

    kernel: str
    insn: Insn


def with_fields(item, **fields):
    """An emitted item (instruction, `AtDram` or `WithKernel`) with instruction fields set."""
    if isinstance(item, Insn):
        return item.replace(**fields)
    return item._replace(insn=item.insn.replace(**fields))


def clip_steps(cfg: HwConfig, clip) -> list[tuple[AluOp, int]]:
    """ALU ops clipping the accumulators to `clip` = (lo, hi): CLIP when both bounds fit a
    signed byte, else MAX and MIN, each left out when its bound is the accumulator's own."""
    lo, hi = clip
    limit = 1 << (cfg.acc_bits - 1)
    if -128 <= lo <= 127 and -128 <= hi <= 127:
        return [(AluOp.CLIP, clip_imm(lo, hi))]
    steps = [(AluOp.MAX, lo)] if lo > -limit else []
    return steps + ([(AluOp.MIN, hi)] if hi < limit - 1 else [])


class ProgramBuilder:
    """Collects the uop kernels of a lowering and assembles its emitted body into a Program."""

    def __init__(self, cfg: HwConfig, threads: int):
        self.cfg, self.threads = cfg, threads
        self.kernels: dict[str, list[Uop]] = {}

    def half_size(self, kind: str) -> int:
        """Elements of one of the `threads` halves of buffer `kind`."""
        return self.cfg.depth(kind) // self.threads

    def half_base(self, kind: str, half: int) -> int:
        """First index of a half of buffer `kind`."""
        return half * self.half_size(kind)

    def kernel(self, uops: list[Uop]) -> str:
        """Name of a uop kernel, deduplicated by content."""
        key = tuple(uops)
        for name, existing in self.kernels.items():
            if tuple(existing) == key:
                return name
        name = f"k{len(self.kernels)}"
        self.kernels[name] = list(uops)
        return name

    def assemble(self, segments: list[Segment], body: list, setup: list = ()) -> Program:
        """The Program: `setup` items, the resident kernels' loads, the token prologue, the
        body, the token drain and FINISH."""
        layout = Layout(self.cfg, segments, self.kernels)
        resident = sum(len(u) for u in self.kernels.values()) <= self.cfg.uop_depth
        insns = []
        for item in setup:
            insns += self._resolve(item, layout, resident)
        if resident:
            insns += [self._load_kernel(layout, name, layout.kernel_table[name][0])
                      for name in self.kernels]
        insns += [NOP_COMPUTE.replace(push_prev=1)] * self.threads
        insns += [NOP_STORE.replace(push_prev=1)] * self.threads
        for item in body:
            insns += self._resolve(item, layout, resident)
        insns += [NOP_LOAD.replace(pop_next=1)] * self.threads
        insns += [NOP_COMPUTE.replace(pop_next=1)] * self.threads
        insns.append(FINISH)
        return Program(self.cfg, insns, segments, self.kernels)

    def _resolve(self, item, layout: Layout, resident: bool) -> list[Insn]:
        """Instructions of an emitted item, with DRAM addresses and uop ranges filled in."""
        if isinstance(item, AtDram):
            return [item.insn.replace(dram_base=layout.elem_addr(item.segment, item.index))]
        if isinstance(item, Insn):
            return [item]
        length = len(self.kernels[item.kernel])
        if resident:
            bgn = layout.kernel_table[item.kernel][0]
            return [item.insn.replace(uop_bgn=bgn, uop_end=bgn + length)]
        # Streaming kernels: compute runs in order, so reloading offset 0 before each use is
        # safe; the LOAD UOP takes over the instruction's pops, which must precede it.
        flags = {f: getattr(item.insn, f) for f in ("pop_prev", "pop_next")}
        load = self._load_kernel(layout, item.kernel, 0).replace(**flags)
        return [load, item.insn.replace(uop_bgn=0, uop_end=length, pop_prev=0, pop_next=0)]

    @staticmethod
    def _load_kernel(layout: Layout, name: str, sram_base: int) -> Insn:
        """The LOAD UOP of kernel `name` to uop buffer index `sram_base`."""
        dram_base, length = layout.kernel_addr(name)
        return Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=sram_base, dram_base=dram_base,
                    y_size=1, x_size=length, x_stride=length)

"""Random-program differential testing: a backend against the functional simulator.

`fuzz` runs `sim.progen` programs on a backend (any `run(program, dram)` that executes in place:
the Amaranth model, the Verilator model) and on `FunctionalSim`, compares the whole DRAM images
and stops at the first difference with everything needed to reproduce and read it: the program's
seed, its assembler text and the first differing segment element and lane.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from isa.asm import disassemble
from isa.config import HwConfig, load_config, preset_names
from isa.errors import LoomError, ToolError
from isa.instructions import INSN_BYTES
from isa.packing import unpack_elements
from isa.program import Program
from sim.functional import FunctionalSim
from sim.progen import hazards, random_program

# What fuzz tests: runs a program on a DRAM image in place, like FunctionalSim.run.
Backend = Callable[[Program, np.ndarray], object]


@dataclass
class Mismatch:
    """The first program on which the backend and the functional simulator disagreed."""

    index: int  # position in the run
    seed: int  # `random_program(cfg, seed)` rebuilds the program and its data
    program: Program
    detail: str  # what differed, or how the backend failed

    def __str__(self) -> str:
        return (
            f"program {self.index} (seed {self.seed}, {len(self.program.insns)} instructions) "
            f"differs: {self.detail}\n--- program (seed {self.seed}) ---\n"
            f"{disassemble(self.program)}"
        )


@dataclass
class FuzzReport:
    """Outcome of a fuzz run: how many programs matched, and the first mismatch if any."""

    config: HwConfig
    seed: int
    size: str
    matched: int
    instructions: int  # instructions of the programs that matched
    mismatch: Mismatch | None = None

    @property
    def ok(self) -> bool:
        """True when every program matched."""
        return self.mismatch is None

    def __str__(self) -> str:
        summary = (
            f"{self.matched} {self.size} programs from seed {self.seed} ({self.instructions} "
            f"instructions) matched the functional simulator on {self.config.name}"
        )
        if self.ok:
            return summary
        seed = self.mismatch.seed
        return (
            f"{self.mismatch}--- {summary} before this one; reproduce with "
            f"random_program(config, {seed}, size={self.size!r}) or `loom fuzz --config "
            f"{_config_arg(self.config)} --seed {seed} --programs 1 --size {self.size}` ---"
        )


def fuzz(
    cfg: HwConfig,
    backend: Backend,
    *,
    programs: int,
    seed: int,
    progress: bool = True,
    size: str = "small",
) -> FuzzReport:
    """Run `programs` random programs (seeds seed, seed+1, ...) on a backend and the reference."""
    report = FuzzReport(cfg, seed, size, 0, 0)
    for index in tqdm(range(programs), desc=f"fuzz {cfg.name}", unit="program", file=sys.stderr,
                      disable=not progress):
        program_seed = seed + index
        program, dram = random_program(cfg, program_seed, size=size)
        detail = _difference(program, dram, backend)
        if detail:
            report.mismatch = Mismatch(index, program_seed, program, detail)
            break
        report.matched += 1
        report.instructions += len(program.insns)
    return report


def _difference(program: Program, dram: np.ndarray, backend: Backend) -> str:
    """What goes wrong when the backend runs the program, or "" when it matches the reference."""
    problems = hazards(program)
    if problems:
        return f"the generator made an unsafe program (a bug in sim.progen): {problems[0]}"
    expected, got = dram.copy(), dram.copy()
    try:
        FunctionalSim(program.config).run(program, expected)
    except LoomError as exc:
        return f"the functional simulator failed: {exc}"
    try:
        backend(program, got)
    except ToolError:
        raise  # a missing or broken tool says nothing about this program
    # Any other failure on a legal program (an error, a hang, a bus protocol violation) is a
    # finding of the fuzzer, reported with the program like a wrong result.
    except Exception as exc:
        return f"the backend failed: {type(exc).__name__}: {exc}"
    return first_difference(program, expected, got)


def _config_arg(cfg: HwConfig) -> str:
    """The preset name of a config for a command line, or a placeholder for its file."""
    return next((name for name in preset_names() if load_config(name) == cfg), "CONFIG_FILE")


def first_difference(program: Program, expected: np.ndarray, got: np.ndarray) -> str:
    """The first differing byte of two DRAM images, as segment, element and lane; "" if equal."""
    differ = np.flatnonzero(expected != got)
    if not differ.size:
        return ""
    byte = int(differ[0])
    count = f"{differ.size} byte{'s' * (differ.size > 1)} differ; the first is "
    cfg = program.config
    for seg in program.segments.values():
        size = cfg.elem_bytes(seg.mem)
        if not seg.offset <= byte < seg.offset + seg.count * size:
            continue
        element = (byte - seg.offset) // size
        start = seg.offset + element * size
        want, have = (unpack_elements(image[start : start + size], cfg, seg.mem, 1)[0]
                      for image in (expected, got))
        lane = tuple(int(i) for i in np.argwhere(want != have)[0])
        where = f", lane {lane}" if lane else ""
        return (
            f"{count}in segment {seg.name} ({seg.kind} {seg.mem}) element {element}{where}: "
            f"expected {want[lane]}, got {have[lane]}"
        )
    if byte >= program.insn_offset:
        where = f"in instruction #{(byte - program.insn_offset) // INSN_BYTES}"
    else:
        where = "outside every segment"
    return f"{count}byte {byte} {where}: expected {expected[byte]}, got {got[byte]}"

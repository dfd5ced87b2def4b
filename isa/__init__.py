"""The contract of Loom: HwConfig, instruction formats, encoding, packing and the Program file.

Everything else (hardware, simulators, compiler) reads instruction fields from here. This package
imports nothing else of Loom.
"""

from isa.config import HwConfig, load_config, preset_names
from isa.errors import (
    AsmError,
    ConfigError,
    DeadlockError,
    IsaError,
    LoomError,
    ProgramError,
    SimError,
    ToolError,
)
from isa.formats import AluOp, MemType, Opcode
from isa.instructions import Insn, Stage, TokenQueue, Uop, decode, encode, stage_of
from isa.program import Program, Segment

__all__ = [
    "AluOp",
    "AsmError",
    "ConfigError",
    "DeadlockError",
    "HwConfig",
    "Insn",
    "IsaError",
    "LoomError",
    "MemType",
    "Opcode",
    "Program",
    "ProgramError",
    "Segment",
    "SimError",
    "Stage",
    "TokenQueue",
    "ToolError",
    "Uop",
    "decode",
    "encode",
    "load_config",
    "preset_names",
    "stage_of",
]

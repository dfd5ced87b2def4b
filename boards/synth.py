"""FPGA resource estimates with Yosys (the YoWASP wheel): LUTs, flip-flops, DSPs and block RAMs."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from boards.tools import tool_command
from isa.errors import ToolError

SYNTH_COMMANDS = {"ecp5": "synth_ecp5", "xilinx7": "synth_xilinx -family xc7"}

# How each family's cells count towards the summary. ECP5 CCU2C is a carry chain of two LUT4s;
# Xilinx RAMB18E1 is half a RAMB36E1.
_WEIGHTS = {
    "ecp5": {
        "lut": {"LUT4": 1, "CCU2C": 2},
        "ff": {"TRELLIS_FF": 1},
        "dsp": {"MULT18X18D": 1, "ALU54B": 1},
        "bram": {"DP16KD": 1},
        "lutram": {"TRELLIS_DPR16X4": 1},
    },
    "xilinx7": {
        "lut": {f"LUT{n}": 1 for n in range(1, 7)},
        "ff": {"FDRE": 1, "FDSE": 1, "FDCE": 1, "FDPE": 1},
        "dsp": {"DSP48E1": 1},
        "bram": {"RAMB36E1": 1, "RAMB18E1": 0.5},
        "lutram": {"RAM32M": 1, "RAM64M": 1, "RAM32X1D": 1, "RAM64X1D": 1, "RAM128X1D": 1,
                   "RAM256X1S": 1, "RAM64X1S": 1, "RAM32X1S": 1},
    },
}


@dataclass
class Resources:
    """Post-synthesis resource counts of one design on one FPGA family."""

    family: str
    top: str
    lut: int
    ff: int
    dsp: int
    bram: float
    lutram: int
    cells: dict[str, int]

    def to_dict(self) -> dict:
        """The counts as a JSON-ready dict."""
        return asdict(self)


def synth_command(family: str, top: str, *, use_dsp: bool = True) -> str:
    """The yosys synthesis command of a family; `use_dsp=False` maps multipliers to LUTs."""
    if family not in SYNTH_COMMANDS:
        raise ToolError(f"unknown FPGA family {family!r}; families: {', '.join(SYNTH_COMMANDS)}")
    return f"{SYNTH_COMMANDS[family]} -top {top}" + ("" if use_dsp else " -nodsp")


def synthesize(design: str, top: str, family: str, *, use_dsp: bool = True,
               language: str = "verilog") -> Resources:
    """Synthesize design text (`language` verilog or rtlil) for a family; count its resources."""
    command = synth_command(family, top, use_dsp=use_dsp)
    if language not in ("verilog", "rtlil"):
        raise ToolError(f"unknown design language {language!r}; use verilog or rtlil")
    with tempfile.TemporaryDirectory(prefix="loom-synth-") as tmp:
        # YoWASP tools see only the working directory, so use relative paths.
        name = "design.v" if language == "verilog" else "design.il"
        Path(tmp, name).write_text(design)
        script = (
            f"read_{language} {name}; {command}; "
            "tee -q -o stat.json stat -json"
        )
        result = subprocess.run(
            [*tool_command("yosys"), "-q", "-p", script], cwd=tmp, capture_output=True, text=True,
            check=False,
        )
        if result.returncode:
            lines = (result.stderr or result.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit code {result.returncode} and no message"
            raise ToolError(f"yosys {family} synthesis failed: {last}")
        stats = json.loads(Path(tmp, "stat.json").read_text())
    cells = stats["design"]["num_cells_by_type"]
    counts = {
        what: sum(weight * cells.get(cell, 0) for cell, weight in table.items())
        for what, table in _WEIGHTS[family].items()
    }
    return Resources(
        family, top, int(counts["lut"]), int(counts["ff"]), int(counts["dsp"]), counts["bram"],
        int(counts["lutram"]), dict(cells),
    )


def synthesize_config(cfg, family: str, *, use_dsp: bool = True) -> Resources:
    """Resource estimate of a config's accelerator, synthesized from Amaranth's RTLIL.

    RTLIL rather than the Verilog text: yosys reads it in seconds, and the YoWASP yosys has
    exited without a message on the Verilog of some configs (1x4x8, 1x8x8 int4).
    """
    from hw.top import TOP_NAME
    from hw.verilog import generate_rtlil

    return synthesize(generate_rtlil(cfg), TOP_NAME, family, use_dsp=use_dsp, language="rtlil")

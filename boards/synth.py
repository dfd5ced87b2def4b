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
    #: The LUT mapper: "abc9" (the flows' default), or "abc" where ABC9 failed (`synthesize`).
    lut_mapper: str = "abc9"

    def to_dict(self) -> dict:
        """The counts as a JSON-ready dict."""
        return asdict(self)


def synth_command(family: str, top: str, *, use_dsp: bool = True) -> str:
    """The yosys synthesis command of a family; `use_dsp=False` maps multipliers to LUTs."""
    if family not in SYNTH_COMMANDS:
        raise ToolError(f"unknown FPGA family {family!r}; families: {', '.join(SYNTH_COMMANDS)}")
    return f"{SYNTH_COMMANDS[family]} -top {top}" + ("" if use_dsp else " -nodsp")


def abc_fallback_command(family: str, top: str, *, use_dsp: bool = True) -> str | None:
    """The family's synthesis with ABC's LUT mapper instead of ABC9, where the script allows it.

    Yosys 0.70 (YoWASP) fails an assertion in ABC9's reintegration on some large ECP5 designs
    (1x16x16 with LUT multipliers, 1x4x8); synth_ecp5 has no option to avoid ABC9, so this runs
    its steps up to the LUT mapping, `abc -lut 4`, and the rest.
    """
    if family != "ecp5":
        return None
    command = synth_command(family, top, use_dsp=use_dsp)
    return (f"{command} -run :map_luts; techmap -map +/lattice/latches_map.v; abc -lut 4; "
            f"clean; {SYNTH_COMMANDS[family]} -top {top} -run map_cells:")


def synthesize(design: str, top: str, family: str, *, use_dsp: bool = True,
               language: str = "verilog") -> Resources:
    """Synthesize design text (`language` verilog or rtlil) for a family; count its resources.

    When ABC9 fails on an ECP5 design, synthesis is retried with ABC (`abc_fallback_command`)
    and the result says so in `lut_mapper`.
    """
    command = synth_command(family, top, use_dsp=use_dsp)
    if language not in ("verilog", "rtlil"):
        raise ToolError(f"unknown design language {language!r}; use verilog or rtlil")
    with tempfile.TemporaryDirectory(prefix="loom-synth-") as tmp:
        # YoWASP tools see only the working directory, so use relative paths.
        name = "design.v" if language == "verilog" else "design.il"
        Path(tmp, name).write_text(design)
        mapper, error = "abc9", _run_yosys(tmp, f"read_{language} {name}; {command}")
        fallback = abc_fallback_command(family, top, use_dsp=use_dsp)
        if error and "Assert" in error and fallback:
            mapper, error = "abc", _run_yosys(tmp, f"read_{language} {name}; {fallback}")
        if error:
            raise ToolError(f"yosys {family} synthesis failed: {error}")
        stats = json.loads(Path(tmp, "stat.json").read_text())
    cells = stats["design"]["num_cells_by_type"]
    counts = {
        what: sum(weight * cells.get(cell, 0) for cell, weight in table.items())
        for what, table in _WEIGHTS[family].items()
    }
    return Resources(
        family, top, int(counts["lut"]), int(counts["ff"]), int(counts["dsp"]), counts["bram"],
        int(counts["lutram"]), dict(cells), mapper,
    )


def _run_yosys(folder: str, script: str) -> str | None:
    """Run a yosys script that ends in `stat.json`; None, or its error: the log's last ERROR
    line and the pass that raised it (yosys -q leaves both out of its output)."""
    result = subprocess.run(
        [*tool_command("yosys"), "-q", "-l", "yosys.log", "-p",
         f"{script}; tee -q -o stat.json stat -json"],
        cwd=folder, capture_output=True, text=True, check=False,
    )
    if not result.returncode:
        return None
    log = Path(folder, "yosys.log")
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [n for n, line in enumerate(lines) if line.startswith("ERROR")]
    if not errors:
        output = (result.stderr or result.stdout).strip().splitlines()
        return output[-1] if output else f"exit code {result.returncode} and no message"
    passes = [line for line in lines[:errors[-1]] if "Executing" in line]
    where = f" (in {passes[-1].split('Executing ', 1)[1].rstrip('.')})" if passes else ""
    return lines[errors[-1]].removeprefix("ERROR: ") + where


def synthesize_config(cfg, family: str, *, use_dsp: bool = True) -> Resources:
    """Resource estimate of a config's accelerator, synthesized from Amaranth's RTLIL.

    RTLIL rather than the Verilog text: yosys reads it in seconds where the Verilog of large
    memories takes minutes.
    """
    from hw.top import TOP_NAME
    from hw.verilog import generate_rtlil

    return synthesize(generate_rtlil(cfg), TOP_NAME, family, use_dsp=use_dsp, language="rtlil")

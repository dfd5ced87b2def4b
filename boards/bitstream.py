"""A ULX3S-85F bitstream of the accelerator: `Ulx3sTop`, synth, place and route, ecppack.

`build_bitstream(board, out_dir, timeout_s=...)` writes `loom_ulx3s.bit` and `bitstream.json`
(the report: Fmax against the design clock, utilisation, seconds per step, the memory size and
the UART rate) into `out_dir`, with the design (RTLIL), the pin constraints and the tool logs
beside them. Only the ULX3S-85F has a board top.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from amaranth.back import rtlil

from boards.boards import Board
from boards.pnr import run_flow, run_tool
from boards.tools import tool_command
from boards.ulx3s import (
    DEFAULT_BAUD,
    DEFAULT_MEMORY_BYTES,
    OSCILLATOR_MHZ,
    PLL_NAME,
    TOP_NAME,
    Ulx3sTop,
)
from isa.config import HwConfig
from isa.errors import ToolError

BITSTREAM_BOARDS = ("ulx3s_85f",)
LPF = Path(__file__).with_name("data") / "ulx3s_85f.lpf"


def pack_bitstream(work: Path, name: str, *, deadline: float) -> Path:
    """Pack the `design.config` that `run_flow` left in `work` into `work/<name>.bit`."""
    run_tool("ecppack", ["--compress", "design.config", f"{name}.bit"], work, deadline,
             f"bitstream of {name}")
    return work / f"{name}.bit"


def pll_verilog(clock_mhz: float, work: Path) -> str:
    """Verilog of module PLL_NAME: an EHXPLLL from the 25 MHz oscillator, computed by ecppll."""
    work.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [*tool_command("ecppll"), "-n", PLL_NAME, "-i", f"{OSCILLATOR_MHZ:g}",
         "-o", f"{clock_mhz:g}", "-f", "pll.v"],
        cwd=work, capture_output=True, text=True, timeout=120, check=False)
    achieved = re.search(r"clkout0 frequency: ([\d.]+) MHz", result.stdout)
    if result.returncode or achieved is None:
        raise ToolError(f"ecppll cannot make {clock_mhz:g} MHz: "
                        f"{(result.stderr or result.stdout).strip()[-200:]}")
    if abs(float(achieved[1]) - clock_mhz) > 1e-3 * clock_mhz:
        raise ToolError(f"the PLL cannot make {clock_mhz:g} MHz from {OSCILLATOR_MHZ} MHz "
                        f"exactly (nearest {achieved[1]} MHz): choose that")
    return (work / "pll.v").read_text()


def build_bitstream(board: Board, out_dir: str | Path, *, timeout_s: float = 1800,
                    cfg: HwConfig | None = None, use_dsp: bool = True,
                    clock_mhz: float = OSCILLATOR_MHZ) -> dict:
    """Build the board's bitstream for `cfg` (default: the board's config); return the report.

    `clock_mhz` other than the 25 MHz oscillator adds a PLL. Raises PnrTimeout past
    `timeout_s`, ToolError when a tool fails or the board has no top.
    """
    if board.name not in BITSTREAM_BOARDS:
        raise ToolError(f"no bitstream top for {board.name}; boards with one: "
                        f"{', '.join(BITSTREAM_BOARDS)}")
    cfg = board.default_config if cfg is None else cfg
    out = Path(out_dir)
    started = time.monotonic()
    sources = {"design.il": rtlil.convert(Ulx3sTop(cfg, clock_mhz=clock_mhz), name=TOP_NAME,
                                          emit_src=False)}
    if clock_mhz != OSCILLATOR_MHZ:
        sources["pll.v"] = pll_verilog(clock_mhz, out)
    generated = time.monotonic()
    result = run_flow(sources, TOP_NAME, board, out, timeout_s=timeout_s - (generated - started),
                      use_dsp=use_dsp, lpf=LPF.read_text(), target_mhz=clock_mhz)
    bit = pack_bitstream(out, TOP_NAME, deadline=started + timeout_s)
    finished = time.monotonic()
    result.seconds |= {"generate": round(generated - started, 1),
                       "ecppack": round(finished - started - result.seconds["total"]
                                        - (generated - started), 1),
                       "total": round(finished - started, 1)}
    report = result.to_dict() | {
        "design": TOP_NAME, "config": cfg.name, "config_id": cfg.config_id_hex,
        "macs_per_cycle": cfg.macs_per_cycle, "clock_mhz": clock_mhz,
        "memory_bytes": DEFAULT_MEMORY_BYTES, "baud": DEFAULT_BAUD,
        "bitstream": str(bit), "bitstream_bytes": bit.stat().st_size,
    }
    report["peak_macs_per_s"] = cfg.macs_per_cycle * clock_mhz * 1e6
    (out / "design.json").unlink(missing_ok=True)  # the netlist is large and reproducible
    (out / "bitstream.json").write_text(json.dumps(report, indent=1))
    return report

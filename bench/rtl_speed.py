"""Benchmark: a tiled matmul on the Verilator model (cycles, simulation speed); prints one JSON."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from boards.dram import DEFAULT
from isa.config import load_config
from loom.samples import matmul_program
from sim.functional import FunctionalSim
from sim.rtl import RtlSim, build_library, library_path


def main(argv: list[str] | None = None) -> dict:
    """Build (or reuse) the model, run the matmul, check it against the functional simulator."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    parser.add_argument("--size", type=int, default=256, help="m = k = n (default 256)")
    parser.add_argument("--dram", default=DEFAULT, help=f"DRAM preset (default {DEFAULT})")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest counts")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    cached = library_path(cfg).is_file()
    started = time.perf_counter()
    build_library(cfg)
    build_seconds = 0 if cached else round(time.perf_counter() - started, 1)
    sim = RtlSim(cfg, args.dram)

    size = args.size
    sample = matmul_program(cfg, size, size, size, seed=0)
    image = sample.dram()
    golden = image.copy()
    FunctionalSim(cfg).run(sample.program, golden)
    times = []
    for _ in range(max(1, args.repeat)):
        dram = image.copy()
        started = time.perf_counter()
        stats = sim.run(sample.program, dram)
        times.append(time.perf_counter() - started)
    seconds = min(times)
    ideal = size**3 // cfg.macs_per_cycle
    result = {
        "config": cfg.name,
        "dram": sim.dram.name,
        "m": size,
        "k": size,
        "n": size,
        "build_seconds": build_seconds,
        "cycles": stats.cycles,
        "seconds": round(seconds, 3),
        "cycles_per_second": round(stats.cycles / seconds),
        "ideal_cycles": ideal,
        "ratio": round(stats.cycles / ideal, 3),
        "gemm_uops": stats.gemm_uops,
        "dram_bytes_read": stats.dram_bytes_read,
        "dram_bytes_written": stats.dram_bytes_written,
        "correct": bool(np.array_equal(dram, golden)),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

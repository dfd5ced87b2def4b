"""Benchmark: a tiled matmul on the functional simulator; prints one JSON object."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from isa.config import load_config
from loom.samples import matmul_program
from sim.functional import FunctionalSim


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print (and return) its result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    parser.add_argument("--size", type=int, default=512, help="m = k = n (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest counts")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    size = args.size
    sample = matmul_program(cfg, size, size, size, seed=0)
    image = sample.dram()
    times = []
    for _ in range(max(1, args.repeat)):
        dram = image.copy()
        sim = FunctionalSim(cfg)
        start = time.perf_counter()
        stats = sim.run(sample.program, dram)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    result = {
        "config": cfg.name,
        "m": size,
        "k": size,
        "n": size,
        "instructions": stats.instructions,
        "seconds": round(seconds, 6),
        "insns_per_s": round(stats.instructions / seconds),
        "macs": stats.macs,
        "macs_per_s": round(stats.macs / seconds),
        "correct": bool(np.array_equal(sample.output(dram), sample.expected())),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

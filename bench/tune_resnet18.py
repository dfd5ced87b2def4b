"""Benchmark: tune ResNet-18's layers on `default` (Zynq-7020-like DRAM) and run it tuned.

For every distinct accelerated layer: the tuner with `--trials` measurements; for the 3x3 layers
after the first conv, random search with the same budget, and for the first `--long-layers` of
them random search with `--long-factor` times the budget (the reference the tuner must come
within 5% of). Then the
network is compiled with the tuning log and without it and both run end to end on the Verilator
model. Prints one JSON object; writes the convergence plot next to the log.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from resnet18 import ResNetBuilder, rtl_summary

from compiler.pipeline import compile_model
from compiler.tune.log import parse_layer_key
from compiler.tune.measure import Measurer
from compiler.tune.plot import plot_convergence
from compiler.tune.search import random_search
from compiler.tune.tasks import model_tasks
from isa.config import load_config
from loom.tune_commands import summary, tune_model_layers


def main() -> None:
    """Tune, compare with random search, run tuned and untuned; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--long-layers", type=int, default=2)
    parser.add_argument("--long-factor", type=int, default=10)
    parser.add_argument("--log", default="build/bench/tune_resnet18.jsonl")
    args = parser.parse_args()
    cfg = load_config(args.config)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    model = ResNetBuilder(0).model()
    image = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    tasks = model_tasks(model, cfg, calib={"input": image})

    started = time.perf_counter()
    results = tune_model_layers(tasks, cfg, trials=args.trials, jobs=args.jobs, log=args.log,
                                dram="zynq7020")
    tuning_seconds = time.perf_counter() - started
    three = [t for t in tasks[1:] if parse_layer_key(t.key).kernel == (3, 3)]
    long_runs = {}
    with Measurer(cfg, log=args.log, jobs=args.jobs) as measurer:
        for task in three:
            entry = results[task.key]
            entry["random"] = random_search(task, measurer, args.trials, seed=1,
                                            reference=entry["tune"].records[0].cycles)
        for task in three[:args.long_layers]:
            heuristic = results[task.key]["tune"].records[0].cycles
            long = random_search(task, measurer, args.trials * args.long_factor, seed=7,
                                 reference=heuristic)
            long_runs[task.key] = long.best.cycles
    plot = str(Path(args.log).with_suffix(".png"))
    plot_convergence([results[t.key]["tune"] for t in three],
                     [results[t.key]["random"] for t in three], plot)
    rows = summary(results)
    for row in rows:
        if row["layer"] in long_runs:
            row["long_random_best_cycles"] = long_runs[row["layer"]]
            row["within_of_long_random"] = round(row["best_cycles"] / long_runs[row["layer"]] - 1,
                                                 4)

    untuned = compile_model(model, cfg, calib={"input": image})
    tuned = compile_model(model, cfg, calib={"input": image}, tuning_log=args.log)
    before, after = rtl_summary(untuned, image), rtl_summary(tuned, image)
    compared = [row for row in rows if "random_best_cycles" in row]
    beats = [row for row in compared if row["best_cycles"] < row["random_best_cycles"]]
    ties = [row for row in compared if row["best_cycles"] == row["random_best_cycles"]]
    print(json.dumps({
        "config": cfg.name, "dram": "zynq7020", "trials_per_layer": args.trials,
        "tasks": len(tasks), "tuning_seconds": round(tuning_seconds, 1),
        "tuner_seconds_per_layer": round(float(np.mean([row["seconds"] for row in rows])), 1),
        "compared_with_random": len(compared), "tuner_beats_random": len(beats),
        "ties": len(ties), "layers": rows,
        "untuned": {k: before[k] for k in ("total_cycles", "conv_cycles", "offloaded_conv_cycles",
                                           "conv3x3_mean_utilization", "first_layer")},
        "tuned": after,
        "total_reduction": round(1 - after["total_cycles"] / before["total_cycles"], 4),
        "conv_reduction": round(1 - after["conv_cycles"] / before["conv_cycles"], 4),
        "floor_cycles": 1.814e9 / cfg.macs_per_cycle,
        "plot": plot,
    }))


if __name__ == "__main__":
    main()

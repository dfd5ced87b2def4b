"""Benchmark: does a cost model trained on other layers warm up the search on a new one?

For each of ResNet-18's 3x3 layers after the first on `default`: tune it with `--trials`
measurements starting from a cold cost model, and again from a model trained on every record of
the *other* layers in a tuning log (leave one layer out: as if those came from another network).
Measurements come from the log's cache where it has them, from sim.rtl otherwise. Prints one JSON
object: best cycles after the budget, cold vs warm, per layer.
"""

import argparse
import json

import numpy as np
from resnet18 import ResNetBuilder

from compiler.tune.log import parse_layer_key, read_records
from compiler.tune.measure import Measurer
from compiler.tune.model import CostModel
from compiler.tune.search import tune_task
from compiler.tune.tasks import model_tasks
from isa.config import load_config


def main() -> None:
    """Cold vs warm-started tuning per layer; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--log", default="build/bench/tune_resnet18.jsonl")
    args = parser.parse_args()
    cfg = load_config(args.config)
    image = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    tasks = model_tasks(ResNetBuilder(0).model(), cfg, calib={"input": image})
    three = [t for t in tasks[1:] if parse_layer_key(t.key).kernel == (3, 3)]
    records = read_records(args.log)
    rows = []
    with Measurer(cfg, log=args.log, jobs=args.jobs) as measurer:
        for task in three:
            warm = CostModel(cfg, seed=0)
            warm.add([r for r in records if r.layer != task.key])
            warm.fit()
            cold_run = tune_task(task, measurer, CostModel(cfg, seed=0), args.trials, seed=3)
            warm_run = tune_task(task, measurer, warm, args.trials, seed=3)
            rows.append({"layer": task.key, "warm_samples": warm.samples,
                         "cold_best": cold_run.best.cycles, "warm_best": warm_run.best.cycles,
                         "cold_curve": cold_run.best_so_far(),
                         "warm_curve": warm_run.best_so_far()})
    print(json.dumps({
        "config": cfg.name, "trials": args.trials,
        "warm_better": sum(r["warm_best"] < r["cold_best"] for r in rows),
        "warm_equal": sum(r["warm_best"] == r["cold_best"] for r in rows),
        "mean_warm_over_cold": round(float(np.mean([r["warm_best"] / r["cold_best"]
                                                    for r in rows])), 4),
        "layers": rows,
    }))


if __name__ == "__main__":
    main()

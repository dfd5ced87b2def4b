"""`loom tune`: search every accelerated layer's schedule of a model on the cycle-accurate model."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from isa.config import load_config
from isa.errors import LoomError


def tune_model_layers(tasks, cfg, *, trials: int, jobs: int | None, log: str, dram: str,
                      seed: int = 0, baseline: bool = False, quiet: bool = False) -> dict:
    """Tune each task (and optionally run the random baseline); results per layer key."""
    from compiler.tune.log import read_records
    from compiler.tune.measure import Measurer
    from compiler.tune.model import CostModel
    from compiler.tune.search import random_search, tune_task

    model = CostModel(cfg, dram, seed)
    if Path(log).exists():  # transfer: what earlier runs measured, on any layer, warms it up
        model.add(read_records(log))
        model.fit()
    passes = [("tune", tune_task)] + ([("random", random_search)] if baseline else [])
    results: dict[str, dict] = {}
    with Measurer(cfg, log=log, dram=dram, jobs=jobs) as measurer, tqdm(
        total=len(tasks) * trials * len(passes), unit="trial", disable=quiet,
        dynamic_ncols=True,
    ) as bar:
        for task in tasks:
            entry = results.setdefault(task.key, {"task": task})
            for name, search in passes:
                started, done = time.perf_counter(), [0]

                def progress(result, name=name, task=task, done=done):
                    bar.update(len(result.records) - done[0])
                    done[0] = len(result.records)
                    best = result.best
                    bar.set_postfix_str(f"{task.nodes[0][:20]} {name} best "
                                        f"{best.cycles if best else '-'}")

                if name == "tune":
                    result = search(task, measurer, model, trials, seed=seed, progress=progress)
                else:
                    first = entry["tune"].records[0].cycles  # the heuristic's
                    result = search(task, measurer, trials, seed=seed + 1, reference=first,
                                    progress=progress)
                bar.update(trials - done[0])
                entry[name] = result
                entry[f"{name}_seconds"] = time.perf_counter() - started
    return results


def summary(results: dict) -> list[dict]:
    """One JSON-ready line per layer: heuristic vs best cycles, utilization, trials, time."""
    rows = []
    for entry in results.values():
        task, tuned = entry["task"], entry["tune"]
        heuristic = next((r.cycles for r in tuned.records
                          if r.conv_schedule == task.heuristic()), None)
        best = tuned.best
        row = {
            "layer": task.key, "nodes": task.nodes, "trials": len(tuned.records),
            "heuristic_cycles": heuristic,
            "best_cycles": best.cycles if best else None,
            "best_schedule": best.schedule if best else None,
            "utilization": round(task.macs / (best.cycles * task.cfg.macs_per_cycle), 4)
            if best else None,
            "seconds": round(entry["tune_seconds"], 1),
        }
        if "random" in entry:
            rb = entry["random"].best
            row["random_best_cycles"] = rb.cycles if rb else None
        rows.append(row)
    return rows


def cmd_tune(args) -> int:
    """Tune a model's layers, log every measurement, print the best per layer."""
    from compiler.tune.plot import plot_convergence
    from compiler.tune.tasks import model_tasks

    if args.trials < 1 or (args.jobs is not None and args.jobs < 1):
        raise LoomError("--trials and --jobs must be at least 1")
    from loom.model_commands import calibration_arrays

    cfg = load_config(args.config)
    calib = calibration_arrays(args.model, args.calib)
    tasks = model_tasks(args.model, cfg, calib=calib, batch=args.batch)
    if not tasks:
        raise LoomError(f"{args.model} has no layer that runs on the accelerator")
    log = args.log or str(Path(args.model).with_suffix(".tune.jsonl"))
    results = tune_model_layers(tasks, cfg, trials=args.trials, jobs=args.jobs, log=log,
                                dram=args.dram, seed=args.seed, baseline=args.baseline,
                                quiet=args.json)
    rows = summary(results)
    if args.plot:
        plot_convergence([e["tune"] for e in results.values()],
                         [e["random"] for e in results.values()] if args.baseline else None,
                         args.plot)
    if args.json:
        print(json.dumps({"config": cfg.name, "log": log, "layers": rows}))
        return 0
    print(f"{'layer':44s} {'heuristic':>10s} {'tuned':>10s} {'util':>6s} {'time':>6s}")
    for row in rows:
        util = "" if row["utilization"] is None else f"{row['utilization']:.1%}"
        print(f"{row['layer'][:44]:44s} {row['heuristic_cycles'] or '-':>10} "
              f"{row['best_cycles'] or '-':>10} {util:>6s} {row['seconds']:>5.0f}s")
    print(f"log: {log} (loom compile --tuning-log {log})")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def register(sub) -> None:
    """Add the tune subcommand to the CLI's subparsers."""
    p = sub.add_parser("tune", help="search each layer's schedule on the cycle-accurate model")
    p.add_argument("model", help="ONNX model (.onnx)")
    p.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    p.add_argument("--calib", help="calibration inputs, as for loom compile (the layers' "
                   "requantization, and so their keys, depend on it)")
    p.add_argument("--batch", type=int, default=1, help="batch size to compile for")
    p.add_argument("--trials", type=int, default=64, help="measurements per layer")
    p.add_argument("--jobs", type=int, help="measurement processes (default: one per core)")
    p.add_argument("--log", help="tuning log to append to and reuse (default: MODEL.tune.jsonl)")
    p.add_argument("--dram", default="zynq7020", help="DRAM model of the measurements")
    p.add_argument("--seed", type=int, default=0, help="seed of the search")
    p.add_argument("--baseline", action="store_true",
                   help="also run random search with the same budget, for comparison")
    p.add_argument("--plot", help="PNG of best cycles vs trials per layer")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_tune)

"""`loom sweep`: configurations of a board's accelerator, their resources, Fmax and latency."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from boards.boards import load_board
from isa.errors import LoomError


def cmd_sweep(args) -> int:
    """Run a sweep; write the table, the Pareto plot and the report into the output folder."""
    from loom.sweep import SweepSpec, parse_params, product, read_grid, run_sweep
    from loom.sweep_report import best_point, write_markdown, write_plot, write_tables

    board = load_board(args.board)
    points = read_grid(args.grid) if args.grid else []
    if args.param:
        points += product(parse_params(args.param))
    if not points:
        raise LoomError("nothing to sweep: give --grid FILE or --param key=v1,v2 ...")
    model = None if args.no_latency else args.model
    if model is None and not args.no_latency:
        raise LoomError("give a MODEL.onnx for latencies, or --no-latency for resources and "
                        "Fmax only")
    if model is not None and not Path(model).is_file():
        raise LoomError(f"no model file {model}")
    if args.jobs < 1:
        raise LoomError("--jobs must be at least 1")
    spec = SweepSpec(board, points, model=model, calib=args.calib, tuning_log=args.tuning_log,
                     fmax=args.fmax, fmax_timeout=args.fmax_timeout)
    out = Path(args.output)
    started = time.perf_counter()
    with tqdm(total=len(points), unit="point", disable=args.json, dynamic_ncols=True) as bar:
        def progress(record):
            bar.update(1)
            bar.set_postfix_str(f"{record.get('config', '?')} {record['status']}")

        records = run_sweep(spec, out, jobs=args.jobs, progress=progress)
    meta = {"board": board.name, "family": board.family, "units": board.units,
            "target_mhz": board.target_mhz, "dram": board.dram, "model": model,
            "model_name": None if model is None else Path(model).stem,
            "seconds": round(time.perf_counter() - started, 1)}
    write_tables(records, meta, out)
    write_plot(records, meta, out / "pareto.png")
    write_markdown(records, meta, out / "report.md")
    best = best_point(records)
    if args.json:
        print(json.dumps({**meta, "best": best, "points": records}))
        return 0
    for r in records:
        extra = "" if r.get("latency_ms") is None else f"  {r['latency_ms']} ms"
        resources = "" if "lut" not in r else f"  {r['lut']} LUT {r['dsp']} DSP {r['bram']:g} BRAM"
        print(f"{r.get('config', json.dumps(r['params'])):40s} {r['status']:12s}{resources}"
              f"{extra}  {r['reason'][:100]}")
    print(f"best that fits {board.name}: {best['config'] if best else 'none'}")
    print(f"wrote {out}/sweep.csv, sweep.json, pareto.png, report.md")
    return 0


def register(sub) -> None:
    """Add the sweep subcommand to the CLI's subparsers."""
    p = sub.add_parser("sweep", help="configurations of a board's accelerator: resources, Fmax, "
                       "latency, Pareto plot")
    p.add_argument("model", nargs="?", help="ONNX model whose latency is measured")
    p.add_argument("--board", required=True, help="board name (loom boards)")
    p.add_argument("--grid", help="TOML/JSON grid: points = [{...}] and/or params = {k: [...]}")
    p.add_argument("--param", action="append", default=[],
                   help="HwConfig field and values, e.g. block_in=8,16 (repeatable: product)")
    p.add_argument("--calib", help="calibration inputs for the model (.npy/.npz)")
    p.add_argument("--tuning-log", help="tuned schedules to compile the model with")
    p.add_argument("--fmax", action="store_true", help="place and route each fitting point "
                   "for its post-route Fmax (ECP5 boards; slow)")
    p.add_argument("--fmax-timeout", type=float, default=900.0,
                   help="seconds of place and route per point before giving up")
    p.add_argument("--no-latency", action="store_true", help="resources and Fmax only")
    p.add_argument("--jobs", type=int, default=1, help="points evaluated in parallel")
    p.add_argument("-o", "--output", default="build/sweep", help="output folder")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_sweep)

"""The hardware sweep: configurations of a board's accelerator against resources, Fmax and latency.

A sweep takes a grid of HwConfig overrides on top of the board's default config and evaluates
each point in stages, each cached on disk under `DIR/points/<config ID>/` by what it depends on
(the generated Verilog rather than the sources, so unrelated edits keep the cache): an
interrupted sweep resumes where it stopped, and a later sweep with more stages (`--fmax`, a
model) reuses the earlier ones:

1. **config**: the overrides must make a valid HwConfig (else the point is `invalid`);
2. **synth**: Yosys resources on the board's family, checked against its budgets (else the point
   `does not fit`, with the budget lines it exceeds);
3. **pnr** (opt-in): nextpnr's post-route Fmax on ECP5 boards, bounded by a timeout;
4. **cycles** (with a model): the model compiled for the point (tuned schedules where the tuning
   log has them, the heuristic otherwise) and run on the Verilator model with the board's DRAM
   preset; latency = cycles / Fmax (post-route if measured, the board's target clock otherwise).

A stage that fails records its error on the point (`failed`) and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boards.boards import Board, fits
from isa.config import HwConfig
from isa.errors import ConfigError, LoomError

SYNTH_FAMILIES = ("ecp5", "xilinx7")
PNR_FAMILIES = ("ecp5",)
SYNTH_FLOW = "rtlil"  # part of the synth stage key: a change of flow reruns cached points


@dataclass
class SweepSpec:
    """What to sweep: the board, the points (overrides of its default config), and the stages."""

    board: Board
    points: list[dict]
    model: str | None = None
    calib: str | None = None
    tuning_log: str | None = None
    fmax: bool = False
    fmax_timeout: float = 900.0
    seed: int = 0


def parse_params(params: list[str]) -> dict[str, list[int]]:
    """`key=v1,v2` strings to {key: [values]}; a malformed one raises ConfigError."""
    grid: dict[str, list[int]] = {}
    for text in params:
        key, sep, values = text.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            grid[key.strip()] = [int(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--param {text!r}: write key=v1,v2,... with integer values, "
                              "e.g. block_in=8,16") from None
    return grid


def read_grid(path: str | Path) -> list[dict]:
    """Points of a grid file (TOML or JSON): `points = [{...}]` and/or a `params` product."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read grid {path}: {exc}") from None
    if not isinstance(data, dict) or not ({"points", "params"} & data.keys()):
        raise ConfigError(f"grid {path}: needs `points` (a list of tables) or `params` "
                          "(a table of value lists)")
    points = list(data.get("points", []))
    if "params" in data:
        points += product(data["params"])
    if not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"grid {path}: every point must be a table of HwConfig fields")
    return points


def product(grid: dict[str, list]) -> list[dict]:
    """Every combination of a {key: [values]} grid."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def point_config(board: Board, overrides: dict) -> HwConfig:
    """The board's default config with `overrides` (ConfigError names a bad field)."""
    return HwConfig.from_dict({**board.default_config.to_dict(), **overrides},
                              f"sweep point {overrides}")


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _file_digest(path: str | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _compiler_digest() -> str:
    """A digest of the compiler's sources: the cycles of a model depend on its lowering too."""
    import compiler

    root = Path(compiler.__file__).parent
    return _digest(*(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes()
                     for path in sorted(root.rglob("*.py"))))


def _stage(folder: Path, name: str, key: str, compute) -> dict:
    """A stage's result from `folder/name.json` when its key matches, else computed and saved."""
    path = folder / f"{name}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["result"]
    started = time.perf_counter()
    try:
        result = {"ok": True, **compute()}
    except LoomError as exc:
        result = {"ok": False, "error": str(exc)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"key": key, "result": result}))
    partial.replace(path)
    return result


def evaluate_point(spec: SweepSpec, overrides: dict, out: Path) -> dict:
    """Every stage of one point; the returned record is what the table shows."""
    record = {"params": overrides, "status": "ok", "reason": ""}
    try:
        cfg = point_config(spec.board, overrides)
    except ConfigError as exc:
        return record | {"status": "invalid", "reason": str(exc)}
    from sim.rtl import verilog_text

    board = spec.board
    record |= {"config": cfg.name, "config_id": cfg.config_id_hex,
               "macs_per_cycle": cfg.macs_per_cycle}
    folder = out / "points" / cfg.config_id_hex
    verilog = verilog_text(cfg)  # cached by hardware source; stages are keyed by its text
    hardware = _digest(verilog.encode())

    synth = _stage(folder, "synth", _digest(hardware, board.family, SYNTH_FLOW),
                   lambda: _synthesize(cfg, board.family))
    if not synth["ok"]:
        return record | {"status": "failed", "reason": f"synthesis: {synth['error']}"}
    record |= {k: synth[k] for k in ("lut", "ff", "dsp", "bram")}
    over = fits(board, _resources(synth, board.family))
    if over:
        return record | {"status": "does not fit", "reason": "; ".join(over)}

    clock, clock_source = board.target_mhz, "target"
    if spec.fmax and board.family in PNR_FAMILIES:
        pnr = _stage(folder, "pnr", _digest(hardware, board.name, spec.fmax_timeout),
                     lambda: _place_and_route(cfg, board, spec.fmax_timeout))
        if not pnr["ok"]:  # the point still gets a latency, at the target clock
            record["reason"] = f"place and route: {pnr['error']}"
        else:
            clock, clock_source = pnr["fmax_mhz"], "post-route"
    record |= {"clock_mhz": round(clock, 2), "clock_source": clock_source,
               "peak_gmacs": round(cfg.macs_per_cycle * clock / 1e3, 2)}

    if spec.model is not None:
        key = _digest(hardware, board.dram, _compiler_digest(), _file_digest(spec.model),
                      _file_digest(spec.calib), _file_digest(spec.tuning_log), spec.seed)
        run = _stage(folder, "cycles", key, lambda: _model_cycles(spec, cfg))
        if not run["ok"]:
            return record | {"status": "failed", "reason": f"model: {run['error']}"}
        record |= {"cycles": run["cycles"], "latency_ms": round(run["cycles"] / clock / 1e3, 3),
                   "utilization": run["utilization"], "tuned_layers": run["tuned_layers"]}
    return record


def _synthesize(cfg: HwConfig, family: str) -> dict:
    from boards.synth import synthesize_config

    if family not in SYNTH_FAMILIES:
        raise LoomError(f"no Yosys flow for the {family} family here; sweeps run on "
                        f"{', '.join(SYNTH_FAMILIES)} boards")
    return synthesize_config(cfg, family).to_dict()


def _resources(synth: dict, family: str):
    from boards.synth import Resources

    return Resources(family, synth["top"], synth["lut"], synth["ff"], synth["dsp"],
                     synth["bram"], synth["lutram"], synth["cells"])


def _place_and_route(cfg: HwConfig, board: Board, timeout: float) -> dict:
    from boards.pnr import place_and_route

    return place_and_route(cfg, board, timeout_s=timeout).to_dict()


def _model_cycles(spec: SweepSpec, cfg: HwConfig) -> dict:
    """Compile the sweep's model for `cfg` and run one inference on the RTL model."""
    from compiler.pipeline import accelerated_layers, compile_model
    from compiler.runtime import run_batches
    from compiler.tune.log import best_schedules, layer_key, read_records
    from loom.model_commands import calibration_arrays

    calib = calibration_arrays(spec.model, spec.calib)
    compiled = compile_model(spec.model, cfg, calib=calib, tuning_log=spec.tuning_log)
    graph = compiled.graph
    rng = np.random.default_rng(spec.seed)
    inputs = {name: (calib[name][:graph.values[name].shape[0]] if calib else
                     rng.random(graph.values[name].shape, dtype=np.float32))
              for name in graph.inputs}
    _, report = run_batches(compiled, inputs, "rtl", dram=spec.board.dram)
    accel = [layer for layer in report.layers if layer.target == "accel"]
    macs = sum(layer.macs for layer in accel)
    tuned = {}
    if spec.tuning_log is not None:
        tuned = best_schedules(read_records(spec.tuning_log), cfg)
    layers = accelerated_layers(graph)
    return {
        "cycles": report.cycles,
        "utilization": round(macs / (report.cycles * cfg.macs_per_cycle), 4),
        "tuned_layers": sum(layer_key(cfg, shape, n.attrs) in tuned for n, shape in layers),
        "layers": [{"node": layer.node, "cycles": layer.cycles} for layer in accel],
    }


def run_sweep(spec: SweepSpec, out: str | Path, *, jobs: int = 1, progress=None) -> list[dict]:
    """Evaluate every point (in `jobs` processes), in grid order; `progress(record)` per point."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if jobs <= 1:
        records = []
        for overrides in spec.points:
            records.append(evaluate_point(spec, overrides, out))
            if progress is not None:
                progress(records[-1])
        return records
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(evaluate_point, spec, p, out): i
                   for i, p in enumerate(spec.points)}
        records: list[dict | None] = [None] * len(spec.points)
        for future in as_completed(futures):
            records[futures[future]] = future.result()
            if progress is not None:
                progress(records[futures[future]])
    return records

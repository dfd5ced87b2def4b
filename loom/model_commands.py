"""`loom compile` and `loom run`: ONNX models to compiled models, and inference with a report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from isa.config import load_config
from isa.errors import LoomError

CHECK_FLOAT_QUANTA = 4  # float models: max |loom - onnxruntime| in output quanta
CHECK_QUANTIZED_QUANTA = 1  # QDQ/QOperator models


def _load_arrays(path: str, names: list[str]) -> dict[str, np.ndarray]:
    """Inputs from a .npy (the first graph input) or a .npz (arrays by input name)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LoomError(f"cannot read {path} as .npy/.npz ({exc})") from None
    if isinstance(data, np.ndarray):
        return {names[0]: data}
    with data:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise LoomError(f"{path} has no array {missing[0]}; it has {', '.join(data.files)}")
        return {n: data[n] for n in names}


def calibration_arrays(model: str, path: str | None) -> dict[str, np.ndarray] | None:
    """The calibration inputs of `--calib` by graph input name (None without the flag)."""
    return None if path is None else _load_arrays(path, _onnx_input_names(model))


def cmd_compile(args) -> int:
    """Compile an ONNX model for a config into a .loom model file."""
    from compiler.pipeline import compile_model

    cfg = load_config(args.config)
    calib = calibration_arrays(args.model, args.calib)
    model = compile_model(
        args.model, cfg, calib=calib, batch=args.batch, tuning_log=args.tuning_log,
        host_fallback=args.host_fallback, verify=args.verify,
    )
    out = Path(args.output or Path(args.model).with_suffix(".loom"))
    model.save(out)
    host = [n for n in model.graph.nodes if n.target == "host"]
    insns = sum(len(layer.program.insns) for layer in model.layers.values())
    print(
        f"{out}: {len(model.layers)} layers on the accelerator ({insns} instructions), "
        f"{len(host)} host ops, config {cfg.name}"
    )
    return 0


def _onnx_input_names(path: str) -> list[str]:
    """Names of a model's graph inputs that are not initializers."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
    except (OSError, DecodeError) as exc:
        raise LoomError(f"{path}: cannot read the ONNX model ({exc})") from None
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def load_model(path: str, config: str | None, batch: int):
    """A CompiledModel from a .loom file, or compiled on the fly from an .onnx file."""
    from compiler.model_file import CompiledModel
    from compiler.pipeline import compile_model

    if Path(path).suffix == ".onnx":
        return compile_model(path, load_config(config or "default"), batch=batch)
    if config is not None:
        raise LoomError("--config applies to .onnx models; a .loom model carries its own")
    return CompiledModel.load(path)


def cmd_run(args) -> int:
    """Run a compiled (or ONNX) model on a simulator backend and report per layer."""
    from compiler.runtime import run_batches

    if args.check and Path(args.model).suffix != ".onnx" and args.reference is None:
        raise LoomError("--check of a .loom model needs --reference MODEL.onnx")
    model = load_model(args.model, args.config, args.batch)
    names = model.graph.inputs
    if args.input is None:
        rng = np.random.default_rng(0)
        inputs = {n: rng.random(model.graph.values[n].shape).astype(np.float32) for n in names}
        print("no --input: running on random data", file=sys.stderr)
    else:
        inputs = _load_arrays(args.input, names)
    outputs, report = run_batches(model, inputs, args.backend)
    check = _check(args, model, inputs, outputs) if args.check else None
    if args.output:
        np.savez(args.output, **outputs)
    if args.json:
        print(json.dumps({"outputs": {k: v.tolist() for k, v in outputs.items()},
                          "report": report.to_dict(), "check": check}))
    else:
        _print_report(outputs, report, check)
    return 1 if check is not None and not check["pass"] else 0


def _check(args, model, inputs, outputs) -> dict:
    """Agreement with onnxruntime on the original model (the `--check` bar)."""
    import onnxruntime as ort

    source = args.model if Path(args.model).suffix == ".onnx" else args.reference
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    expected = session.run(None, {k: v.astype(np.float32) for k, v in inputs.items()})
    quantized = model.prequantized
    result = {"outputs": {}, "pass": True}
    for name, want in zip(model.graph.outputs, expected, strict=True):
        got = outputs[name]
        quant = model.graph.values[model.graph.producer(name).inputs[0]].quant
        step = float(np.max(quant.scale)) if quant is not None else 1.0
        quanta = float(np.max(np.abs(got - want)) / step)
        identical = float(np.mean(np.isclose(got, want, rtol=0, atol=step / 2)))
        top1 = float(np.mean(got.reshape(len(got), -1).argmax(1) == want.reshape(len(want), -1)
                             .argmax(1)))
        limit = CHECK_QUANTIZED_QUANTA if quantized else CHECK_FLOAT_QUANTA
        ok = quanta <= limit and (quantized or top1 == 1.0)
        result["outputs"][name] = {"max_quanta": quanta, "identical": identical, "top1": top1,
                                   "limit_quanta": limit, "pass": ok}
        result["pass"] &= ok
    return result


def _print_report(outputs, report, check) -> None:
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape}, argmax {value.reshape(len(value), -1).argmax(1)}")
    print(f"{'node':28s} {'where':6s} {'MACs':>10s} {'bytes':>8s} {'cycles':>9s} {'util':>6s}")
    for layer in report.layers:
        cycles = "" if layer.cycles is None else str(layer.cycles)
        util = "" if layer.utilization is None else f"{layer.utilization:.1%}"
        macs = str(layer.macs) if layer.macs else ""
        moved = str(layer.bytes_moved) if layer.bytes_moved else ""
        print(f"{layer.node[:28]:28s} {layer.target:6s} {macs:>10s} {moved:>8s} "
              f"{cycles:>9s} {util:>6s}")
        if layer.reason:
            print(f"  on the host: {layer.reason}")
    if report.cycles is not None:
        print(f"total accelerator cycles: {report.cycles}")
    if check is not None:
        for name, c in check["outputs"].items():
            print(f"check {name}: max {c['max_quanta']:.2f} quanta (limit {c['limit_quanta']}), "
                  f"{c['identical']:.1%} identical, top-1 {c['top1']:.1%}: "
                  f"{'PASS' if c['pass'] else 'FAIL'}")


def register(sub) -> None:
    """Add the compile and run subcommands to the CLI's subparsers."""
    p = sub.add_parser("compile", help="compile an ONNX model for the accelerator")
    p.add_argument("model", help="ONNX model (.onnx)")
    p.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    p.add_argument("--calib", help="calibration inputs (.npy or .npz by input name)")
    p.add_argument("--batch", type=int, default=1, help="batch size to compile for")
    p.add_argument("--tuning-log", help="JSON-lines tuning log: best schedule per layer")
    p.add_argument("--host-fallback", action="store_true",
                   help="run unsupported ops on the host instead of failing")
    p.add_argument("--verify", action="store_true", help="check the graph between passes")
    p.add_argument("-o", "--output", help="model file to write (default: MODEL.loom)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a model on the simulated accelerator")
    p.add_argument("model", help="compiled model (.loom) or ONNX model (.onnx)")
    p.add_argument("--config", help="config when compiling an .onnx model (default: default)")
    p.add_argument("--batch", type=int, default=1, help="batch size when compiling an .onnx")
    p.add_argument("--input", help="inputs (.npy for the first input, or .npz by name)")
    p.add_argument("--backend", choices=("functional", "rtl"), default="functional",
                   help="simulator that runs the accelerated layers")
    p.add_argument("--check", action="store_true",
                   help="compare with onnxruntime; exit 1 when worse than the bar")
    p.add_argument("--reference", help="the original .onnx, for --check of a .loom model")
    p.add_argument("-o", "--output", help="write the outputs to a .npz")
    p.add_argument("--json", action="store_true", help="print outputs and report as JSON")
    p.set_defaults(func=cmd_run)

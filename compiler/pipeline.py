"""The compiler's pipeline: ONNX model to a CompiledModel, pass by pass, in one list.

Front-end passes clean the float graph; then the graph is quantized (calibrated float models) or
its own quantization is imported (QDQ and QOperator models); `partition_graph` marks the nodes
the accelerator runs (every QCONV; QADD and QMAXPOOL when they lower for the config, else they
stay on the host with the reason in their `host_reason` attribute); `lower_graph` turns each
into a Program, convolutions with a schedule from the tuning log or the heuristic. With
`verify`, the graph is checked between passes.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compiler.frontend import import_onnx
from compiler.ir import CompileError, Graph, Node, Op
from compiler.lower import lower_conv
from compiler.lower_eltwise import ELTWISE_OPS, lower_eltwise
from compiler.model_file import CompiledModel
from compiler.passes import fold_batchnorm, fold_constants, fuse_gemm_layout, remove_identities
from compiler.quantize import QOPERATORS, calibrate, from_qdq, quantize_graph
from compiler.runtime import split_batches
from compiler.schedule import ConvSchedule
from compiler.tap_packing import pack_taps
from compiler.tune.log import best_schedules, layer_key, read_records
from isa.config import HwConfig
from isa.errors import LoomError

FRONT_PASSES: list[Callable[[Graph], Graph]] = [
    remove_identities,
    fold_constants,
    fold_batchnorm,
    fuse_gemm_layout,
]
QUANTIZED_OPS = {Op.QUANTIZE, Op.DEQUANTIZE}
GENERATED_SAMPLES = 8


def partition_graph(graph: Graph, cfg: HwConfig) -> Graph:
    """Mark every QCONV node, and the QADD and QMAXPOOL nodes that lower for `cfg`, for the
    accelerator; everything else stays on the host (an add or pool with its reason)."""
    graph = graph.copy()
    for node in graph.nodes:
        node.attrs.pop("host_reason", None)
        node.target = "accel" if node.op == Op.QCONV else "host"
        if node.op in ELTWISE_OPS:
            try:
                lower_eltwise(cfg, graph, node)
                node.target = "accel"
            except LoomError as exc:  # CompileError, or a field the ISA cannot encode
                node.attrs["host_reason"] = str(exc)
    return graph


def accelerated_layers(graph: Graph, ops=(Op.QCONV,)) -> list[tuple[Node, tuple[int, ...]]]:
    """The accelerator's nodes of `ops` (convolutions by default: what the tuner sees) with
    their (fixed) first input shapes, in graph order."""
    layers = []
    for node in graph.nodes:
        if node.target != "accel" or node.op not in ops:
            continue
        shape = graph.values[node.inputs[0]].shape
        if any(not isinstance(d, int) or d <= 0 for d in shape):
            raise CompileError(f"node {node.name}: input shape {shape} is not fixed; pass a batch")
        layers.append((node, tuple(shape)))
    return layers


def lower_graph(graph: Graph, cfg: HwConfig, schedules: dict[str, ConvSchedule]) -> dict:
    """Lower every accelerator node to a Program (a convolution with the schedule of its layer
    key if known), in graph order."""
    layers = {}
    for node, shape in accelerated_layers(graph, (Op.QCONV, *ELTWISE_OPS)):
        if node.op == Op.QCONV:
            schedule = schedules.get(layer_key(cfg, shape, node.attrs))
            layers[node.name] = lower_conv(cfg, shape, node.attrs, schedule, node.name)
        else:
            layers[node.name] = lower_eltwise(cfg, graph, node)
    return layers


def calibration_samples(graph: Graph, calib: dict[str, np.ndarray] | None) -> list[dict]:
    """Split calibration arrays into per-sample inputs, or generate random ones with a warning."""
    if calib is None:
        warnings.warn(
            f"no calibration data: quantizing with {GENERATED_SAMPLES} random inputs; pass "
            "--calib DATA.npz for accurate scales", stacklevel=2,
        )
        rng = np.random.default_rng(0)
        return [
            {name: rng.random(graph.values[name].shape).astype(np.float32)
             for name in graph.inputs}
            for _ in range(GENERATED_SAMPLES)
        ]
    missing = [name for name in graph.inputs if name not in calib]
    if missing:
        raise CompileError(
            f"calibration data lacks input {missing[0]}; it has {', '.join(calib) or 'nothing'}"
        )
    return split_batches(graph, calib, drop_partial=True)


def prepare_graph(
    model, cfg: HwConfig, *, calib: dict[str, np.ndarray] | None = None, batch: int = 1,
    host_fallback: bool = False, verify: bool = False,
) -> tuple[Graph, bool]:
    """An ONNX model (path or ModelProto) as a quantized, partitioned graph, ready to lower.

    Also says whether the model came quantized (QDQ or QOperator).
    """
    graph = import_onnx(model, host_fallback=host_fallback, batch=batch)
    for step in FRONT_PASSES:
        graph = _run(step, graph, verify)
    prequantized = any(_is_quantized(node) for node in graph.nodes)
    if prequantized:
        graph = _run(lambda g: from_qdq(g, cfg), graph, verify)
    else:
        ranges = calibrate(graph, calibration_samples(graph, calib))
        graph = _run(lambda g: quantize_graph(g, ranges, cfg), graph, verify)
    graph = _run(lambda g: pack_taps(g, cfg), graph, verify)
    return _run(lambda g: partition_graph(g, cfg), graph, verify), prequantized


def compile_model(
    model, cfg: HwConfig, *, calib: dict[str, np.ndarray] | None = None, batch: int = 1,
    tuning_log: str | Path | None = None, host_fallback: bool = False, verify: bool = False,
) -> CompiledModel:
    """Compile an ONNX model (path or ModelProto) for a config, with tuned schedules if logged."""
    graph, prequantized = prepare_graph(model, cfg, calib=calib, batch=batch,
                                        host_fallback=host_fallback, verify=verify)
    schedules = {} if tuning_log is None else best_schedules(read_records(tuning_log), cfg)
    if tuning_log is not None:
        unseen = [node.name for node, shape in accelerated_layers(graph)
                  if layer_key(cfg, shape, node.attrs) not in schedules]
        if unseen:
            print(f"tuning log has no record for {', '.join(unseen)}: using the heuristic",
                  file=sys.stderr)
    return CompiledModel(cfg, graph, lower_graph(graph, cfg, schedules), prequantized)


def _is_quantized(node) -> bool:
    """True for the nodes of an already quantized model (QDQ or QOperator)."""
    return node.op in QUANTIZED_OPS or node.attrs.get("onnx_op") in QOPERATORS


def _run(step: Callable[[Graph], Graph], graph: Graph, verify: bool) -> Graph:
    graph = step(graph)
    if verify:
        graph.verify()
    return graph

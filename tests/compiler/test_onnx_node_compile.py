"""ONNX's backend node tests through Loom's compile-and-run path (compile_model + run_batches).

The cases and their adaptation come from test_onnx_node_tests; in addition, the inputs Loom
quantizes as weights (Conv W/B, Gemm B/C, MatMul's B, BatchNormalization's statistics, the
scales, zero points and weights of Q/DQ and QOperator nodes) are frozen into initializers with the
test's data (`COMPILE_FROZEN`). Each case is compiled for the "small" config, calibrated on its
own inputs, and run on the functional simulator; it must

- agree bit for bit with `run_integer` on the compiled graph (the Programs against numpy), and
- agree with the test's expected outputs: an output that Loom computes on integers (it comes out
  of a DEQUANTIZE) within `QUANTA` quanta of its scale, other outputs (host float ops, host
  integer ops) as test_onnx_node_tests checks them.

Why `QUANTA` quanta: calibration on the test's own inputs leaves no saturation, so an output's
error is its own rounding (1/2 quantum), the requantization's (well under 1/2 quantum with 16-bit
multipliers) and the rounding of the quantized inputs and weights carried into it. The carried
part is at most x_scale / (2 y_scale) per input for pools and adds (an average's output range,
hence its scale, can be narrower than its input's) and grows with the terms of a product; the
node tests' tensors are small (a few dozen terms per output), and the worst case measured over
them is 1.4 quanta (AveragePool). Integer outputs of quantized models allow `QUANTIZED_QUANTA`,
the bound `loom run --check` uses: Loom's fixed-point requantization differs from onnxruntime's
float one within one quantum.
Cases Loom cannot compile must raise a CompileError whose message contains the reason listed in
SKIPS (import) or `COMPILE_SKIPS`. Run this file as a script to print the per-op table.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_onnx_node_tests import CASES, FROZEN_INPUTS, ROUNDED, load_case, skip_reason, table

from compiler.frontend import SUPPORTED_OPS
from compiler.ir import CompileError, Op
from compiler.pipeline import compile_model
from compiler.qreference import run_integer
from compiler.runtime import run_batches
from isa import load_config

CONFIG = load_config("small")
QUANTA = 2
QUANTIZED_QUANTA = 1  # as `loom run --check` of pre-quantized models (docs/compiler.md)
# Inputs frozen for the compile path, by op: everything but the data the node computes on.
COMPILE_FROZEN = {
    **FROZEN_INPUTS,
    "Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4),
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "QLinearConv": tuple(range(1, 9)),
    "QLinearMatMul": tuple(range(1, 8)), "ConvInteger": (1, 2, 3), "MatMulInteger": (1, 2, 3),
}
# Ops none of whose node tests Loom can compile, and why (they are in COMPILE_SKIPS).
NOT_COMPILABLE = {
}
# (test name pattern, substring of the CompileError that compiling must raise)
COMPILE_SKIPS = [
]


def compile_skip_reason(name: str) -> str | None:
    """The CompileError substring compiling must raise, if the test matches a skip rule."""
    return skip_reason(name) or next(
        (reason for pattern, reason in COMPILE_SKIPS if re.search(pattern, name)), None)


def output_steps(graph) -> dict[str, tuple[float, int]]:
    """(quantization step, tolerance in steps) of each output Loom computes on integers.

    Float outputs dequantized from Loom's integers allow QUANTA of their scale; integer outputs
    of the model (Loom's integers converted back to the model's type) allow QUANTIZED_QUANTA.
    """
    steps = {}
    for node in graph.nodes:
        if node.op == Op.DEQUANTIZE and graph.producer(node.inputs[0]) is not None:
            scale = graph.values[node.inputs[0]].quant.scale
            steps[node.outputs[0]] = (float(np.asarray(scale)), QUANTA)
            for reader in graph.consumers(node.outputs[0]):  # back to the model's integers
                if reader.attrs.get("onnx_op") == "QuantizeLinear":
                    steps[reader.outputs[0]] = (1.0, QUANTIZED_QUANTA)
    return {name: step for name, step in steps.items() if name in graph.outputs}


def check_compiled(name: str, folder: Path) -> str:
    """'passed' or 'skipped: reason'; raises AssertionError when Loom gets a result wrong."""
    model, sets = load_case(folder, COMPILE_FROZEN)
    expected_skip = compile_skip_reason(name)
    feeds = sets[0][0]
    first = next((a for a in feeds.values() if a is not None and a.ndim), None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no calibration data when a model has no inputs
            compiled = compile_model(model, CONFIG, calib=feeds or None,
                                     batch=1 if first is None else max(len(first), 1))
    except CompileError as e:
        assert expected_skip and expected_skip in str(e), f"{name}: unexpected error: {e}"
        return f"skipped: {e}"
    assert expected_skip is None, f"{name} compiled although it should fail: {expected_skip}"
    steps = output_steps(compiled.graph)
    rtol, atol = (1e-3, 1e-7) if name in ROUNDED else (1e-5, 1e-6)
    for feeds, outputs in sets:
        got, _ = run_batches(compiled, feeds, "functional")
        exact = run_integer(compiled.graph, feeds, CONFIG.acc_bits)
        for out, want in zip(compiled.graph.outputs, outputs, strict=True):
            np.testing.assert_array_equal(got[out], exact[out], err_msg=f"{name}: {out}")
            assert got[out].dtype == want.dtype, f"{name}: {out} is {got[out].dtype}"
            if out in steps:
                step, allowed = steps[out]
                quanta = np.abs(got[out].astype(np.float64) - want) / step
                assert quanta.max() <= allowed, f"{name}: {out} is {quanta.max()} quanta off"
            else:
                np.testing.assert_allclose(got[out], want, rtol=rtol, atol=atol, err_msg=name)
    return "passed"


def summary() -> dict[str, Counter]:
    """Per op: how many node tests passed the compile path and how many were skipped."""
    counts: dict[str, Counter] = {}
    for name, (op, folder) in CASES.items():
        counts.setdefault(op, Counter())[check_compiled(name, folder).split(":")[0]] += 1
    return counts


@pytest.mark.parametrize("op", sorted({op for op, _ in CASES.values()}))
def test_node_tests_of_op_compile(op):
    """Every node test of the op compiles and runs correctly, or is skipped for a listed reason."""
    for name, (case_op, folder) in CASES.items():
        if case_op == op:
            check_compiled(name, folder)


def test_every_supported_op_compiles():
    """Each supported op but those in NOT_COMPILABLE has a node test passing the compile path,
    and those have none (table: pytest -s)."""
    counts = summary()
    print(table(counts))
    passing = {op for op, c in counts.items() if c["passed"]}
    assert passing == set(SUPPORTED_OPS) - set(NOT_COMPILABLE)


if __name__ == "__main__":
    print(table(summary()))

"""ONNX's own backend node tests (shipped in the onnx wheel) through import_onnx and run_float.

Every single-node test of an op in SUPPORTED_OPS is imported and run; its outputs must match the
stored expected outputs. Adaptations, all in `load_case`: models older than opset 13 are
upgraded with onnx.version_converter (Loom rejects them otherwise), and inputs that Loom needs
as constants (Clip bounds, Reshape shapes) are frozen into initializers with the test's data.
Tests that use features Loom does not support must fail import with the reason listed in
`SKIPS`, and every test matching a SKIPS rule must be skipped. Run this file as a script to
print the per-op table of passed and skipped tests.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import pytest
from onnx import numpy_helper

from compiler.frontend import MIN_OPSET, SUPPORTED_OPS, import_onnx
from compiler.ir import CompileError
from compiler.reference import run_float

NODE_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"

# (test name pattern, substring of the CompileError that import must raise)
SKIPS = [
    (r"pool_[13]d_", "-D input is not supported"),  # 1-D and 3-D pools: Loom's are 2-D
    (r"training", "in training mode"),  # BatchNormalization / Dropout with training_mode=1
    (r"blocked", "with blocked quantization"),
    (r"e4m3|e5m2|float4|int4|int2", "has element type"),  # numpy has no such types
    (r"_opt$|_sequence$", "not a tensor type"),  # optional and sequence values
    (r"with_argmax", "in use is not supported"),  # MaxPool's Indices output
]
# Inputs frozen to constants, by op: the positions Loom reads at import time.
FROZEN_INPUTS = {"Clip": (1, 2), "Reshape": (1,)}
# Expected outputs stored rounded to 4 decimals: ONNX's own runner tolerance (rtol 1e-3).
ROUNDED = {"test_averagepool_2d_ceil_last_window_starts_on_pad"}


def _tensors(folder: Path, kind: str, values) -> list[np.ndarray | None]:
    """input_*.pb or output_*.pb of a data set for the given ValueInfos (None: not a tensor)."""
    files = sorted(folder.glob(f"{kind}_*.pb"), key=lambda f: int(f.stem.split("_")[1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f)))
            if v.type.HasField("tensor_type") else None
            for f, v in zip(files, values, strict=True)]


def node_cases() -> dict[str, tuple[str, Path]]:
    """Single-node tests of supported ops: test name -> (op, folder)."""
    cases = {}
    for folder in sorted(NODE_DIR.iterdir()):
        graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
        if len(graph.node) == 1 and graph.node[0].op_type in SUPPORTED_OPS:
            cases[folder.name] = (graph.node[0].op_type, folder)
    return cases


CASES = node_cases()


def load_case(
    folder: Path, frozen_inputs: dict[str, tuple[int, ...]] = FROZEN_INPUTS,
) -> tuple[onnx.ModelProto, list[tuple[dict, list[np.ndarray]]]]:
    """The (adapted) model and its data sets as (feeds by input name, expected outputs).

    Inputs at the positions `frozen_inputs` gives for the node's op become initializers.
    """
    model = onnx.load(folder / "model.onnx")
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < MIN_OPSET:
        model = onnx.version_converter.convert_version(model, MIN_OPSET)
    graph = model.graph
    names = [i.name for i in graph.input]
    sets = [(dict(zip(names, _tensors(d, "input", graph.input), strict=True)),
             _tensors(d, "output", graph.output)) for d in sorted(folder.glob("test_data_set_*"))]
    node = model.graph.node[0]
    frozen = [node.input[i] for i in frozen_inputs.get(node.op_type, ())
              if i < len(node.input) and node.input[i] in names]
    if frozen:
        feeds = sets[0][0]
        assert all(np.array_equal(s[0][n], feeds[n]) for s in sets for n in frozen)
        model.graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in frozen)
        keep = [i for i in model.graph.input if i.name not in frozen]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        sets = [({n: a for n, a in f.items() if n not in frozen}, out) for f, out in sets]
    return model, sets


def skip_reason(name: str) -> str | None:
    """The CompileError substring a test must raise, if it matches a SKIPS rule."""
    return next((reason for pattern, reason in SKIPS if re.search(pattern, name)), None)


def check_case(name: str, folder: Path) -> str:
    """'passed' or 'skipped: reason'; raises AssertionError when Loom gets a result wrong."""
    model, sets = load_case(folder)
    expected_skip = skip_reason(name)
    try:
        graph = import_onnx(model)
    except CompileError as e:
        assert expected_skip and expected_skip in str(e), f"{name}: unexpected error: {e}"
        return f"skipped: {e}"
    assert expected_skip is None, f"{name} imported although it should fail: {expected_skip}"
    rtol, atol = (1e-3, 1e-7) if name in ROUNDED else (1e-5, 1e-6)
    for feeds, outputs in sets:
        got = run_float(graph, feeds)
        for out, want in zip(graph.outputs, outputs, strict=True):
            assert got[out].dtype == want.dtype, f"{name}: {out} is {got[out].dtype}"
            np.testing.assert_allclose(got[out], want, rtol=rtol, atol=atol, err_msg=name)
    return "passed"


def summary() -> dict[str, Counter]:
    """Per op: how many node tests passed and how many were skipped."""
    counts: dict[str, Counter] = {}
    for name, (op, folder) in CASES.items():
        counts.setdefault(op, Counter())[check_case(name, folder).split(":")[0]] += 1
    return counts


@pytest.mark.parametrize("op", sorted({op for op, _ in CASES.values()}))
def test_node_tests_of_op(op):
    """Every node test of the op passes or is skipped for a listed reason."""
    for name, (case_op, folder) in CASES.items():
        if case_op == op:
            check_case(name, folder)


def table(counts: dict[str, Counter]) -> str:
    """The per-op summary as text."""
    return "\n".join(f"{op:20} passed {c['passed']:3}  skipped {c['skipped']:3}"
                     for op, c in sorted(counts.items()))


def test_every_supported_op_is_covered():
    """Each op in SUPPORTED_OPS has at least one node test that really runs (table: pytest -s)."""
    counts = summary()
    print(table(counts))
    assert {op for op, c in counts.items() if c["passed"]} == set(SUPPORTED_OPS)


if __name__ == "__main__":
    print(table(summary()))

"""run_float against onnxruntime: test CNNs, the digits model, random window geometries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from onnx_models import CNN_MODELS, DIGITS, Builder, assert_close, random_inputs, run_ort
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compiler.frontend import import_onnx
from compiler.ir import CompileError
from compiler.reference import run_float


def check_against_ort(model, inputs=None, **kwargs) -> dict[str, np.ndarray]:
    """run_float on the imported model agrees with onnxruntime; returns run_float's outputs."""
    inputs = inputs if inputs is not None else random_inputs(model)
    want = run_ort(model, inputs)
    got = run_float(import_onnx(model, **kwargs), inputs)
    assert set(got) == set(want)
    for name in want:
        assert_close(got[name], want[name])
    return got


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(CNN_MODELS))
def test_cnn_models_match_onnxruntime(name, batch):
    """Every shared test CNN, at batch 1 and 2."""
    check_against_ort(CNN_MODELS[name](batch))


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The digits test images (N, 1, 8, 8) in [0, 1] and labels, split as the model was."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    _, x_test, _, y_test = train_test_split(x, data.target, test_size=0.25, random_state=0,
                                            stratify=data.target)
    return x_test, y_test


def test_digits_model_matches_onnxruntime_and_its_accuracy():
    """The bundled model on the whole test split: logits agree, accuracy is the recorded one."""
    x, y = digits_test_split()
    logits = check_against_ort(DIGITS, {"input": x}, batch=len(x))["logits"]
    recorded = json.loads(DIGITS.with_suffix(".json").read_text())["float_test_accuracy"]
    assert float((logits.argmax(1) == y).mean()) == recorded >= 0.95


def test_keep_returns_every_intermediate():
    """keep=True adds every node output (and the inputs), never constants."""
    model = CNN_MODELS["residual"](1)
    graph = import_onnx(model)
    inputs = random_inputs(model)
    everything = run_float(graph, inputs, keep=True)
    written = {out for node in graph.nodes for out in node.outputs}
    assert set(everything) == written | set(graph.inputs)
    for name, array in everything.items():
        assert array.shape == graph.values[name].shape
    final = run_float(graph, inputs)
    np.testing.assert_array_equal(everything[graph.outputs[0]], final[graph.outputs[0]])


def test_input_errors():
    """Missing inputs and wrong shapes are reported by name."""
    graph = import_onnx(CNN_MODELS["padded"](1))
    with pytest.raises(CompileError, match="graph input x is missing"):
        run_float(graph, {})
    with pytest.raises(CompileError, match=r"graph input x has shape \(2, 5, 17, 15\)"):
        run_float(graph, {"x": np.zeros((2, 5, 17, 15), np.float32)})


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias_shape", [None, (), (1, 6), (6,), (4, 6)])
def test_gemm_variants(trans_a, trans_b, bias_shape):
    """Gemm with transposes, alpha, beta and every bias broadcast."""
    b = Builder("a", (5, 4) if trans_a else (4, 5))
    w = b.random((6, 5) if trans_b else (5, 6))
    c = [] if bias_shape is None else [b.random(bias_shape)]
    y = b.op("Gemm", [b.input, w, *c], transA=trans_a, transB=trans_b, alpha=0.7, beta=1.3)
    check_against_ort(b.model([y]))


def test_matmul_broadcasts():
    """MatMul of a 3-D activation by a constant matrix and by a batched tensor."""
    b = Builder("a", (2, 3, 4))
    y = b.op("MatMul", [b.input, b.random((4, 5))])
    z = b.op("MatMul", [b.random((1, 6, 3)), b.input])
    check_against_ort(b.model([y, z]))


def test_softmax_is_stable():
    """Softmax of large logits does not overflow."""
    b = Builder("x", (2, 5))
    y = b.op("Softmax", [b.op("Add", [b.input, b.const(np.full(5, 1e4, np.float32))])])
    got = check_against_ort(b.model([y]))
    assert np.isfinite(got[y]).all()


@st.composite
def windows(draw, pool: bool = False) -> Builder:
    """A window geometry and a builder whose input fits it (pools: pads smaller than kernel)."""
    k, d = draw(st.sampled_from([1, 2, 3, 5, 7])), draw(st.integers(1, 2))
    pad = st.integers(0, min(3, k - 1) if pool else 3)
    pads = draw(st.tuples(pad, pad, pad, pad))
    span = d * (k - 1) + 1
    least = [max(1, span - pads[i] - pads[i + 2]) for i in range(2)]
    size = [draw(st.integers(n, n + 8)) for n in least]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), *size)
    # Opset 19: AveragePool's dilations attribute is that new.
    builder = Builder("x", shape, seed=draw(st.integers(0, 2**16)), opset=19)
    return {"kernel": k, "stride": draw(st.integers(1, 2)), "dilation": d, "pads": pads}, builder


@settings(max_examples=40, deadline=None)
@given(window=windows(), cout=st.integers(1, 6), bias=st.booleans())
def test_conv_geometry(window, cout, bias):
    """Conv with any kernel, stride, dilation and (asymmetric) padding."""
    w, b = window
    y = b.conv(b.input, cout, kernel=w["kernel"], stride=w["stride"], pad=w["pads"], bias=bias,
               dilation=w["dilation"])
    check_against_ort(b.model([y]))


@settings(max_examples=40, deadline=None)
@given(window=windows(pool=True), op=st.sampled_from(["MaxPool", "AveragePool"]),
       ceil=st.integers(0, 1), include_pad=st.integers(0, 1))
def test_pool_geometry(window, op, ceil, include_pad):
    """MaxPool and AveragePool with any window, padding (smaller than the kernel) and ceil_mode."""
    w, b = window
    k, s, d = w["kernel"], w["stride"], w["dilation"]
    attrs = {"count_include_pad": include_pad} if op == "AveragePool" else {}
    y = b.op(op, [b.input], kernel_shape=[k, k], strides=[s, s], dilations=[d, d],
             pads=list(w["pads"]), ceil_mode=ceil, **attrs)
    try:
        check_against_ort(b.model([y]))
    except CompileError as e:  # see test_pool_shape_inference_disagreement
        assert "onnx shape inference gives" in str(e)
        reject()


@pytest.mark.parametrize(("op", "attrs"), [
    ("MaxPool", {}), ("AveragePool", {"count_include_pad": 0}),
    ("AveragePool", {"count_include_pad": 1}),
])
def test_pool_windows_wholly_in_padding(op, attrs):
    """Dilated windows that miss every input pixel give what onnxruntime gives."""
    b = Builder("x", (1, 2, 1, 3), opset=19)
    y = b.op(op, [b.input], kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1], **attrs)
    check_against_ort(b.model([y]))


def test_pool_shape_inference_disagreement():
    """A ceil_mode window starting in the end padding: onnx's inferred shape is refused."""
    b = Builder("x", (1, 1, 3, 2), opset=19)
    y = b.op("MaxPool", [b.input], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 2],
             ceil_mode=1, name="pool")
    with pytest.raises(CompileError) as info:
        import_onnx(b.model([y]))
    assert str(info.value) == (
        "node pool: onnx shape inference gives MaxPool output (1, 1, 1, 2), but the ONNX pooling "
        "rule (as onnxruntime computes it) gives (1, 1, 1, 1)"
    )

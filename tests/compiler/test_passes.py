"""Front-end passes, Before/Expected: graph structure after each pass, numerics unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx_models import CNN_MODELS, DIGITS, Builder, assert_close, random_inputs, run_ort

from compiler.frontend import import_onnx
from compiler.ir import Graph, Op
from compiler.passes import fold_batchnorm, fold_constants, fuse_gemm_layout, remove_identities
from compiler.reference import run_float

PASSES = [fold_constants, remove_identities, fold_batchnorm, fuse_gemm_layout]


def rewrite(model: onnx.ModelProto, *passes, **kwargs) -> Graph:
    """Import, apply the passes, verify the result, and check it against onnxruntime."""
    graph = import_onnx(model, **kwargs)
    for p in passes:
        graph = p(graph)
        graph.verify()
    inputs = random_inputs(model, shapes={n: graph.values[n].shape for n in graph.inputs})
    want = run_ort(model, inputs)
    got = run_float(graph, inputs)
    for name in want:
        assert_close(got[name], want[name])
    return graph


def ops(graph: Graph) -> list[Op]:
    """The graph's node ops in order."""
    return [node.op for node in graph.nodes]


def const(graph: Graph, name: str) -> np.ndarray:
    """A constant's data."""
    return graph.values[name].const


def test_passes_do_not_modify_their_argument():
    """Every pass rewrites a copy."""
    graph = import_onnx(CNN_MODELS["residual"](1))
    before = [(n.op, list(n.inputs), list(n.outputs)) for n in graph.nodes]
    for p in PASSES:
        p(graph)
    assert [(n.op, n.inputs, n.outputs) for n in graph.nodes] == before


@pytest.mark.parametrize("name", sorted(CNN_MODELS))
def test_all_passes_keep_numerics(name):
    """The four passes in a row leave every test CNN's outputs unchanged (batch 2)."""
    graph = rewrite(CNN_MODELS[name](2), *PASSES)
    assert Op.GEMM in ops(graph)


# fold_constants


def test_fold_constants():
    """Before: y = x + Transpose(C); x2 = DQ(Q(W)) @ ... Expected: Add reads C.T, Q(W) is an
    int8 constant with its QuantParams, DequantizeLinear stays."""
    b = Builder("x", (2, 3))
    c = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = b.op("Add", [b.input, b.op("Transpose", [b.const(c)])])
    scale, zero = b.const(np.float32(0.5)), b.const(np.int8(0))
    wq = b.op("QuantizeLinear", [b.const(np.linspace(-3, 3, 12, dtype=np.float32)
                                         .reshape(3, 4)), scale, zero])
    z = b.op("MatMul", [y, b.op("DequantizeLinear", [wq, scale, zero])])
    graph = rewrite(b.model([z]), fold_constants)
    assert ops(graph) == [Op.ADD, Op.DEQUANTIZE, Op.MATMUL]
    add, dq, _ = graph.nodes
    np.testing.assert_array_equal(const(graph, add.inputs[1]), c.T)
    folded = graph.values[dq.inputs[0]]
    assert folded.dtype == "int8" and folded.quant.scale == np.float32(0.5)
    assert const(graph, dq.inputs[0]).tolist()[0] == [-6, -5, -4, -3]
    assert all(n in graph.values for node in graph.nodes for n in node.inputs)
    assert len(graph.values) == len({n for node in graph.nodes for n in node.inputs + node.outputs}
                                    | set(graph.inputs))


def test_fold_constants_keeps_random_host_ops():
    """Before: RandomUniformLike(C) on the host. Expected: still there (every run draws anew)."""
    b = Builder("x", (2, 3))
    noise = b.op("RandomUniformLike", [b.const(np.zeros((2, 3), np.float32))])
    graph = fold_constants(import_onnx(b.model([b.op("Add", [b.input, noise])]),
                                       host_fallback=True))
    assert ops(graph) == [Op.HOST, Op.ADD]


# remove_identities


def test_remove_identities():
    """Before: Reshape(same) -> Transpose(identity) -> Relu -> Clip(unbounded) -> Flatten(2-D)
    -> MaxPool(1x1). Expected: the Relu alone, writing the graph output's name."""
    b = Builder("x", (2, 6))
    x = b.op("Reshape", [b.input, b.const(np.array([2, -1], np.int64))])
    x = b.op("Relu", [b.op("Transpose", [x], perm=[0, 1])])
    x = b.op("Flatten", [b.op("Clip", [x])])
    x = b.op("Reshape", [x, b.const(np.array([2, 6, 1, 1], np.int64))])
    y = b.pool("MaxPool", x, kernel=1, stride=1)
    graph = rewrite(b.model([y]), remove_identities)
    assert ops(graph) == [Op.RELU, Op.RESHAPE]
    assert graph.nodes[0].inputs == ["x"] and graph.nodes[1].outputs == [y] == graph.outputs


def test_remove_identities_keeps_real_work():
    """Before: Transpose(1, 0), Clip(0, inf), a 2x2 MaxPool. Expected: all three stay."""
    b = Builder("x", (1, 2, 4, 4))
    x = b.pool("MaxPool", b.clip(b.input, 0.0, None), kernel=2, stride=2)
    y = b.op("Transpose", [x], perm=[0, 1, 3, 2])
    assert ops(rewrite(b.model([y]), remove_identities)) == [Op.CLIP, Op.MAXPOOL, Op.TRANSPOSE]


def test_identity_from_input_to_output_stays():
    """Before: graph output = Reshape(graph input, same shape). Expected: unchanged (no name)."""
    b = Builder("x", (2, 3))
    y = b.op("Reshape", [b.input, b.const(np.array([2, 3], np.int64))])
    assert ops(rewrite(b.model([y]), remove_identities)) == [Op.RESHAPE]


# fold_batchnorm


def test_fold_batchnorm_into_conv():
    """Before: Conv(W, B) -> BN -> Relu. Expected: Conv(W*s, (B-mean)*s+beta) -> Relu, the Conv
    writing the BN's output; numerics as onnxruntime on the original."""
    b = Builder("x", (2, 3, 7, 7))
    conv = b.conv(b.input, 5, kernel=3, pad=1)
    bn = b.bn(conv)
    graph = rewrite(b.model([b.op("Relu", [bn])]), fold_batchnorm)
    assert ops(graph) == [Op.CONV, Op.RELU]
    node = graph.nodes[0]
    assert node.outputs == [bn] and conv not in graph.values
    assert node.inputs[1].endswith("_w_bn") and node.inputs[2].endswith("_b_bn")
    assert not any(n.startswith(("g", "mean", "var")) for n in graph.values)


def test_fold_batchnorm_adds_a_bias():
    """Before: Conv without bias -> BN. Expected: Conv with a bias, a graph-output name kept."""
    b = Builder("x", (1, 4, 5, 5))
    bn = b.bn(b.conv(b.input, 3, kernel=1, bias=False))
    graph = rewrite(b.model([bn]), fold_batchnorm)
    assert ops(graph) == [Op.CONV] and len(graph.nodes[0].inputs) == 3
    assert graph.outputs == [bn] == graph.nodes[0].outputs


def test_fold_batchnorm_with_shared_weights():
    """Before: two Convs sharing W, each -> its own BN. Expected: two new weights, W dropped."""
    b = Builder("x", (1, 2, 5, 5))
    w = b.random((2, 2, 3, 3))
    y1 = b.bn(b.op("Conv", [b.input, w], pads=[1, 1, 1, 1]))
    y2 = b.bn(b.op("Conv", [y1, w], pads=[1, 1, 1, 1]))
    graph = rewrite(b.model([y2]), fold_batchnorm)
    assert ops(graph) == [Op.CONV, Op.CONV] and w not in graph.values
    assert graph.nodes[0].inputs[1] != graph.nodes[1].inputs[1]


def test_batchnorm_elsewhere_is_kept():
    """Before: BN after an Add; BN after a Conv whose output is also read by an Add; BN after a
    Conv output that is a graph output. Expected: all three BNs stay."""
    b = Builder("x", (1, 3, 4, 4))
    after_add = b.bn(b.op("Add", [b.input, b.input]))
    shared = b.conv(after_add, 3, kernel=1)
    second = b.op("Add", [b.bn(shared), shared])
    exposed = b.conv(second, 3, kernel=1)
    graph = rewrite(b.model([b.bn(exposed), exposed]), fold_batchnorm)
    assert ops(graph).count(Op.BATCHNORM) == 3


def test_fold_batchnorm_on_digits():
    """The bundled model: both BNs fold; logits as onnxruntime's on the original."""
    graph = rewrite(onnx.load(DIGITS), fold_batchnorm, batch=8)
    assert Op.BATCHNORM not in ops(graph) and ops(graph).count(Op.CONV) == 3


# fuse_gemm_layout


def test_gemm_to_canonical_form():
    """Before: Gemm(x, B (K, N), C (1, N), alpha=0.5, beta=2). Expected: Gemm(x, 0.5 B.T,
    2 C as (N,)) with alpha=beta=1, transA=0, transB=1."""
    b = Builder("x", (3, 4))
    w, c = b.random((4, 5)), b.random((1, 5))
    y = b.op("Gemm", [b.input, w, c], alpha=0.5, beta=2.0)
    model = b.model([y])
    graph = rewrite(model, fuse_gemm_layout)
    (node,) = graph.nodes
    assert node.attrs == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(const(graph, node.inputs[1]), 0.5 * inits[w].T)
    np.testing.assert_array_equal(const(graph, node.inputs[2]), 2.0 * inits[c][0])


def test_gemm_trans_a_becomes_a_transpose():
    """Before: Gemm(x (K, M), W (N, K), transA=1, transB=1). Expected: Transpose -> Gemm."""
    b = Builder("x", (4, 3))
    y = b.op("Gemm", [b.input, b.random((5, 4))], transA=1, transB=1)
    graph = rewrite(b.model([y]), fuse_gemm_layout)
    assert ops(graph) == [Op.TRANSPOSE, Op.GEMM]
    assert graph.values[graph.nodes[1].inputs[0]].shape == (3, 4)


def test_matmul_and_bias_add_become_gemm():
    """Before: MatMul(x, W (K, N)) -> Add(b (N,)). Expected: one Gemm(x, W.T, b) writing the
    Add's output."""
    b = Builder("x", (2, 4))
    y = b.op("Add", [b.random((3,)), b.op("MatMul", [b.input, b.random((4, 3))])])
    graph = rewrite(b.model([y]), fuse_gemm_layout)
    assert ops(graph) == [Op.GEMM] and graph.nodes[0].outputs == [y]
    assert graph.values[graph.nodes[0].inputs[1]].shape == (3, 4)
    assert graph.nodes[0].attrs["transB"] == 1


def test_matmul_without_bias_becomes_gemm():
    """Before: MatMul(x, W) -> Relu. Expected: Gemm(x, W.T) -> Relu."""
    b = Builder("x", (2, 4))
    y = b.op("Relu", [b.op("MatMul", [b.input, b.random((4, 3))])])
    graph = rewrite(b.model([y]), fuse_gemm_layout)
    assert ops(graph) == [Op.GEMM, Op.RELU] and len(graph.nodes[0].inputs) == 2


def test_products_that_stay():
    """Before: 3-D MatMul by a constant, MatMul of two activations, Gemm with a full (M, N) C.
    Expected: the MatMuls stay; the Gemm is canonical but keeps C whole."""
    b = Builder("x", (2, 3, 4))
    y = b.op("MatMul", [b.input, b.random((4, 4))])
    z = b.op("MatMul", [y, b.op("Transpose", [y], perm=[0, 2, 1])])
    flat = b.op("Reshape", [z, b.const(np.array([2, 9], np.int64))])
    out = b.op("Gemm", [flat, b.random((9, 2)), b.random((2, 2))])
    graph = rewrite(b.model([out]), fuse_gemm_layout)
    assert ops(graph) == [Op.MATMUL, Op.TRANSPOSE, Op.MATMUL, Op.RESHAPE, Op.GEMM]
    assert graph.values[graph.nodes[-1].inputs[2]].shape == (2, 2)

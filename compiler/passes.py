"""Front-end graph passes: constant folding, identity removal, BatchNorm folding, Gemm layout.

Each pass is `verb_noun(graph) -> graph`: it rewrites a copy and returns it, keeping graph input
and output names, topological order and `Graph.verify` intact. Numerics are unchanged up to
float rounding (tests compare against onnxruntime on the original model).
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Graph, Node, Op, Value
from compiler.reference import run_node

# DequantizeLinear of a constant integer weight is how QDQ models say "this weight is quantized
# with these parameters": folding it to floats would throw that away.
_NOT_FOLDED = frozenset({Op.DEQUANTIZE})
# Host ops whose result is a fresh random draw on every run: folding would freeze one draw.
_RANDOM_ONNX_OPS = frozenset({
    "Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
    "RandomUniformLike",
})


def fresh_name(graph: Graph, base: str) -> str:
    """A value or node name based on `base` that the graph does not use yet."""
    taken = set(graph.values) | {node.name for node in graph.nodes}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def add_const(graph: Graph, base: str, array: np.ndarray) -> str:
    """Add a constant Value under a fresh name and return the name."""
    name = fresh_name(graph, base)
    graph.values[name] = Value(name, array.shape, str(array.dtype), const=array)
    return name


def _const(graph: Graph, name: str) -> np.ndarray | None:
    """The constant data of a value, or None for omitted inputs and non-constants."""
    return graph.values[name].const if name else None


def _is_const(graph: Graph, name: str) -> bool:
    """True when a named input is a constant (omitted optional inputs count as constant)."""
    return not name or graph.values[name].const is not None


def _rename_uses(graph: Graph, old: str, new: str) -> None:
    """Make every node that reads `old` read `new` instead."""
    for node in graph.nodes:
        node.inputs = [new if n == old else n for n in node.inputs]


def drop_unused(graph: Graph) -> None:
    """Delete Values that no node, graph input or graph output refers to."""
    used = set(graph.inputs) | set(graph.outputs)
    for node in graph.nodes:
        used.update(node.inputs)
        used.update(node.outputs)
    for name in [n for n in graph.values if n not in used]:
        del graph.values[name]


def bypass_node(graph: Graph, node: Node) -> bool:
    """Remove a node whose first output equals its first input; False if names forbid it.

    Readers of the output read the input instead. When the output is a graph output, the
    input's producer writes it under the output's name, so graph output names never change; a
    graph input, constant or other graph output feeding a graph output keeps the node.
    """
    src, dst = node.inputs[0], node.outputs[0]
    if dst in graph.outputs:
        producer = graph.producer(src)
        if producer is None or src in graph.outputs:
            return False
        producer.outputs = [dst if n == src else n for n in producer.outputs]
        graph.nodes.remove(node)
        _rename_uses(graph, src, dst)
        value = graph.values.pop(src)
        value.name = dst
        graph.values[dst] = value
        return True
    graph.nodes.remove(node)
    _rename_uses(graph, dst, src)
    del graph.values[dst]
    return True


def fold_constants(graph: Graph) -> Graph:
    """Evaluate every node whose inputs are all constants and replace its outputs by constants.

    DequantizeLinear is kept (its constant integer input carries the model's quantization), and
    so are random host ops. Constants that nothing reads any more are deleted.
    """
    graph = graph.copy()
    for node in list(graph.nodes):
        if (
            node.op in _NOT_FOLDED
            or node.attrs.get("onnx_op") in _RANDOM_ONNX_OPS
            or not all(_is_const(graph, n) for n in node.inputs)
        ):
            continue
        results = run_node(node, [_const(graph, n) for n in node.inputs])
        for name, array in zip(node.outputs, results, strict=True):
            if name:
                graph.values[name].const = array
        graph.nodes.remove(node)
    drop_unused(graph)
    return graph


def _is_identity(graph: Graph, node: Node) -> bool:
    """True when a node returns its input unchanged."""
    attrs = node.attrs
    if node.op in (Op.RESHAPE, Op.FLATTEN):
        return graph.values[node.inputs[0]].shape == graph.values[node.outputs[0]].shape
    if node.op == Op.TRANSPOSE:
        return list(attrs["perm"]) == sorted(attrs["perm"])
    if node.op == Op.CLIP:
        dtype = np.dtype(graph.values[node.inputs[0]].dtype)
        info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
        return attrs["min"] <= info.min and attrs["max"] >= info.max
    if node.op in (Op.MAXPOOL, Op.AVERAGEPOOL):
        return (tuple(attrs["kernel_shape"]) == (1, 1) and tuple(attrs["strides"]) == (1, 1)
                and not any(attrs["pads"]))
    return False


def remove_identities(graph: Graph) -> Graph:
    """Remove nodes that return their input unchanged.

    Those are Reshape and Flatten to the same shape, Transpose by the identity permutation, Clip
    whose bounds cover the whole type, and 1x1 stride-1 unpadded pools. Graph output names stay.
    """
    graph = graph.copy()
    for node in list(graph.nodes):
        if _is_identity(graph, node):
            bypass_node(graph, node)
    return graph


def _foldable_bn(graph: Graph, bn: Node) -> Node | None:
    """The Conv a BatchNormalization can be folded into, or None."""
    conv = graph.producer(bn.inputs[0])
    if (
        conv is None
        or conv.op != Op.CONV
        or bn.inputs[0] in graph.outputs
        or len(graph.consumers(bn.inputs[0])) != 1
        or not all(_is_const(graph, n) for n in conv.inputs[1:] + bn.inputs[1:])
    ):
        return None
    return conv


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold a BatchNormalization that is the only reader of a Conv into the Conv's weights and bias.

    w'[m] = w[m] * s[m] and b'[m] = (b[m] - mean[m]) * s[m] + beta[m], with
    s = gamma / sqrt(var + eps); the Conv then writes the BN's output. New weight and bias
    constants are added (the old ones may be shared). A BN anywhere else is kept.
    """
    graph = graph.copy()
    for bn in [n for n in graph.nodes if n.op == Op.BATCHNORM]:
        conv = _foldable_bn(graph, bn)
        if conv is None:
            continue
        gamma, beta, mean, var = (graph.values[n].const.astype(np.float64) for n in bn.inputs[1:])
        w = graph.values[conv.inputs[1]].const
        bias = _const(graph, conv.inputs[2]) if len(conv.inputs) > 2 else None
        b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
        s = gamma / np.sqrt(var + bn.attrs["epsilon"])
        new_w = (w.astype(np.float64) * s[:, None, None, None]).astype(w.dtype)
        new_b = ((b - mean) * s + beta).astype(w.dtype)
        conv.inputs = [
            conv.inputs[0],
            add_const(graph, f"{conv.name}_w_bn", new_w),
            add_const(graph, f"{conv.name}_b_bn", new_b),
        ]
        del graph.values[conv.outputs[0]]
        conv.outputs = [bn.outputs[0]]
        graph.nodes.remove(bn)
    drop_unused(graph)
    return graph


def _bias_vector(c: np.ndarray, n: int) -> np.ndarray | None:
    """C as an (N,) vector when it broadcasts along rows (scalar, (N,), (1, N)), else None."""
    if c.ndim == 0 or c.size == 1:
        return np.full(n, c.reshape(()), dtype=c.dtype)
    if c.shape in ((n,), (1, n)):
        return c.reshape(n)
    return None


def _canonical_gemm(graph: Graph, node: Node) -> None:
    """Rewrite a Gemm with constant B (and C) in place to x @ W.T + b."""
    a = node.attrs
    x, b_name = node.inputs[:2]
    c_name = node.inputs[2] if len(node.inputs) > 2 else ""
    w = graph.values[b_name].const
    w = (w if a["transB"] else w.T) * np.asarray(a["alpha"], w.dtype)
    inputs = [x, add_const(graph, f"{node.name}_w", np.ascontiguousarray(w))]
    if c_name:
        c = graph.values[c_name].const * np.asarray(a["beta"], w.dtype)
        vector = _bias_vector(c, w.shape[0])
        inputs.append(add_const(graph, f"{node.name}_b", c if vector is None else vector))
    if a["transA"]:
        t_out = fresh_name(graph, f"{x}_t")
        shape = graph.values[x].shape[::-1]
        graph.values[t_out] = Value(t_out, shape, graph.values[x].dtype)
        transpose = Node(fresh_name(graph, f"{node.name}_transA"), Op.TRANSPOSE, [x], [t_out],
                         {"perm": (1, 0)})
        graph.nodes.insert(graph.nodes.index(node), transpose)
        inputs[0] = t_out
    node.inputs = inputs
    node.attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}


def _matmul_to_gemm(graph: Graph, node: Node) -> None:
    """Turn a 2-D MatMul by a constant (K, N) into a Gemm, taking over a following bias Add."""
    node.op = Op.GEMM
    node.attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    readers = graph.consumers(node.outputs[0])
    if len(readers) != 1 or readers[0].op != Op.ADD or node.outputs[0] in graph.outputs:
        return
    add = readers[0]
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    c = _const(graph, other)
    shape = graph.values[node.outputs[0]].shape
    if c is None or _bias_vector(c, shape[1]) is None:
        return
    if graph.values[add.outputs[0]].shape != shape:
        return
    node.inputs.append(other)
    del graph.values[node.outputs[0]]
    node.outputs = add.outputs
    graph.nodes.remove(add)


def fuse_gemm_layout(graph: Graph) -> Graph:
    """Normalize matrix products with constant weights to one form: Gemm y = x @ W.T + b.

    W is a constant (N, K) with alpha folded in, b (optional) a constant (N,) with beta folded
    in (an (M, N) C stays whole), transA becomes an explicit Transpose, and attrs become
    alpha=1, beta=1, transA=0, transB=1. A 2-D MatMul by a constant (K, N) becomes such a Gemm,
    absorbing a following Add of a bias vector. Products whose B is not constant are kept.
    """
    graph = graph.copy()
    for node in list(graph.nodes):
        if node.op == Op.MATMUL:
            a_shape, b_shape = (graph.values[n].shape for n in node.inputs)
            if len(a_shape) != 2 or len(b_shape) != 2 or not _is_const(graph, node.inputs[1]):
                continue
            _matmul_to_gemm(graph, node)
        if node.op == Op.GEMM and all(_is_const(graph, n) for n in node.inputs[1:]):
            _canonical_gemm(graph, node)
    drop_unused(graph)
    return graph

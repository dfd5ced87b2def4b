"""Float reference executor of the IR: numpy kernels per op, host nodes through onnx.reference.

`run_float` is the float ground truth the quantized graph and the accelerator are compared with,
and the source of activation ranges for calibration (`keep=True`). Kernels follow ONNX semantics
for the normalized attributes the frontend writes (see `compiler.frontend.SUPPORTED_OPS`).
Convolutions, matrix products, pools and normalizations accumulate in float64 and round once to
the output type, so the reference is at least as accurate as any float32 runtime it is checked
against.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from compiler.ir import CompileError, Graph, Node, Op

Kernel = Callable[[Node, list], list]


def run_float(
    graph: Graph, inputs: dict[str, np.ndarray], keep: bool = False
) -> dict[str, np.ndarray]:
    """Execute the graph in numpy: the graph outputs, or every non-constant value if `keep`.

    Inputs are converted to the graph's element types; their shapes must match exactly.
    """
    env = {n: v.const for n, v in graph.values.items() if v.const is not None}
    for name in graph.inputs:
        if name not in inputs:
            raise CompileError(f"graph input {name} is missing (got {', '.join(inputs) or 'none'})")
        value = graph.values[name]
        array = np.asarray(inputs[name], dtype=value.dtype)
        if array.shape != value.shape:
            raise CompileError(f"graph input {name} has shape {array.shape}, not {value.shape}")
        env[name] = array
    for node in graph.nodes:
        results = run_node(node, [env[n] if n else None for n in node.inputs])
        for name, array in zip(node.outputs, results, strict=True):
            if not name:
                continue
            value = graph.values[name]
            if array.shape != value.shape or str(array.dtype) != value.dtype:
                raise CompileError(
                    f"node {node.name} ({node.op}) computed {name} as {array.dtype} "
                    f"{array.shape}, but the graph says {value.dtype} {value.shape}"
                )
            env[name] = array
    if keep:
        return {n: a for n, a in env.items() if graph.values[n].const is None}
    return {name: env[name] for name in graph.outputs}


def run_node(node: Node, args: list) -> list[np.ndarray]:
    """Outputs of one node given its input arrays (None for omitted optional inputs)."""
    if node.op not in KERNELS:
        supported = ", ".join(sorted(KERNELS))
        raise CompileError(
            f"node {node.name}: op {node.op} has no float reference; supported: {supported}"
        )
    return KERNELS[node.op](node, args)


def _padded(args: list, count: int) -> list:
    """Kernel arguments with trailing omitted optional inputs as None."""
    return [*args, *[None] * (count - len(args))]


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """Sliding windows of a padded NCHW array as a view of shape (N, C, OH, OW, KH, KW)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _pad(x: np.ndarray, pads, value, extra=(0, 0)) -> np.ndarray:
    """Pad the spatial dims of NCHW by (top, left, bottom, right), plus `extra` at the ends."""
    top, left, bottom, right = pads
    widths = ((0, 0), (0, 0), (top, bottom + extra[0]), (left, right + extra[1]))
    return np.pad(x, widths, constant_values=value)


def conv(node: Node, args: list) -> list[np.ndarray]:
    """Conv (2-D, grouped): cross-correlation of x (N, C, H, W) with w (M, C/group, KH, KW)."""
    x, w, b = _padded(args, 3)
    a = node.attrs
    cols = _windows(_pad(x.astype(np.float64), a["pads"], 0.0), a["kernel_shape"], a["strides"],
                    a["dilations"])
    groups = a["group"]
    cin, cout = x.shape[1] // groups, w.shape[0] // groups
    w64 = w.astype(np.float64)
    # One tensordot per group: (N, OH, OW, M/g) blocks concatenated along M.
    y = np.concatenate([
        np.tensordot(cols[:, g * cin:(g + 1) * cin], w64[g * cout:(g + 1) * cout],
                     axes=([1, 4, 5], [1, 2, 3]))
        for g in range(groups)
    ], axis=-1).transpose(0, 3, 1, 2)
    if b is not None:
        y = y + b.astype(np.float64)[:, None, None]
    return [y.astype(x.dtype)]


def gemm(node: Node, args: list) -> list[np.ndarray]:
    """Gemm: alpha * A' @ B' + beta * C with A', B' optionally transposed."""
    a_, b_, c = _padded(args, 3)
    a = node.attrs
    lhs = a_.T if a["transA"] else a_
    rhs = b_.T if a["transB"] else b_
    y = a["alpha"] * (lhs.astype(np.float64) @ rhs.astype(np.float64))
    if c is not None:
        y = y + a["beta"] * c.astype(np.float64)
    return [y.astype(a_.dtype)]


def matmul(node: Node, args: list) -> list[np.ndarray]:
    """MatMul with numpy (= ONNX) broadcasting and 1-D promotion."""
    a, b = args
    if np.issubdtype(a.dtype, np.floating):
        return [np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)]
    return [np.matmul(a, b)]


def relu(node: Node, args: list) -> list[np.ndarray]:
    """Relu: max(x, 0)."""
    (x,) = args
    return [np.maximum(x, x.dtype.type(0))]


def clip(node: Node, args: list) -> list[np.ndarray]:
    """Clip to [min, max]; when min > max every element becomes max, as ONNX specifies."""
    (x,) = args
    lo, hi = (x.dtype.type(node.attrs[k]) for k in ("min", "max"))
    return [np.minimum(np.maximum(x, lo), hi)]


def add(node: Node, args: list) -> list[np.ndarray]:
    """Add with broadcasting (integers wrap like ONNX's fixed-width types)."""
    a, b = args
    return [np.add(a, b, dtype=a.dtype)]


def pool_geometry(attrs: dict, spatial: tuple[int, int]) -> tuple[tuple, tuple]:
    """Output (H, W) of a 2-D pool and the extra end padding that ceil_mode windows reach into."""
    a = attrs
    out, extra = [], []
    for i in range(2):
        size, k, s, d = spatial[i], a["kernel_shape"][i], a["strides"][i], a["dilations"][i]
        begin, end = a["pads"][i], a["pads"][2 + i]
        span = d * (k - 1) + 1
        n = size + begin + end - span
        count = (-(-n // s) if a["ceil_mode"] else n // s) + 1
        # A ceil_mode window must start inside the input or its left padding (ONNX and PyTorch).
        if a["ceil_mode"] and (count - 1) * s >= size + begin:
            count -= 1
        out.append(count)
        extra.append(max(0, (count - 1) * s + span - (size + begin + end)))
    return tuple(out), tuple(extra)


def maxpool(node: Node, args: list) -> list[np.ndarray]:
    """MaxPool (2-D) with pads, dilations and ceil_mode."""
    (x,) = args
    a = node.attrs
    (oh, ow), extra = pool_geometry(a, x.shape[2:])
    # onnxruntime starts every window at the type's lowest finite value, which is what a
    # window lying wholly in the padding (possible with dilations) returns.
    info = np.finfo if np.issubdtype(x.dtype, np.floating) else np.iinfo
    low = info(x.dtype).min
    xp = _pad(x, a["pads"], low, extra)
    y = _windows(xp, a["kernel_shape"], a["strides"], a["dilations"]).max(axis=(4, 5))
    return [y[:, :, :oh, :ow]]


def averagepool(node: Node, args: list) -> list[np.ndarray]:
    """AveragePool (2-D); the divisor counts pads only with count_include_pad, never overhang."""
    (x,) = args
    a = node.attrs
    (oh, ow), extra = pool_geometry(a, x.shape[2:])
    sums = _windows(_pad(x.astype(np.float64), a["pads"], 0.0, extra), a["kernel_shape"],
                    a["strides"], a["dilations"]).sum(axis=(4, 5))
    ones = np.ones((1, 1, *x.shape[2:]))
    mask = _pad(ones, a["pads"], float(a["count_include_pad"]))
    counts = _windows(_pad(mask, (0, 0, 0, 0), 0.0, extra), a["kernel_shape"], a["strides"],
                      a["dilations"]).sum(axis=(4, 5))
    # A window wholly in the padding (possible with dilations) averages to 0, as in onnxruntime.
    return [(sums / np.maximum(counts, 1))[:, :, :oh, :ow].astype(x.dtype)]


def globalaveragepool(node: Node, args: list) -> list[np.ndarray]:
    """GlobalAveragePool: mean over every spatial axis, kept as size-1 dims."""
    (x,) = args
    axes = tuple(range(2, x.ndim))
    return [x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype)]


def batchnorm(node: Node, args: list) -> list[np.ndarray]:
    """BatchNormalization (inference): (x - mean) / sqrt(var + eps) * scale + bias, on axis 1."""
    x, scale, bias, mean, var = args
    shape = (-1,) + (1,) * (x.ndim - 2)
    s, b, m, v = (t.astype(np.float64).reshape(shape) for t in (scale, bias, mean, var))
    y = (x.astype(np.float64) - m) / np.sqrt(v + node.attrs["epsilon"]) * s + b
    return [y.astype(x.dtype)]


def reshape(node: Node, args: list) -> list[np.ndarray]:
    """Reshape to the resolved target shape."""
    return [args[0].reshape(node.attrs["shape"])]


def flatten(node: Node, args: list) -> list[np.ndarray]:
    """Flatten to 2-D at `axis`."""
    (x,) = args
    axis = node.attrs["axis"]
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


def transpose(node: Node, args: list) -> list[np.ndarray]:
    """Transpose by `perm`."""
    return [np.transpose(args[0], node.attrs["perm"])]


def softmax(node: Node, args: list) -> list[np.ndarray]:
    """Softmax along `axis`, shifted by the maximum for stability."""
    (x,) = args
    axis = node.attrs["axis"]
    e = np.exp(x.astype(np.float64) - x.max(axis=axis, keepdims=True))
    return [(e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)]


def _per_axis(t: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast along `axis` (scalars stay scalars)."""
    if t.ndim == 0 or t.size == 1:
        return t.reshape(())
    shape = [1] * ndim
    shape[axis] = t.size
    return t.reshape(shape)


def quantizelinear(node: Node, args: list) -> list[np.ndarray]:
    """QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), as onnx.reference."""
    x, scale, zp = _padded(args, 3)
    a = node.attrs
    dtype = np.dtype(a["dtype"])
    q = np.rint(x / _per_axis(scale, x.ndim, a["axis"])).astype(np.int64)
    if zp is not None:
        q += _per_axis(zp, x.ndim, a["axis"]).astype(np.int64)
    info = np.iinfo(dtype)
    return [np.clip(q, info.min, info.max).astype(dtype)]


def dequantizelinear(node: Node, args: list) -> list[np.ndarray]:
    """DequantizeLinear: (x - zero_point) * scale, the difference exact as in onnxruntime."""
    x, scale, zp = _padded(args, 3)
    a = node.attrs
    dx = x.astype(np.int64)
    if zp is not None:
        dx = dx - _per_axis(zp, x.ndim, a["axis"]).astype(np.int64)
    y = dx.astype(np.float32) * _per_axis(scale, x.ndim, a["axis"])
    return [y.astype(a["dtype"])]


@functools.lru_cache(maxsize=256)
def host_evaluator(proto: bytes, opsets: tuple, types: tuple) -> ReferenceEvaluator:
    """An onnx.reference evaluator of one serialized NodeProto for the given input types."""
    node = onnx.NodeProto.FromString(proto)
    names = [n for n in dict.fromkeys(node.input) if n]
    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), s)
        for n, (t, s) in zip(names, types, strict=True)
    ]
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
    graph = helper.make_graph([node], "host", inputs, outputs)
    return ReferenceEvaluator(graph, opsets=dict(opsets))


def host(node: Node, args: list) -> list[np.ndarray]:
    """A host node: run its original ONNX node with onnx.reference, inputs matched by position."""
    proto = onnx.NodeProto.FromString(node.attrs["onnx_node"])
    # The IR node drops trailing omitted inputs, so args may be shorter than proto.input.
    feeds = {n: a for n, a in zip(proto.input, args, strict=False) if n}
    types = tuple((str(feeds[n].dtype), feeds[n].shape) for n in dict.fromkeys(feeds))
    evaluator = host_evaluator(node.attrs["onnx_node"], tuple(node.attrs["opsets"].items()), types)
    results = dict(zip(evaluator.output_names, evaluator.run(None, feeds), strict=True))
    return [np.asarray(results[n]) if n else None for n in proto.output]


KERNELS: dict[Op, Kernel] = {
    Op.CONV: conv,
    Op.GEMM: gemm,
    Op.MATMUL: matmul,
    Op.RELU: relu,
    Op.CLIP: clip,
    Op.ADD: add,
    Op.MAXPOOL: maxpool,
    Op.AVERAGEPOOL: averagepool,
    Op.GLOBALAVERAGEPOOL: globalaveragepool,
    Op.BATCHNORM: batchnorm,
    Op.RESHAPE: reshape,
    Op.FLATTEN: flatten,
    Op.TRANSPOSE: transpose,
    Op.SOFTMAX: softmax,
    Op.QUANTIZE: quantizelinear,
    Op.DEQUANTIZE: dequantizelinear,
    Op.HOST: host,
}

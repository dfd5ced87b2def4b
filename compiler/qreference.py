"""Bit-exact integer reference of a quantized graph: the accelerator's arithmetic, in numpy.

`run_integer` executes the integer graph that `compiler.quantize` produces. Integer ops follow
the exact semantics below; QUANTIZE, DEQUANTIZE, shape ops and float host ops use the float
reference's kernels (`compiler.reference.run_node`), so each op has one implementation. Every
rounding shift, multiply and clip goes through `isa.semantics.alu`, the ALU the hardware has.

QCONV (attributes at `compiler.ir.QCONV_ATTRS`), per output channel c::

    acc = wrap_acc(bias[c] + sum x * w)                      exact sum, wrapped like the GEMM core
    y   = MIN(MAX(MULR(RSHR(acc, pre_shift), multiplier[c], post_shift), lo), hi)

where MULR(v, m, n) = wrap_acc(rshr(v * m, n)) with the product exact (the ALU's MULR; the
quantizer's parameters make the wrap a no-op, and the clip is CLIP or MAX and MIN on the ALU).

QADD (an n-ary weighted sum; one input is a plain requantization, e.g. a Relu between two
quantizations of an imported QDQ model)::

    acc = offset + sum_i MUL(x_i, multipliers[i])            each step wrapped to acc_bits (ADD)
    y   = MIN(MAX(RSHR(acc, shift), lo), hi)

QAVGPOOL (AveragePool and GlobalAveragePool; pads contribute nothing to the sum, and `count` is
the window's size with count_include_pad, else its number of in-bounds elements). It runs on the
host (pools of one count everywhere become depthwise QCONVs instead, see `compiler.quantize`):
it divides by `count` exactly and rounds half to even, like ONNX's QuantizeLinear of the float
average (the ALU's shifts divide by powers of two only, and round ties up)::

    sum = sum over the window of (x - input_zero_point)      exact
    y   = min(max(round_half_even(sum * multiplier / (count * 2**shift))
                  + output_zero_point, lo), hi)

QMAXPOOL is MaxPool on the integers (exact: max commutes with a monotone affine map).
The quantizer chooses every parameter so that no intermediate wraps (see `compiler.quantize`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler import reference
from compiler.ir import CompileError, Graph, Node, Op
from isa.formats import AluOp
from isa.packing import wrap
from isa.semantics import alu


def requantize(
    acc: np.ndarray, pre_shift: int, multiplier, post_shift: int, clip, acc_bits: int
) -> np.ndarray:
    """QCONV's epilogue on accumulators: RSHR, MULR, then the clip, as the ALU executes them."""
    y = alu(AluOp.RSHR, acc, np.int64(pre_shift), acc_bits)
    y = alu(AluOp.MULR, y, np.asarray(multiplier, dtype=np.int64), acc_bits, post_shift)
    return _clip(y, clip, acc_bits)


def _clip(y: np.ndarray, clip, acc_bits: int) -> np.ndarray:
    """MAX lo, then MIN hi (what CLIP computes in one step)."""
    lo, hi = clip
    return alu(AluOp.MIN, alu(AluOp.MAX, y, np.int64(lo), acc_bits), np.int64(hi), acc_bits)


def _shift_clip(y: np.ndarray, shift: int, clip, acc_bits: int) -> np.ndarray:
    """The tail of QADD's requantization: rounding shift, then the clip."""
    return _clip(alu(AluOp.RSHR, y, np.int64(shift), acc_bits), clip, acc_bits)


def _sum_pool(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Window sums of NCHW integers: a depthwise convolution with a kernel of ones (exact)."""
    channels = x.shape[1]
    node = Node("sum_pool", Op.CONV, [], [], {
        "kernel_shape": tuple(kernel), "strides": tuple(strides), "pads": tuple(pads),
        "dilations": (1, 1), "group": channels,
    })
    ones = np.ones((channels, 1, *kernel), dtype=np.int64)
    return reference.conv(node, [x, ones])[0]


def window_counts(size, kernel, strides, pads, count_include_pad: bool) -> np.ndarray:
    """The divisor of each average-pool window: its size, or its in-bounds element count."""
    ones = np.ones((1, 1, *size), dtype=np.int64)
    counts = _sum_pool(ones, kernel, strides, pads)[0, 0]
    return np.full_like(counts, int(np.prod(kernel))) if count_include_pad else counts


def qconv(node: Node, args: list, acc_bits: int) -> np.ndarray:
    """QCONV: exact convolution plus bias wrapped to acc_bits, then the ALU requantization."""
    a = node.attrs
    x = args[0].astype(np.int64)
    weights = np.asarray(a["weights"], dtype=np.int64)
    conv = Node(node.name, Op.CONV, [], [], {
        "kernel_shape": weights.shape[2:], "strides": tuple(a["strides"]),
        "pads": tuple(a["pads"]), "dilations": (1, 1), "group": a.get("groups", 1),
    })
    # The float reference accumulates in float64: exact for integer sums below 2**53.
    sums = reference.conv(conv, [x, weights])[0]
    bias = np.asarray(a["bias"], dtype=np.int64).reshape(1, -1, 1, 1)
    acc = wrap(sums + bias, acc_bits)
    multiplier = np.asarray(a["multiplier"], dtype=np.int64).reshape(1, -1, 1, 1)
    return requantize(acc, a["pre_shift"], multiplier, a["post_shift"], a["clip"], acc_bits)


def qadd(node: Node, args: list, acc_bits: int) -> np.ndarray:
    """QADD: offset plus the multiplied inputs, then a rounding shift and the clip."""
    a = node.attrs
    acc = np.int64(a["offset"])
    for x, m in zip(args, a["multipliers"], strict=True):
        acc = alu(AluOp.ADD, acc, alu(AluOp.MUL, x.astype(np.int64), np.int64(m), acc_bits),
                  acc_bits)
    return _shift_clip(acc, a["shift"], a["clip"], acc_bits)


def qavgpool(node: Node, args: list, acc_bits: int) -> np.ndarray:
    """QAVGPOOL: exact window sums of x - zero point, scaled, divided by the window's count."""
    a = node.attrs
    x = args[0].astype(np.int64) - a["input_zero_point"]
    kernel, strides, pads = a["kernel_shape"], a["strides"], a["pads"]
    numerator = _sum_pool(x, kernel, strides, pads) * np.int64(a["multiplier"])
    denominator = window_counts(x.shape[2:], kernel, strides, pads,
                                a["count_include_pad"]) << np.int64(a["shift"])
    quotient = numerator // denominator
    twice_rest = 2 * (numerator - quotient * denominator)
    up = (twice_rest > denominator) | ((twice_rest == denominator) & (quotient % 2 == 1))
    lo, hi = a["clip"]
    return np.clip(quotient + up + a["output_zero_point"], lo, hi)


def qmaxpool(node: Node, args: list, acc_bits: int) -> np.ndarray:
    """QMAXPOOL: MaxPool on the integers (its attributes are MaxPool's)."""
    return reference.maxpool(node, [args[0]])[0]


def im2col(node: Node, args: list, acc_bits: int) -> np.ndarray:
    """IM2COL (compiler.ir): every input window as channels, zeros in the padding."""
    a = node.attrs
    kh, kw = a["kernel"]
    sh, sw = a["strides"]
    top, left, bottom, right = a["pads"]
    x = np.pad(args[0], ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    windows = [x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
               for i in range(kh) for j in range(kw)]
    return np.stack(windows, axis=2).reshape(n, c * kh * kw, oh, ow)


INTEGER_KERNELS = {
    Op.QCONV: qconv, Op.QADD: qadd, Op.QAVGPOOL: qavgpool, Op.QMAXPOOL: qmaxpool,
    Op.IM2COL: im2col,
}


def run_node(graph: Graph, node: Node, args: list, acc_bits: int = 32) -> list[np.ndarray]:
    """Outputs of one node of a quantized graph given its input arrays."""
    if node.op in INTEGER_KERNELS:
        (out,) = node.outputs
        return [INTEGER_KERNELS[node.op](node, args, acc_bits).astype(graph.values[out].dtype)]
    results = reference.run_node(node, args)
    quant = graph.values[node.outputs[0]].quant if node.op == Op.QUANTIZE else None
    if quant is not None and np.dtype(node.attrs["dtype"]).kind == "i":
        # QuantizeLinear saturates to its storage type; Loom's narrower lanes saturate too.
        bits = quant.bits
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        results = [np.clip(results[0], lo, hi).astype(results[0].dtype)]
    return results


# override(node, args) -> the node's outputs, or None to compute them as usual
Override = Callable[[Node, list], list[np.ndarray] | None]


def run_integer(
    graph: Graph, inputs: dict[str, np.ndarray], acc_bits: int = 32, keep: bool = False,
    override: Override | None = None,
) -> dict[str, np.ndarray]:
    """Execute a quantized graph bit-exactly: its outputs, or every non-constant value if keep.

    `override(node, args)` may return a node's outputs instead (e.g. from a simulator running
    its Program, or another runtime's tensors to compare layer by layer); None computes them.
    """
    env = {n: v.const for n, v in graph.values.items() if v.const is not None}
    for name in graph.inputs:
        if name not in inputs:
            raise CompileError(f"graph input {name} is missing (got {', '.join(inputs) or 'none'})")
        env[name] = np.asarray(inputs[name], dtype=graph.values[name].dtype)
    for node in graph.nodes:
        args = [env[n] if n else None for n in node.inputs]
        results = override(node, args) if override else None
        if results is None:
            results = run_node(graph, node, args, acc_bits)
        for name, array in zip(node.outputs, results, strict=True):
            if name:
                env[name] = array
    if keep:
        return {n: a for n, a in env.items() if graph.values[n].const is None}
    return {name: env[name] for name in graph.outputs}

"""Quantization: float graphs and imported QDQ / QOperator models to Loom's integer graph.

Both `quantize_graph` (post-training quantization of a float graph with calibration ranges) and
`from_qdq` (a model that onnxruntime or another tool already quantized) produce the same form:

- The graph maps float inputs to float outputs under the original names: a QUANTIZE node
  (QuantizeLinear) turns each graph input into integers and a DEQUANTIZE node turns each output
  back. Every integer Value carries per-tensor QuantParams: signed `bits`-wide lanes (stored as
  int8), named after the source tensor they hold plus "_q". Graph inputs and outputs keep the
  model's types: an integer input read through a DequantizeLinear is dequantized on the host and
  quantized again (exactly) into Loom's form, and Loom's integers leave as the model's integer
  output type through a DEQUANTIZE and a host QuantizeLinear. Ops on the model's own integer
  tensors, and quantizations into types Loom does not hold whose integers only leave the graph,
  run on the host as the model says.
- Conv, and Gemm/MatMul by constant weights, each with bias and a following Relu/Clip, become one
  QCONV (attributes in `compiler.ir.QCONV_ATTRS`). Gemm/MatMul run as a 1x1 convolution: a
  RESHAPE makes the (N, K) input (N, K, 1, 1), the QCONV has weights (M, K, 1, 1), and a RESHAPE
  turns its (N, M, 1, 1) output back into (N, M). A grouped (or depthwise) Conv is a QCONV with
  `groups` (its weights (M, C / groups, KH, KW) as ONNX has them).
- A residual Add becomes QADD, MaxPool QMAXPOOL (exact semantics in `compiler.qreference`).
  AveragePool and GlobalAveragePool whose divisor is the same for every window (no padding, or
  count_include_pad) become a depthwise QCONV on the accelerator: constant weights w (the
  largest weight, 127 at 8 bits, so the folded output zero point is exact to 1/w of what ones
  would give) requantized by x_scale / (w * count * y_scale). The others, and pools whose sums
  can be exact ties (`_has_ties`), become a QAVGPOOL (exact division, on the host).
  Reshape/Flatten/Transpose run on the integers; Softmax, dilated convolutions and other host
  ops run in float after a DEQUANTIZE.

Requantization: the real multiplier M[c] = x_scale * w_scale[c] / y_scale becomes
multiplier[c] / 2**(pre_shift + post_shift) (`choose_requant`), so the accelerator's ALU does it
with MULR (an exact product with a 16-bit ACC row, then a rounding shift) and a clip, after a
rounding pre-shift only if it must, never overflowing acc_bits for the worst-case accumulator
sum|w[c]| * 2**(bits-1) + |bias[c]|.

Imported zero points: activations of any zero point are stored signed (uint8 q becomes q - 128,
zero point z - 128). The input zero point z_x is folded into the bias
(acc correction -z_x * sum(w[c])); because the accelerator pads with 0 and the model pads with
the real 0 (= z_x), a QCONV with padding and z_x != 0 reads its input through a host Pad node
(value z_x) and has pads 0. QCONV has no output zero point, so z_y is folded into the bias too:
bias += round(z_y * 2**(pre_shift + post_shift) / multiplier[c]), exact up to
multiplier[c] / 2**(pre_shift + post_shift + 1) of a quantum (a channel whose multiplier rounds
to 0 outputs 0, not z_y). Weight zero points are subtracted exactly; weights that then span
more than `wgt_bits` signed bits are split into planes (`weight_planes`). Layers the model leaves in
float, and float ops between a DequantizeLinear and a QuantizeLinear, run in float on the host.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from onnx import helper

from compiler.ir import CompileError, Graph, Node, Op, QuantParams, Value
from compiler.passes import drop_unused, fuse_gemm_layout
from compiler.reference import run_float
from compiler.schedule import ConvShape, block_inputs, default_schedule
from isa.config import HwConfig
from isa.formats import PAD_BITS
from isa.semantics import mulr_max_shift

MULT_BITS = 16  # multipliers are signed 16-bit ALU immediates (or ACC rows holding such values)
MULT_MAX = (1 << (MULT_BITS - 1)) - 1
INT_DTYPE = "int8"  # storage of activations and weights of up to 8 bits
ACTIVATIONS = (Op.RELU, Op.CLIP)
SHAPE_OPS = (Op.RESHAPE, Op.FLATTEN, Op.TRANSPOSE)
QOPERATORS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


# -- calibration ---------------------------------------------------------------------------------


def calibrate(graph: Graph, samples: list[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(min, max) of every float activation over the samples, from the float reference."""
    if not samples:
        raise CompileError("calibration needs at least one input sample")
    ranges: dict[str, tuple[float, float]] = {}
    for sample in samples:
        for name, array in run_float(graph, sample, keep=True).items():
            if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
                continue
            lo, hi = float(array.min()), float(array.max())
            if name in ranges:
                lo, hi = min(lo, ranges[name][0]), max(hi, ranges[name][1])
            ranges[name] = (lo, hi)
    return ranges


# -- requantization parameters -----------------------------------------------------------------


class Requant(NamedTuple):
    """QCONV requantization: y = rshr(rshr(acc, pre_shift) * multiplier[c], post_shift)."""

    pre_shift: int
    multiplier: np.ndarray
    post_shift: int


def rshr_bound(bound, shift: int) -> np.ndarray:
    """The largest |rshr(acc, shift)| over |acc| <= bound (rounding adds half a step)."""
    bound = np.asarray(bound, dtype=np.int64)
    return bound if shift <= 0 else (bound + (1 << (shift - 1))) >> shift


def _fixed_point(
    reals: np.ndarray, acc_bits: int, bound: Callable[[np.ndarray, int], int],
    max_shift: int | None = None,
) -> tuple[np.ndarray, int] | None:
    """Multipliers round(reals * 2**shift) for the largest shift in [0, max_shift] (default
    acc_bits) that keeps each |multiplier| <= MULT_MAX and bound(multipliers, shift) <
    2**(acc_bits-1); None if none does."""
    limit = 1 << (acc_bits - 1)
    top = acc_bits if max_shift is None else max_shift
    largest = float(np.abs(reals).max())
    # Shifts above the one where the largest multiplier reaches 16 bits cannot fit: skip them.
    start = top if largest == 0 else int(
        min(top, max(0.0, np.floor(np.log2((MULT_MAX + 0.5) / largest)) + 1)))
    for shift in range(start, -1, -1):
        ms = np.floor(reals * 2.0**shift + 0.5).astype(np.int64)
        if np.abs(ms).max() <= MULT_MAX and bound(ms, shift) < limit:
            return ms, shift
    return None


def requant_error(rq: Requant, real_multiplier, acc_bound, out_magnitude: float) -> float:
    """Worst-case error in output quanta of `rq` against acc * real_multiplier before the final
    rounding (which adds at most half a quantum), over |acc| <= acc_bound[c] with results up to
    out_magnitude: rounding acc by pre_shift, plus the multiplier's own error."""
    real = np.atleast_1d(np.asarray(real_multiplier, dtype=np.float64))
    bound = np.broadcast_to(np.asarray(acc_bound, dtype=np.float64), real.shape)
    implemented = np.abs(rq.multiplier) / 2.0 ** (rq.pre_shift + rq.post_shift)
    step = 2.0 ** (rq.pre_shift - 1) if rq.pre_shift else 0.0
    reach = np.minimum(bound, np.divide(out_magnitude, real, out=np.full_like(real, np.inf),
                                        where=real > 0))
    return float((step * implemented + reach * np.abs(implemented - real)).max())


def choose_requant(real_multiplier, acc_bound, acc_bits: int, out_magnitude: float) -> Requant:
    """Requantization of accumulators bounded by `acc_bound` (per channel) by `real_multiplier`.

    The accelerator multiplies with MULR, whose product is exact, so only the result must fit:
    candidates are every pre_shift with, as post_shift, the largest in [0, acc_bits + 15] (MULR's
    shifts) that keeps the multipliers in 16 signed bits and guarantees
    |rshr(rshr(acc, pre_shift) * multiplier[c], post_shift)| < 2**(acc_bits-1) for every
    |acc| <= acc_bound[c]. A pre_shift only loses accumulator bits unless the multipliers do not
    fill 16 bits without it; the choice is the candidate of least `requant_error` (results up to
    out_magnitude quanta), the smaller pre_shift on ties, so it is almost always 0.
    Each multiplier is its real one rounded to a multiple of 2**-(pre_shift + post_shift).
    """
    real = np.atleast_1d(np.asarray(real_multiplier, dtype=np.float64))
    bound = np.broadcast_to(np.asarray(acc_bound, dtype=np.int64), real.shape)
    if bound.max() >= 1 << (acc_bits - 1):
        raise CompileError(
            f"the worst-case accumulator {bound.max()} does not fit {acc_bits} bits: "
            f"use a config with wider acc_bits or narrower inputs/weights"
        )
    best: tuple[float, Requant] | None = None
    for pre in range(acc_bits + 1):
        shifted = rshr_bound(bound, pre)
        found = _fixed_point(
            real * 2.0**pre, acc_bits,
            lambda ms, post, s=shifted: int(rshr_bound(s * np.abs(ms), post).max()),
            mulr_max_shift(acc_bits),
        )
        if found is None:
            continue
        rq = Requant(pre, *found)
        error = requant_error(rq, real, bound, out_magnitude)
        if best is None or error < best[0]:
            best = (error, rq)
        if int(np.abs(rq.multiplier).max()).bit_length() == MULT_BITS - 1:
            break  # the multipliers are full: a larger pre_shift only loses accumulator bits
    if best is None:
        raise CompileError(
            f"no 16-bit multiplier represents the scale ratio {real.max():.3g} without overflow "
            f"in {acc_bits} bits: the output scale is too small for its accumulator"
        )
    return best[1]


# -- shared building blocks ----------------------------------------------------------------------


@contextmanager
def _at(node: Node):
    """Prefix CompileErrors raised inside with the node they concern."""
    try:
        yield
    except CompileError as exc:
        if str(exc).startswith("node "):
            raise
        raise CompileError(f"node {node.name} ({node.op}): {exc}") from None


def _scalar(array) -> float:
    """The single element of a per-tensor scale or zero point."""
    return float(np.asarray(array).reshape(-1)[0])


def weight_planes(weights: np.ndarray, bits: int) -> list[np.ndarray]:
    """Weights split into planes of signed `bits`-wide integers whose sum is `weights`.

    One plane when they fit. Otherwise each plane takes what still fits of the rest (clipped to
    the signed range), so every plane has the sign of the weight and the planes' absolute values
    add up to the weight's: the accumulator bound of the sum is that of the weights. A
    convolution by the planes over its input repeated along the channels is the convolution by
    the weights, exactly (asymmetric imported weights: q - zero point spans up to 2**bits - 1).
    """
    lo, hi = _signed_range(bits)
    planes, rest = [], weights.astype(np.int64)
    while not planes or rest.any():
        plane = np.clip(rest, lo, hi)
        planes.append(plane)
        rest = rest - plane
    return planes


def _signed_range(bits: int) -> tuple[int, int]:
    """The integers of a signed `bits`-wide lane."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _act_clip(acts: list[Node], yq: QuantParams, clip: tuple[int, int]) -> tuple[int, int]:
    """Narrow an output clip by the Relu/Clip nodes fused into the op (real 0 is zero_point)."""
    lo, hi = clip
    scale, zero = _scalar(yq.scale), int(_scalar(yq.zero_point))
    for act in acts:
        low, high = (0.0, np.inf) if act.op == Op.RELU else (act.attrs["min"], act.attrs["max"])
        # Quantization is monotone, so clipping the real value then rounding is clipping the
        # rounded value to the rounded bounds.
        lo = max(lo, zero + int(np.rint(np.clip(low / scale, lo - zero, hi - zero))))
        hi = min(hi, zero + int(np.rint(np.clip(high / scale, lo - zero, hi - zero))))
    return lo, hi


def _per_tensor(scale: float, zero_point: int, bits: int) -> QuantParams:
    """Per-tensor activation QuantParams (signed integers)."""
    return QuantParams(np.asarray(scale, dtype=np.float32), np.asarray(zero_point, np.int64), bits)


class _Builder:
    """The integer graph under construction from a source graph: values, constants and nodes."""

    def __init__(self, src: Graph, cfg: HwConfig) -> None:
        self.src, self.cfg = src, cfg
        values = {n: copy.deepcopy(src.values[n]) for n in src.inputs}
        self.graph = Graph(values, [], list(src.inputs), list(src.outputs), src.name)
        self.qname: dict[str, str] = {}  # source value -> its integers in the new graph
        self.floats: set[str] = set(src.inputs)  # source values present as floats
        self.taken = set(src.values)  # source values keep their names as floats

    def fresh(self, base: str) -> str:
        """A name that no source value and no new value or node uses."""
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """A new constant Value."""
        name = self.fresh(base)
        self.graph.values[name] = Value(name, array.shape, str(array.dtype), const=array)
        return name

    def int_value(self, base: str, shape, quant: QuantParams) -> str:
        """A new integer activation Value."""
        name = self.fresh(base)
        self.graph.values[name] = Value(name, tuple(shape), INT_DTYPE, quant=quant)
        return name

    def quant(self, name: str) -> QuantParams:
        """The QuantParams of a new integer Value."""
        return self.graph.values[name].quant

    def emit(self, op: Op, base: str, inputs: list[str], outputs: list[str], attrs: dict) -> Node:
        """Append a node under a fresh name."""
        node = Node(self.fresh(base), op, inputs, outputs, attrs)
        self.graph.nodes.append(node)
        return node

    def _qdq_consts(self, quant: QuantParams, base: str) -> list[str]:
        """Scale and zero-point constants of a Q/DQ node for per-tensor QuantParams."""
        scale = np.asarray(quant.scale, dtype=np.float32).reshape(())
        zero = np.asarray(quant.zero_point).reshape(()).astype(INT_DTYPE)
        return [self.const(f"{base}_scale", scale), self.const(f"{base}_zero_point", zero)]

    def quantize(self, src_name: str, quant: QuantParams, base: str) -> str:
        """QUANTIZE a float value present in the new graph into integers named after `base`."""
        shape = self.graph.values[src_name].shape
        out = self.int_value(f"{base}_q", shape, quant)
        self.emit(Op.QUANTIZE, f"{base}_quantize", [src_name, *self._qdq_consts(quant, out)],
                  [out], {"axis": 1, "dtype": INT_DTYPE})
        return out

    def float_of(self, src_name: str) -> str:
        """A source value as a float in the new graph (dequantized or copied when needed)."""
        if src_name in self.floats or not src_name:
            return src_name
        value = self.src.values[src_name]
        if value.const is not None:
            self.graph.values[src_name] = copy.deepcopy(value)
        elif src_name in self.qname:
            q = self.qname[src_name]
            integer = not np.issubdtype(np.dtype(value.dtype), np.floating)
            real = self.fresh(f"{src_name}_float") if integer else src_name
            dtype = "float32" if integer else value.dtype
            self.graph.values[real] = Value(real, value.shape, dtype)
            self.emit(Op.DEQUANTIZE, f"{src_name}_dequantize",
                      [q, *self._qdq_consts(self.quant(q), q)], [real],
                      {"axis": 1, "dtype": dtype})
            if integer:  # the model's own integers (uint8 ones are stored q - 128): exact
                self.graph.values[src_name] = Value(src_name, value.shape, value.dtype)
                quant = self.quant(q)
                zero = int(_scalar(quant.zero_point)) + (128 if value.dtype == "uint8" else 0)
                scale = self.const(f"{src_name}_scale", np.asarray(quant.scale, np.float32))
                zero = self.const(f"{src_name}_zero_point", np.asarray(zero, value.dtype))
                self.onnx_host("QuantizeLinear", src_name, [real, scale, zero], src_name)
        else:
            raise CompileError(f"value {src_name} is neither a float nor a quantized tensor")
        self.floats.add(src_name)
        return src_name

    def host(self, node: Node) -> None:
        """Copy a node that runs in float on the host, dequantizing its inputs as needed."""
        inputs = [self.float_of(n) for n in node.inputs]
        for out in node.outputs:
            if out:
                self.graph.values[out] = copy.deepcopy(self.src.values[out])
                self.floats.add(out)
        self.graph.nodes.append(Node(self.fresh(node.name), node.op, inputs, list(node.outputs),
                                     copy.deepcopy(node.attrs), node.target))

    def same_quant(self, node: Node, op: Op, x: str) -> str:
        """An op exact on integers (shape ops, MaxPool): output quantized like its input."""
        shape = self.src.values[node.outputs[0]].shape
        out = self.int_value(f"{node.outputs[0]}_q", shape, self.quant(x))
        self.emit(op, node.name, [x], [out], copy.deepcopy(node.attrs))
        self.qname[node.outputs[0]] = out
        return out

    def pad(self, base: str, x: str, pads, value: int) -> str:
        """A host Pad of an integer NCHW value by (top, left, bottom, right) with `value`."""
        top, left, bottom, right = pads
        n, c, h, w = self.graph.values[x].shape
        out = self.int_value(f"{x}_padded", (n, c, h + top + bottom, w + left + right),
                             self.quant(x))
        widths = self.const(f"{out}_pads", np.array([0, 0, top, left, 0, 0, bottom, right]))
        fill = self.const(f"{out}_value", np.array(value, dtype=INT_DTYPE))
        self.onnx_host("Pad", base, [x, widths, fill], out, mode="constant")
        return out

    def repeat_channels(self, base: str, x: str, times: int) -> str:
        """A host Concat of an integer NCHW value with itself along the channels."""
        n, c, h, w = self.graph.values[x].shape
        out = self.int_value(f"{x}_x{times}", (n, c * times, h, w), self.quant(x))
        self.onnx_host("Concat", base, [x] * times, out, axis=1)
        return out

    def onnx_host(self, op_type: str, base: str, inputs: list[str], out: str, **attrs) -> None:
        """A HOST node running the ONNX op (opset 18) with onnx.reference."""
        proto = helper.make_node(op_type, inputs, [out], **attrs)
        self.emit(Op.HOST, f"{base}_{op_type.lower()}", inputs, [out], {
            "onnx_op": op_type, "onnx_domain": "", "onnx_node": proto.SerializeToString(),
            "opsets": {"": 18}, "fallback": False,
        })

    def qconv(
        self, name: str, out: str, x: str, weights: np.ndarray, w_scale: np.ndarray,
        bias: np.ndarray, shape, yq: QuantParams, clip: tuple[int, int], strides, pads,
        groups: int = 1,
    ) -> str:
        """Emit a QCONV of integer weights (M, C / groups, KH, KW) and int bias (M,); return its
        output."""
        xq = self.quant(x)
        zx, zy = int(_scalar(xq.zero_point)), int(_scalar(yq.zero_point))
        weights = weights.astype(np.int64)
        bias = bias.astype(np.int64) - zx * weights.sum(axis=(1, 2, 3))
        if zx and any(pads):
            x, pads = self.pad(name, x, pads, zx), (0, 0, 0, 0)
        planes = weight_planes(weights, self.cfg.wgt_bits)
        if len(planes) > 1 and groups > 1:
            raise CompileError(f"grouped weights span more than {self.cfg.wgt_bits} signed bits "
                               f"(asymmetric zero point); Loom splits only groups=1 weights "
                               f"into planes: requantize them symmetric")
        if len(planes) > 1:
            warnings.warn(f"node {name}: its weights span more than {self.cfg.wgt_bits} signed "
                          f"bits (asymmetric zero point); computed exactly as {len(planes)} "
                          f"weight planes over a repeated input ({len(planes)}x the MACs)",
                          stacklevel=2)
            x = self.repeat_channels(name, x, len(planes))
            weights = np.concatenate(planes, axis=1)
        real = _scalar(xq.scale) * w_scale.astype(np.float64) / _scalar(yq.scale)
        reach = np.abs(weights).sum(axis=(1, 2, 3)) * (1 << (xq.bits - 1))
        span = max(abs(clip[0] - zy), abs(clip[1] - zy))  # the largest result, in quanta
        fold = np.zeros_like(bias)
        for _ in range(8):  # the folded z_y changes the bound, which may change the shifts
            rq = choose_requant(real, reach + np.abs(bias + fold), self.cfg.acc_bits, span)
            ms = rq.multiplier
            safe = np.where(ms == 0, 1, ms)
            total = 2.0 ** (rq.pre_shift + rq.post_shift)
            new = np.where(ms == 0, 0, np.floor(zy * total / safe + 0.5)).astype(np.int64)
            if np.array_equal(new, fold):
                break
            fold = new
        else:
            raise CompileError("folding the output zero point into the bias does not settle")
        out = self.int_value(f"{out}_q", shape, yq)
        self.emit(Op.QCONV, name, [x], [out], {
            "weights": weights.astype(INT_DTYPE), "bias": bias + fold,
            "strides": tuple(int(s) for s in strides), "pads": tuple(int(p) for p in pads),
            "pre_shift": rq.pre_shift, "multiplier": rq.multiplier, "post_shift": rq.post_shift,
            "clip": (int(clip[0]), int(clip[1])), "groups": int(groups),
        })
        return out

    def qgemm(
        self, name: str, out: str, x: str, weights: np.ndarray, w_scale: np.ndarray,
        bias: np.ndarray, shape, yq: QuantParams, clip: tuple[int, int],
    ) -> str:
        """Emit y = x @ weights.T + bias (weights (M, K)) as a 1x1 QCONV between reshapes."""
        n, k = self.graph.values[x].shape
        m = weights.shape[0]
        x4 = self.int_value(f"{x}_nchw", (n, k, 1, 1), self.quant(x))
        self.emit(Op.RESHAPE, f"{name}_to_nchw", [x], [x4], {"shape": (n, k, 1, 1)})
        y4 = self.qconv(name, f"{out}_nchw", x4, weights.reshape(m, k, 1, 1), w_scale, bias,
                        (n, m, 1, 1), yq, clip, (1, 1), (0, 0, 0, 0))
        y = self.int_value(f"{out}_q", shape, yq)
        self.emit(Op.RESHAPE, f"{name}_to_2d", [y4], [y], {"shape": tuple(shape)})
        return y

    def qadd(self, name: str, out: str, xs: list[str], shape, yq: QuantParams, clip) -> str:
        """Emit a QADD: the weighted sum of integer inputs requantized to yq (one input is a
        plain requantization)."""
        qs = [self.quant(x) for x in xs]
        real = np.array([_scalar(q.scale) for q in qs]) / _scalar(yq.scale)
        zeros = [int(_scalar(q.zero_point)) for q in qs]
        zy = int(_scalar(yq.zero_point))
        found = _fixed_point(real, self.cfg.acc_bits, lambda ms, shift: sum(
            abs(int(m)) << q.bits for m, q in zip(ms, qs, strict=True)) + (abs(zy) << shift))
        if found is None:
            raise CompileError(f"no 16-bit multipliers represent the scale ratios {real}")
        ms, shift = found
        offset = (zy << shift) - sum(int(m) * z for m, z in zip(ms, zeros, strict=True))
        out = self.int_value(f"{out}_q", shape, yq)
        self.emit(Op.QADD, name, xs, [out], {
            "multipliers": ms, "shift": shift, "offset": offset,
            "clip": (int(clip[0]), int(clip[1])),
        })
        return out

    def qavgpool(
        self, name: str, out: str, x: str, shape, yq: QuantParams, clip, kernel, strides, pads,
        count_include_pad: int,
    ) -> str:
        """Emit an average pool (a GlobalAveragePool is a window over the whole image): a
        depthwise QCONV of constant weights when every window has the same divisor, no sum is
        an exact tie and the accelerator can run it, else a QAVGPOOL on the host."""
        xq = self.quant(x)
        n, channels, height, width = self.graph.values[x].shape
        count = int(np.prod(kernel))
        pads = tuple(int(p) for p in pads)
        ratio = _scalar(xq.scale) / (count * _scalar(yq.scale))
        uniform = count_include_pad or not any(pads)
        geometry = ((n, channels, height, width), pads)
        if int(_scalar(xq.zero_point)):  # `qconv` pads on the host with the zero point
            top, left, bottom, right = pads
            geometry = ((n, channels, height + top + bottom, width + left + right), (0,) * 4)
        if uniform and not _has_ties(ratio, count, xq.bits) and _accelerable(
            self.cfg, geometry[0], tuple(kernel), tuple(strides), geometry[1],
        ):
            weight = (1 << (self.cfg.wgt_bits - 1)) - 1
            weights = np.full((channels, 1, *kernel), weight, dtype=np.int64)
            w_scale = np.full(channels, 1.0 / (count * weight))
            return self.qconv(name, out, x, weights, w_scale, np.zeros(channels, np.int64), shape,
                              yq, clip, strides, pads, groups=channels)
        real = np.array([_scalar(xq.scale) / _scalar(yq.scale)])
        # A host op: the int64 product sum * multiplier cannot overflow, any shift will do.
        ms, shift = _fixed_point(real, self.cfg.acc_bits, lambda ms, shift: 0)
        out = self.int_value(f"{out}_q", shape, yq)
        self.emit(Op.QAVGPOOL, name, [x], [out], {
            "kernel_shape": tuple(int(k) for k in kernel), "strides": tuple(strides),
            "pads": tuple(pads), "count_include_pad": int(count_include_pad),
            "input_zero_point": int(_scalar(xq.zero_point)), "multiplier": int(ms[0]),
            "shift": shift, "output_zero_point": int(_scalar(yq.zero_point)),
            "clip": (int(clip[0]), int(clip[1])),
        })
        return out

    def finish(self) -> Graph:
        """Give every graph output under its name in its type, drop nodes nothing reads (the
        quantization of an input only host ops read); verify and return the graph."""
        for name in self.src.outputs:
            self.float_of(name)
        read, live = set(self.graph.outputs), []
        for node in reversed(self.graph.nodes):
            if read.intersection(node.outputs):
                live.append(node)
                read.update(node.inputs)
        self.graph.nodes = live[::-1]
        drop_unused(self.graph)
        self.graph.verify()
        return self.graph


def _has_ties(ratio: float, count: int, bits: int) -> bool:
    """True when a window sum s (|s| < count * 2**bits) puts s * ratio exactly halfway between
    two integers. The exact pool (and onnxruntime) rounds such ties to even, the ALU's MULR up;
    with the same scale in and out and an even window that is 1 element in 8, so such a pool
    stays on the host."""
    real = np.arange(count << bits) * ratio
    return bool((np.abs(real % 1.0 - 0.5) <= 1e-9 * np.maximum(real, 1.0)).any())


def _accelerable(cfg: HwConfig, x_shape, kernel, strides, pads) -> bool:
    """True when a depthwise convolution of this geometry has a schedule on `cfg` (a global
    pool over a large image may not fit the buffers)."""
    n, c, h, w = x_shape
    if max(pads) >= 1 << PAD_BITS:
        return False
    blocks = block_inputs(c, c, c, cfg.block_in, cfg.block_out)
    shape = ConvShape(-(-n // cfg.batch), -(-c // cfg.block_in), -(-c // cfg.block_out), h, w,
                      kernel, strides, pads, blocks)
    try:
        default_schedule(cfg, shape)
    except ValueError:
        return False
    return True


def _window_attrs(node: Node, x_shape) -> tuple[tuple, tuple, tuple, int] | None:
    """kernel, strides, pads, count_include_pad of an average pool QAVGPOOL can run, else None."""
    if node.op == Op.GLOBALAVERAGEPOOL:
        return tuple(x_shape[2:]), (1, 1), (0, 0, 0, 0), 0
    a = node.attrs
    if a["ceil_mode"] or tuple(a["dilations"]) != (1, 1):
        return None
    return tuple(a["kernel_shape"]), tuple(a["strides"]), tuple(a["pads"]), a["count_include_pad"]


def _canonical_gemm(graph: Graph, node: Node) -> bool:
    """True for a Gemm in `fuse_gemm_layout`'s form x @ W.T + b with a bias vector (or none)."""
    a = node.attrs
    if (a["alpha"], a["beta"], a["transA"], a["transB"]) != (1.0, 1.0, 0, 1):
        return False
    rows = graph.values[node.inputs[1]].shape[0]
    return len(node.inputs) < 3 or graph.values[node.inputs[2]].shape == (rows,)


def _conv_runs_on_qconv(node: Node) -> bool:
    """True for a Conv that QCONV can express (any groups, no dilation)."""
    return tuple(node.attrs["dilations"]) == (1, 1)


# -- post-training quantization of float graphs --------------------------------------------------


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]], cfg: HwConfig) -> Graph:
    """Rewrite a float graph into Loom's integer graph for `cfg`, with scales from `ranges`.

    Activations are symmetric per tensor with signed cfg.inp_bits (scale = max|range| / qmax,
    qmax = 2**(bits-1) - 1, values in [-qmax, qmax], [0, qmax] after a fused Relu); weights are
    symmetric per output channel with signed cfg.wgt_bits, biases int with scale
    x_scale * w_scale[c]. Conv/Gemm (+ bias, + Relu/Clip) becomes QCONV, Add (+ Relu) QADD,
    pools QMAXPOOL/QAVGPOOL, shape ops run on integers, other ops in float on the host.
    Matrix products are first normalized by `fuse_gemm_layout`.
    """
    return _FloatQuantizer(fuse_gemm_layout(graph), ranges, cfg).run()


class _FloatQuantizer:
    """Post-training quantization of one float graph."""

    def __init__(self, src: Graph, ranges: dict, cfg: HwConfig) -> None:
        self.src, self.ranges, self.cfg = src, ranges, cfg
        self.b = _Builder(src, cfg)
        self.qmax = (1 << (cfg.inp_bits - 1)) - 1
        self.fused: set[str] = set()

    def run(self) -> Graph:
        """Quantize node by node, fusing activations into the op before them."""
        for node in self.src.nodes:
            if node.name in self.fused:
                continue
            with _at(node):
                self._node(node)
        return self.b.finish()

    def _quant(self, name: str) -> QuantParams:
        """Symmetric per-tensor QuantParams of an activation from its calibrated range."""
        if name not in self.ranges:
            raise CompileError(f"no calibration range for {name}: calibrate this graph first")
        lo, hi = self.ranges[name]
        amax = max(abs(lo), abs(hi))
        return _per_tensor(amax / self.qmax if amax > 0 else 1.0, 0, self.cfg.inp_bits)

    def _int(self, name: str) -> str:
        """The integers of a source value, quantizing a float one on first use."""
        if name in self.b.qname:
            return self.b.qname[name]
        self.b.qname[name] = self.b.quantize(self.b.float_of(name), self._quant(name), name)
        return self.b.qname[name]

    def _fused_activation(self, name: str) -> Node | None:
        """The Relu/Clip that is the only reader of `name`, to fuse into its producer."""
        readers = self.src.consumers(name)
        if len(readers) == 1 and readers[0].op in ACTIVATIONS and name not in self.src.outputs:
            return readers[0]
        return None

    def _output(self, node: Node) -> tuple[str, QuantParams, tuple[int, int]]:
        """Output name (after a fused activation), QuantParams and clip of an integer op."""
        act = self._fused_activation(node.outputs[0])
        acts = [act] if act is not None else []
        if act is not None:
            self.fused.add(act.name)
        out = acts[-1].outputs[0] if acts else node.outputs[0]
        yq = self._quant(out)
        return out, yq, _act_clip(acts, yq, (-self.qmax, self.qmax))

    def _node(self, node: Node) -> None:
        """Rewrite one source node."""
        b, op, src = self.b, node.op, self.src
        if op in (Op.QUANTIZE, Op.DEQUANTIZE) or node.attrs.get("onnx_op") in QOPERATORS:
            raise CompileError("the model is already quantized: import it with from_qdq")
        consts = [bool(n) and src.values[n].const is not None for n in node.inputs]
        data = [src.values[n] for n, c in zip(node.inputs, consts, strict=True) if n and not c]
        if any(not np.issubdtype(np.dtype(v.dtype), np.floating) for v in data):
            b.host(node)  # integer tensors of the model itself: calibration gives them no scale
            return
        conv = op == Op.CONV and _conv_runs_on_qconv(node)
        gemm = op == Op.GEMM and not consts[0] and _canonical_gemm(src, node)
        if (conv or gemm) and all(consts[1:]):
            self._conv(node)
        elif op == Op.ADD and not any(consts):
            out, yq, clip = self._output(node)
            xs = [self._int(n) for n in node.inputs]
            b.qname[out] = b.qadd(node.name, out, xs, src.values[out].shape, yq, clip)
        elif op == Op.MAXPOOL:
            b.same_quant(node, Op.QMAXPOOL, self._int(node.inputs[0]))
        elif op in (Op.AVERAGEPOOL, Op.GLOBALAVERAGEPOOL) and (
            window := _window_attrs(node, src.values[node.inputs[0]].shape)
        ):
            out, yq, clip = self._output(node)
            x = self._int(node.inputs[0])
            b.qname[out] = b.qavgpool(node.name, out, x, src.values[out].shape, yq, clip,
                                      *window)
        elif op in SHAPE_OPS and node.inputs[0] in b.qname:
            b.same_quant(node, op, b.qname[node.inputs[0]])
        elif op in ACTIVATIONS and node.inputs[0] in b.qname:
            x = b.qname[node.inputs[0]]
            clip = _act_clip([node], b.quant(x), (-self.qmax, self.qmax))
            shape = src.values[node.outputs[0]].shape
            b.qname[node.outputs[0]] = b.qadd(node.name, node.outputs[0], [x], shape,
                                              b.quant(x), clip)
        else:
            b.host(node)

    def _conv(self, node: Node) -> None:
        """Conv or canonical Gemm (x @ W.T + b) with constant weights to a QCONV."""
        src, b = self.src, self.b
        w = src.values[node.inputs[1]].const.astype(np.float64)
        bias = (src.values[node.inputs[2]].const.astype(np.float64) if len(node.inputs) > 2
                else np.zeros(w.shape[0]))
        qmax_w = (1 << (self.cfg.wgt_bits - 1)) - 1
        amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        # An all-zero channel may take any scale; 1 keeps its bias scale sensible.
        w_scale = np.where(amax > 0, amax / qmax_w, 1.0).astype(np.float32)
        per_channel = w_scale.reshape(-1, *([1] * (w.ndim - 1))).astype(np.float64)
        weights = np.clip(np.rint(w / per_channel), -qmax_w, qmax_w).astype(np.int64)
        x = self._int(node.inputs[0])
        out, yq, clip = self._output(node)
        x_scale = _scalar(b.quant(x).scale)
        bias_q = np.rint(bias / (x_scale * w_scale.astype(np.float64))).astype(np.int64)
        shape = src.values[out].shape
        if node.op == Op.GEMM:
            b.qname[out] = b.qgemm(node.name, out, x, weights, w_scale, bias_q, shape, yq,
                                   clip)
        else:
            a = node.attrs
            b.qname[out] = b.qconv(node.name, out, x, weights, w_scale, bias_q, shape, yq,
                                   clip, a["strides"], a["pads"], a["group"])


# -- imported quantized models ------------------------------------------------------------------


@dataclass
class _Pending:
    """A float op on quantized inputs whose output quantization its QuantizeLinear will give."""

    node: Node
    acts: list[Node] = field(default_factory=list)


def from_qdq(graph: Graph, cfg: HwConfig | None = None) -> Graph:
    """Rewrite an imported QDQ or QOperator model into Loom's integer graph, keeping its scales.

    QuantizeLinear/DequantizeLinear pairs around Conv/Gemm/MatMul (+ Relu/Clip), Add,
    AveragePool/GlobalAveragePool, MaxPool and shape ops become QCONV/QADD/QAVGPOOL/QMAXPOOL and
    integer shape ops; a Relu/Clip between two quantizations becomes a one-input QADD.
    QLinearConv, QLinearMatMul, and ConvInteger/MatMulInteger followed by Cast, Mul by a
    constant scale and optionally Add of a constant bias, are first rewritten into QDQ form.
    Zero points are handled as the module docstring says; quantized ops whose pattern Loom
    cannot express, and precisions wider than `cfg`, raise CompileError. Bare ConvInteger and
    MatMulInteger (no static scale) stay host nodes.
    """
    return _QdqImporter(_expand_qoperators(graph), cfg or HwConfig()).run()


class _QdqImporter:
    """Conversion of one QDQ-form graph."""

    def __init__(self, src: Graph, cfg: HwConfig) -> None:
        self.src, self.cfg = src, cfg
        self.b = _Builder(src, cfg)
        self.weights: dict[str, Node] = {}  # float value -> DequantizeLinear of a constant
        self.pending: dict[str, _Pending] = {}

    def run(self) -> Graph:
        """Convert node by node; a float op on quantized inputs waits for its QuantizeLinear."""
        for node in self.src.nodes:
            with _at(node):
                self._node(node)
        for name in self.src.outputs:
            if name in self.pending:
                raise CompileError(f"graph output {name} is the unquantized output of node "
                                   f"{self.pending[name].node.name}; Loom needs a QuantizeLinear")
        return self.b.finish()

    def _const(self, name: str) -> np.ndarray | None:
        """Constant data of a source value (None when omitted or not constant)."""
        return self.src.values[name].const if name else None

    def _qparams(self, node: Node) -> QuantParams:
        """Signed per-tensor QuantParams of a Q/DQ node on an activation."""
        scale = self._const(node.inputs[1])
        zero = self._const(node.inputs[2]) if len(node.inputs) > 2 else np.zeros((), np.int64)
        dtype = np.dtype(node.attrs["dtype"] if node.op == Op.QUANTIZE
                         else self.src.values[node.inputs[0]].dtype)
        if scale is None or zero is None:
            raise CompileError("scale and zero point must be constants")
        if scale.size != 1:
            raise CompileError("activations must be quantized per tensor")
        if dtype not in (np.dtype("int8"), np.dtype("uint8")):
            raise CompileError(f"activations of type {dtype} are not supported (int8, uint8)")
        if self.cfg.inp_bits < 8:
            raise CompileError(f"the model has 8-bit activations; the config's inp_bits is "
                               f"{self.cfg.inp_bits}")
        # uint8 q with zero point z is the signed q - 128 with zero point z - 128.
        offset = 128 if dtype == np.dtype("uint8") else 0
        return _per_tensor(_scalar(scale), int(_scalar(zero)) - offset, 8)

    def _node(self, node: Node) -> None:
        """Convert one source node (or record it as pending)."""
        op, b = node.op, self.b
        blocked = [n for n in node.inputs if n in self.pending and n not in b.floats]
        if blocked and op not in (Op.QUANTIZE, *ACTIVATIONS):
            for name in blocked:
                self._in_float(self.pending[name], node)
            blocked = []
        quantized = [n in b.qname for n in node.inputs if n and self._const(n) is None]
        if op == Op.DEQUANTIZE:
            self._dequantize(node)
        elif op == Op.QUANTIZE:
            self._quantize(node)
        elif op in ACTIVATIONS and blocked:
            first = self.pending[blocked[0]]
            self.pending[node.outputs[0]] = _Pending(first.node, [*first.acts, node])
        elif op in (Op.CONV, Op.GEMM, Op.MATMUL) and self._on_qconv(node):
            self.pending[node.outputs[0]] = _Pending(node)
        elif op in (Op.CONV, Op.GEMM, Op.MATMUL) or not quantized or not all(quantized):
            self._host(node)
        elif op == Op.ADD or op in ACTIVATIONS:
            self.pending[node.outputs[0]] = _Pending(node, [node] if op in ACTIVATIONS else [])
        elif op in (Op.AVERAGEPOOL, Op.GLOBALAVERAGEPOOL) and _window_attrs(
            node, self.src.values[node.inputs[0]].shape
        ):
            self.pending[node.outputs[0]] = _Pending(node)
        elif op == Op.MAXPOOL:
            b.same_quant(node, Op.QMAXPOOL, b.qname[node.inputs[0]])
        elif op in SHAPE_OPS:
            b.same_quant(node, op, b.qname[node.inputs[0]])
        else:
            self._host(node)

    def _host(self, node: Node) -> None:
        """Run a node in float on the host, with its dequantized constants computed there too."""
        for name in node.inputs:
            if name in self.weights and name not in self.b.floats:
                self.b.host(self.weights[name])
        self.b.host(node)

    def _in_float(self, p: _Pending, reader: Node) -> None:
        """Run a pending op and its activations in float on the host, as the model says, because
        a float op reads the result; a quantized matrix product cannot run there."""
        if p.node.op in (Op.CONV, Op.GEMM, Op.MATMUL):
            raise CompileError(
                f"node {p.node.name} ({p.node.op}): its output is not requantized (node "
                f"{reader.name} reads it as a float, no QuantizeLinear); QCONV needs one")
        for node in [p.node, *p.acts]:
            if node.outputs[0] not in self.b.floats:
                self.b.host(node)

    def _dequantize(self, node: Node) -> None:
        """Record a DequantizeLinear: of a constant (weights) or of an activation (an alias)."""
        x, out = node.inputs[0], node.outputs[0]
        if self._const(x) is not None:
            self.weights[out] = node
            return
        if x not in self.b.qname and x in self.src.inputs:
            self._quantized_input(node)
            return
        if x not in self.b.qname:
            raise CompileError(f"dequantizes {x}, which no QuantizeLinear produced")
        q = self.b.quant(self.b.qname[x])
        mine = self._qparams(node)
        if (_scalar(mine.scale) != _scalar(q.scale)
                or _scalar(mine.zero_point) != _scalar(q.zero_point)):
            raise CompileError(f"dequantizes {x} with other parameters than it was quantized")
        self.b.qname[out] = self.b.qname[x]

    def _quantized_input(self, node: Node) -> None:
        """DequantizeLinear of an integer graph input: in float on the host, quantized again
        (exactly) in Loom's form when quantized ops read it."""
        self._host(node)
        out = node.outputs[0]
        if any(reader.op != Op.DEQUANTIZE for reader in self.src.consumers(out)):
            self.b.qname[out] = self.b.quantize(out, self._qparams(node), out)

    def _quantize(self, node: Node) -> None:
        """A QuantizeLinear: completes a pending op, requantizes, or quantizes a float."""
        b, x, out = self.b, node.inputs[0], node.outputs[0]
        try:
            yq = self._qparams(node)
        except CompileError:
            readers = {reader.op for reader in self.src.consumers(out)}
            if x in self.pending or x in b.qname or Op.DEQUANTIZE in readers:
                raise
            self._host(node)  # a float to integers that only leave the graph or go to host ops
            return
        clip = _signed_range(8)
        if x in self.pending:
            b.qname[out] = self._emit(self.pending[x], out, yq, clip)
        elif x in b.qname:
            xq = b.quant(b.qname[x])
            same = (_scalar(xq.scale) == _scalar(yq.scale)
                    and _scalar(xq.zero_point) == _scalar(yq.zero_point))
            b.qname[out] = b.qname[x] if same else b.qadd(
                node.name, out, [b.qname[x]], self.src.values[out].shape, yq, clip)
        else:
            b.qname[out] = b.quantize(b.float_of(x), yq, out)

    def _on_qconv(self, node: Node) -> bool:
        """True for a Conv/Gemm/MatMul of quantized input and weights that QCONV expresses;
        others (float layers the model keeps, dilated convolutions) run on the host."""
        x, w = node.inputs[:2]
        if x not in self.b.qname or w not in self.weights:
            return False
        if node.op == Op.CONV:
            return _conv_runs_on_qconv(node)
        return len(self.src.values[x].shape) == 2 and not node.attrs.get("transA", 0)

    def _weights(self, node: Node, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights q - zero_point (exact, any range: see `weight_planes`) and their
        per-output-channel scales."""
        dq = self.weights[node.inputs[1]]
        q = self._const(dq.inputs[0]).astype(np.int64)
        scale = self._const(dq.inputs[1]).astype(np.float64).reshape(-1)
        zero = self._const(dq.inputs[2]) if len(dq.inputs) > 2 else np.zeros(1)
        channels = q.shape[out_axis]
        for what, array in (("scale", scale), ("zero point", zero)):
            if array is None or array.size not in (1, channels) or (
                    array.size > 1 and dq.attrs["axis"] != out_axis):
                raise CompileError(f"weights {node.inputs[1]} must be quantized per tensor or "
                                   f"per output channel (axis {out_axis}); its {what} is not")
        along = [1] * q.ndim
        along[out_axis] = zero.size
        return q - zero.astype(np.int64).reshape(along), np.broadcast_to(scale, (channels,)).copy()

    def _bias(self, node: Node, index: int, unit: np.ndarray) -> np.ndarray:
        """The bias input as integers of scale `unit` = x_scale * w_scale (zeros when absent)."""
        name = node.inputs[index] if len(node.inputs) > index else ""
        if not name:
            return np.zeros(unit.shape, np.int64)
        if name in self.weights:
            dq = self.weights[name]
            q = self._const(dq.inputs[0]).astype(np.int64).reshape(-1)
            scale = self._const(dq.inputs[1]).astype(np.float64).reshape(-1)
            zero = self._const(dq.inputs[2]) if len(dq.inputs) > 2 else 0
            if np.allclose(scale, unit, rtol=1e-6, atol=0) and not np.any(zero):
                return np.broadcast_to(q, unit.shape).copy()
            real = (q - np.asarray(zero, np.int64).reshape(-1)) * scale
        elif self._const(name) is not None:
            real = self._const(name).astype(np.float64).reshape(-1)
        else:
            raise CompileError(f"bias {name} is not a constant")
        return np.rint(np.broadcast_to(real, unit.shape) / unit).astype(np.int64)

    def _emit(self, p: _Pending, out: str, yq: QuantParams, clip) -> str:
        """The integer op of a pending float op, requantized to `yq` (its QuantizeLinear)."""
        b, node = self.b, p.node
        clip = _act_clip(p.acts, yq, clip)
        shape = self.src.values[out].shape
        with _at(node):
            if node.op in (Op.ADD, *ACTIVATIONS):
                xs = [b.qname[n] for n in node.inputs]
                return b.qadd(node.name, out, xs, shape, yq, clip)
            x = b.qname[node.inputs[0]]
            if node.op in (Op.AVERAGEPOOL, Op.GLOBALAVERAGEPOOL):
                window = _window_attrs(node, b.graph.values[x].shape)
                return b.qavgpool(node.name, out, x, shape, yq, clip, *window)
            x_scale = _scalar(b.quant(x).scale)
            if node.op == Op.CONV:
                weights, w_scale = self._weights(node, 0)
                bias = self._bias(node, 2, x_scale * w_scale)
                return b.qconv(node.name, out, x, weights, w_scale, bias, shape, yq, clip,
                               node.attrs["strides"], node.attrs["pads"], node.attrs["group"])
            trans = node.op == Op.GEMM and node.attrs["transB"]
            weights, w_scale = self._weights(node, 0 if trans else 1)
            weights = weights if trans else weights.T
            if node.op == Op.GEMM:
                w_scale = w_scale * node.attrs["alpha"]
                bias = self._bias(node, 2, x_scale * w_scale / node.attrs["beta"])
            else:
                bias = np.zeros(weights.shape[0], np.int64)
            return b.qgemm(node.name, out, x, weights, w_scale, bias, shape, yq, clip)


# -- QOperator models to QDQ form ---------------------------------------------------------------


def _expand_qoperators(graph: Graph) -> Graph:
    """Rewrite QLinearConv/QLinearMatMul/ConvInteger/MatMulInteger host nodes into QDQ form."""
    if not any(n.attrs.get("onnx_op") in QOPERATORS for n in graph.nodes):
        return graph
    graph = graph.copy()
    nodes, dropped = [], set()
    for node in graph.nodes:
        if node.name in dropped:
            continue
        op = node.attrs.get("onnx_op") if node.op == Op.HOST else None
        with _at(node):
            if op in ("QLinearConv", "QLinearMatMul"):
                nodes.extend(_expand_qlinear(graph, node))
            elif op in ("ConvInteger", "MatMulInteger") and _static_integer(graph, node):
                expanded, used = _expand_integer(graph, node)
                nodes.extend(expanded)
                dropped.update(used)
            else:
                nodes.append(node)
    graph.nodes = nodes
    drop_unused(graph)
    graph.verify()
    return graph


class _QdqWriter:
    """Helpers that add QDQ-form values and nodes to a graph being expanded."""

    def __init__(self, graph: Graph, node: Node) -> None:
        self.graph, self.node, self.nodes = graph, node, []

    def fresh(self, base: str) -> str:
        """A name the graph does not use yet."""
        taken = set(self.graph.values) | {n.name for n in self.graph.nodes + self.nodes}
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """A new constant."""
        name = self.fresh(base)
        self.graph.values[name] = Value(name, array.shape, str(array.dtype), const=array)
        return name

    def float_value(self, like: str) -> str:
        """A new float32 value shaped like `like`."""
        name = self.fresh(f"{like}_float")
        self.graph.values[name] = Value(name, self.graph.values[like].shape, "float32")
        return name

    def add(self, op: Op, inputs: list[str], outputs: list[str], attrs: dict) -> None:
        """Append a node named after the QOperator node (the product takes over its name)."""
        main = op in (Op.CONV, Op.GEMM, Op.MATMUL)
        name = self.node.name if main else self.fresh(f"{self.node.name}_{op.name.lower()}")
        self.nodes.append(Node(name, op, inputs, outputs, attrs))

    def dequantize(self, x: str, scale: str, zero: str, axis: int) -> str:
        """A DequantizeLinear of x to float32."""
        out = self.float_value(x)
        self.add(Op.DEQUANTIZE, [x, scale, zero], [out], {"axis": axis, "dtype": "float32"})
        return out


def _expand_qlinear(graph: Graph, node: Node) -> list[Node]:
    """QLinearConv/QLinearMatMul to DequantizeLinear, Conv/MatMul, QuantizeLinear."""
    w = _QdqWriter(graph, node)
    x, xs, xz, wq, ws, wz, ys, yz, *rest = node.inputs
    conv = node.attrs["onnx_op"] == "QLinearConv"
    inputs = [w.dequantize(x, xs, xz, 1), w.dequantize(wq, ws, wz, 0 if conv else 1)]
    if rest and rest[0]:
        scale = (graph.values[xs].const.astype(np.float32)
                 * graph.values[ws].const.astype(np.float32).reshape(-1))
        zero = w.const(f"{rest[0]}_zero_point", np.zeros(scale.shape, np.int32))
        inputs.append(w.dequantize(rest[0], w.const(f"{rest[0]}_scale", scale), zero, 0))
    (y,) = node.outputs
    y_float = w.float_value(y)
    if conv:
        attrs = {k: node.attrs[k] for k in ("kernel_shape", "strides", "dilations", "pads")}
        w.add(Op.CONV, inputs, [y_float], {**attrs, "group": node.attrs["group"]})
    else:
        w.add(Op.MATMUL, inputs, [y_float], {})
    w.add(Op.QUANTIZE, [y_float, ys, yz], [y], {"axis": 1, "dtype": graph.values[y].dtype})
    return w.nodes


def _only_reader(graph: Graph, value: str, onnx_op: str) -> Node | None:
    """The only reader of `value` when it is an `onnx_op` node (an IR op or a host node)."""
    readers = graph.consumers(value)
    if len(readers) != 1 or value in graph.outputs:
        return None
    reader = readers[0]
    return reader if onnx_op in (reader.op.value, reader.attrs.get("onnx_op")) else None


def _traced_quant(graph: Graph, name: str) -> QuantParams | None:
    """The QuantParams of an integer tensor, looking through shape ops and MaxPool."""
    while graph.values[name].quant is None:
        producer = graph.producer(name)
        if producer is None or producer.op not in (*SHAPE_OPS, Op.MAXPOOL):
            return None
        name = producer.inputs[0]
    return graph.values[name].quant


def _static_integer(graph: Graph, node: Node) -> bool:
    """True when a ConvInteger/MatMulInteger is a static quantization Loom can accelerate.

    That is: its input comes from a per-tensor QuantizeLinear and its int32 output only feeds a
    Cast and a Mul by a constant scale. Otherwise (a bare int32 output, or a dynamically
    quantized input) it stays a host node that onnx.reference runs on the integers.
    """
    x_quant = _traced_quant(graph, node.inputs[0])
    cast = _only_reader(graph, node.outputs[0], "Cast")
    mul = cast and _only_reader(graph, cast.outputs[0], "Mul")
    return (x_quant is not None and not x_quant.per_channel and bool(mul)
            and any(graph.values[n].const is not None for n in mul.inputs))


def _expand_integer(graph: Graph, node: Node) -> tuple[list[Node], set[str]]:
    """ConvInteger/MatMulInteger -> Cast -> Mul(scale) [-> Add(bias)] to QDQ form.

    Only for nodes `_static_integer` accepts.

    The Mul constant s is x_scale * w_scale; x_scale comes from the QuantizeLinear that produced
    x, so the weights get the scale s / x_scale. Returns the new nodes and the absorbed ones.
    """
    w = _QdqWriter(graph, node)
    x, wq, *zeros = node.inputs
    xz, wz = [*zeros, "", ""][:2]
    x_quant = _traced_quant(graph, x)
    cast = _only_reader(graph, node.outputs[0], "Cast")
    mul = _only_reader(graph, cast.outputs[0], "Mul")
    scale = next(graph.values[n].const for n in mul.inputs if graph.values[n].const is not None)
    x_zero = graph.values[xz].const if xz else np.zeros((), graph.values[x].dtype)
    if x_zero is None or int(_scalar(x_zero)) != int(_scalar(x_quant.zero_point)):
        raise CompileError(f"zero point of {x} differs from its QuantizeLinear's")
    conv = node.attrs["onnx_op"] == "ConvInteger"
    channels = graph.values[wq].shape[0 if conv else 1]
    x_scale = np.float32(_scalar(x_quant.scale))
    w_scale = (np.broadcast_to(scale.astype(np.float32).reshape(-1), (channels,)) / x_scale)
    w_zero = graph.values[wz].const if wz else np.zeros((), np.int8)
    inputs = [
        w.dequantize(x, w.const(f"{x}_scale", np.asarray(x_scale)), w.const(
            f"{x}_zero_point", np.asarray(x_quant.zero_point).astype(graph.values[x].dtype)), 1),
        w.dequantize(wq, w.const(f"{wq}_scale", w_scale.astype(np.float32)), w.const(
            f"{wq}_zero_point", np.broadcast_to(w_zero, (channels,)).copy()), 0 if conv else 1),
    ]
    used = {cast.name, mul.name}
    out = mul.outputs[0]
    add = _only_reader(graph, out, "Add")
    bias = add and next((graph.values[n].const for n in add.inputs
                         if graph.values[n].const is not None), None)
    if bias is not None and bias.size in (1, channels):
        inputs.append(w.const(f"{node.name}_bias",
                              np.broadcast_to(bias.reshape(-1), (channels,)).copy()))
        used.add(add.name)
        out = add.outputs[0]
    if conv:
        attrs = {k: node.attrs[k] for k in ("kernel_shape", "strides", "dilations", "pads")}
        w.add(Op.CONV, inputs, [out], {**attrs, "group": node.attrs["group"]})
    else:
        gemm = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
        w.add(Op.GEMM if len(inputs) == 3 else Op.MATMUL, inputs, [out],
              gemm if len(inputs) == 3 else {})
    return w.nodes, used

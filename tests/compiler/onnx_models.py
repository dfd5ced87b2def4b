"""ONNX test models built with onnx.helper, and onnxruntime as the float reference.

`Builder` appends nodes with seeded random weights (shapes come from onnx shape inference), so
a test writes a model as a few lines of layer calls::

    b = Builder("x", (2, 3, 9, 9))
    y = b.op("Relu", [b.conv(b.input, 5, kernel=3, pad=1)])
    model = b.model([y])

`CNN_MODELS` are the shared classifier-like test models (odd channel counts, strides 1/2, pads
0-3, kernels 1/3/5/7, residual adds, pools, BatchNormalization, a final Gemm), each a function
of the batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

DIGITS = Path(__file__).resolve().parents[2] / "loom" / "models" / "digits_cnn.onnx"
OPSET = 17


class Builder:
    """An ONNX graph under construction: float inputs, nodes, initializers; shapes by inference."""

    def __init__(self, name: str, shape: tuple[int | str, ...], seed: int = 0,
                 opset: int = OPSET) -> None:
        self.rng = np.random.default_rng(seed)
        self.input = name
        self.inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)]
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.opset = opset

    def name(self, base: str) -> str:
        """A fresh value or node name."""
        return f"{base}{len(self.nodes) + len(self.inits)}"

    def const(self, array, base: str = "c") -> str:
        """Add an initializer."""
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def random(self, shape, base: str = "w", low: float = -1.0, high: float = 1.0) -> str:
        """Add a float32 initializer of uniform random values."""
        return self.const(self.rng.uniform(low, high, shape).astype(np.float32), base)

    def op(self, op: str, inputs: list[str], outputs: int = 1, name: str | None = None,
           **attrs) -> str:
        """Append a node (named `name`, else after its output) and return its first output."""
        outs = [self.name(op.lower()) + (f"_{i}" if i else "") for i in range(outputs)]
        name = name or f"{op}_{outs[0]}"
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def _graph(self, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        """The model as built so far, with the given outputs."""
        graph = helper.make_graph(self.nodes, "test", self.inputs, outputs, self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])

    def types(self) -> dict[str, onnx.ValueInfoProto]:
        """Inferred types of every value."""
        model = onnx.shape_inference.infer_shapes(self._graph([]), strict_mode=True)
        inits = [helper.make_tensor_value_info(i.name, i.data_type, i.dims) for i in self.inits]
        return {v.name: v for v in [*model.graph.value_info, *model.graph.input, *inits]}

    def shape(self, value: str) -> tuple:
        """The inferred shape of a value."""
        dims = self.types()[value].type.tensor_type.shape.dim
        return tuple(d.dim_value or d.dim_param for d in dims)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        """The checked ModelProto with the given outputs."""
        types = self.types()
        model = self._graph([types[o] for o in outputs])
        onnx.checker.check_model(model, full_check=True)
        return model

    def conv(self, x: str, cout: int, kernel: int, stride: int = 1, pad=0, bias: bool = True,
             group: int = 1, dilation: int = 1) -> str:
        """Conv with random weights; pad is an int or (top, left, bottom, right)."""
        pads = [pad] * 4 if isinstance(pad, int) else list(pad)
        cin = self.shape(x)[1]
        scale = 1.0 / np.sqrt(cin // group * kernel * kernel)
        inputs = [x, self.random((cout, cin // group, kernel, kernel), "w", -scale, scale)]
        if bias:
            inputs.append(self.random((cout,), "b", -0.1, 0.1))
        return self.op("Conv", inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                       pads=pads, group=group, dilations=[dilation, dilation])

    def bn(self, x: str) -> str:
        """BatchNormalization with random statistics."""
        c = self.shape(x)[1]
        params = [self.random((c,), "g", 0.5, 1.5), self.random((c,), "beta", -0.2, 0.2),
                  self.random((c,), "mean", -0.3, 0.3), self.random((c,), "var", 0.2, 2.0)]
        return self.op("BatchNormalization", [x, *params], epsilon=1e-3)

    def clip(self, x: str, lo: float | None, hi: float | None) -> str:
        """Clip with constant bounds (None: omitted)."""
        inputs = [x, "" if lo is None else self.const(np.float32(lo)),
                  "" if hi is None else self.const(np.float32(hi))]
        while not inputs[-1]:
            inputs.pop()
        return self.op("Clip", inputs)

    def pool(self, op: str, x: str, kernel: int, stride: int, pad: int = 0, **attrs) -> str:
        """MaxPool or AveragePool with square windows."""
        return self.op(op, [x], kernel_shape=[kernel, kernel], strides=[stride, stride],
                       pads=[pad] * 4, **attrs)

    def gemm(self, x: str, n: int, trans_b: int = 1, bias: bool = True, **attrs) -> str:
        """Gemm with random weights: (N, K) when trans_b, else (K, N)."""
        k = self.shape(x)[1]
        w = self.random((n, k) if trans_b else (k, n), "fc", -0.5, 0.5)
        inputs = [x, w, self.random((n,), "fcb", -0.1, 0.1)] if bias else [x, w]
        return self.op("Gemm", inputs, transB=trans_b, **attrs)


def residual_cnn(batch: int) -> onnx.ModelProto:
    """Conv 7x7/2 pad 3, BN, ReLU, MaxPool, a residual block with a 1x1 projection, Clip,
    Conv 5x5 pad 2, AveragePool, GlobalAveragePool, Flatten, Gemm, Softmax; odd channels."""
    b = Builder("x", (batch, 3, 13, 11), seed=1)
    x = b.op("Relu", [b.bn(b.conv(b.input, 5, kernel=7, stride=2, pad=3))])
    x = b.pool("MaxPool", x, kernel=3, stride=2, pad=1)
    y = b.op("Relu", [b.bn(b.conv(x, 7, kernel=3, pad=1))])
    y = b.conv(y, 7, kernel=3, pad=1, bias=False)
    x = b.clip(b.op("Add", [y, b.conv(x, 7, kernel=1)]), 0.0, 6.0)
    x = b.op("Relu", [b.conv(x, 9, kernel=5, pad=2)])
    x = b.op("GlobalAveragePool", [b.pool("AveragePool", x, kernel=2, stride=1)])
    return b.model([b.op("Softmax", [b.gemm(b.op("Flatten", [x]), 10)])])


def padded_cnn(batch: int) -> onnx.ModelProto:
    """Kernels 1/3/5/7 with pads 0-3 (one asymmetric), strides 1 and 2, pools, a final Gemm."""
    b = Builder("x", (batch, 5, 17, 15), seed=2)
    x = b.op("Relu", [b.conv(b.input, 3, kernel=3, pad=0)])
    x = b.op("Relu", [b.conv(x, 11, kernel=5, stride=2, pad=(2, 1, 3, 0))])
    x = b.bn(b.conv(x, 13, kernel=7, pad=3))
    x = b.clip(b.conv(x, 7, kernel=1, stride=2), 0.0, None)
    x = b.op("Relu", [b.conv(x, 6, kernel=3, pad=2, dilation=2)])
    x = b.pool("MaxPool", x, kernel=2, stride=2)
    x = b.pool("AveragePool", x, kernel=3, stride=1, pad=1, count_include_pad=1)
    return b.model([b.gemm(b.op("Flatten", [x]), 10)])


def grouped_cnn(batch: int) -> onnx.ModelProto:
    """A depthwise and a grouped Conv, a BN after an Add (not foldable), and a Gemm with
    transB=0, alpha and beta."""
    b = Builder("x", (batch, 6, 9, 9), seed=3)
    x = b.op("Relu", [b.conv(b.input, 6, kernel=3, pad=1, group=6)])
    x = b.bn(b.op("Add", [x, b.conv(x, 6, kernel=1, group=3)]))
    x = b.op("Relu", [b.conv(x, 8, kernel=3, stride=2, pad=1)])
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    return b.model([b.gemm(x, 4, trans_b=0, alpha=0.5, beta=2.0)])


def depthwise_cnn(batch: int) -> onnx.ModelProto:
    """MobileNet-like: depthwise 3x3 and 5x5 convs of 5, 24 and 40 channels (strides 1 and 2,
    pads 0-2), pointwise 1x1s, a grouped 3x3, an AveragePool and a GlobalAveragePool."""
    b = Builder("x", (batch, 5, 17, 15), seed=7)
    x = b.op("Relu", [b.conv(b.input, 5, kernel=3, pad=1, group=5)])
    x = b.op("Relu", [b.conv(x, 24, kernel=1)])
    x = b.clip(b.conv(x, 24, kernel=3, stride=2, pad=1, group=24), 0.0, 6.0)
    x = b.op("Relu", [b.conv(x, 40, kernel=1)])
    x = b.op("Relu", [b.conv(x, 40, kernel=5, stride=1, pad=2, group=40)])
    x = b.conv(x, 40, kernel=5, stride=2, pad=0, group=40)
    x = b.op("Relu", [b.conv(x, 20, kernel=3, pad=1, group=4)])
    x = b.pool("AveragePool", x, kernel=2, stride=1)
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    return b.model([b.gemm(x, 10)])


CNN_MODELS = {"residual": residual_cnn, "padded": padded_cnn, "grouped": grouped_cnn,
              "depthwise": depthwise_cnn}


def random_inputs(model: onnx.ModelProto, seed: int = 0, shapes=None) -> dict[str, np.ndarray]:
    """Uniform [-1, 1) float32 data for every graph input (shapes from the model or `shapes`)."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    result = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = (shapes or {}).get(value.name) or [d.dim_value for d in
                                                  value.type.tensor_type.shape.dim]
        result[value.name] = rng.uniform(-1, 1, dims).astype(np.float32)
    return result


def run_ort(model: onnx.ModelProto | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs by name, each op as ONNX defines it (no graph optimizations)."""
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    options = ort.SessionOptions()
    # Optimizations rewrite QDQ pairs into integer kernels that quantize activations on the fly.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs), strict=True))


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Equal shapes and types, values within rtol (plus a floor at 1e-6 of the largest value)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    atol = 1e-6 * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)

"""ONNX import: check a model, infer static shapes, convert it to the IR with normalized attributes.

`import_onnx` accepts ONNX files or ModelProtos of opset 13 and newer. Every ONNX op Loom knows is
listed in `SUPPORTED_OPS` with the IR op it becomes, whether it may run on the accelerator, and
its attribute normalization (defaults filled from the op schema, auto_pad resolved to explicit
pads, optional-input constants such as Clip bounds and Reshape shapes turned into attributes).
Anything else is rejected with one line naming the node, the op and the supported list, or, with
`host_fallback=True`, imported as an `Op.HOST` node that onnx.reference runs on the host.

Normalized attributes (window ops are 2-D, on NCHW tensors):
    Conv         kernel_shape (kh, kw), strides (sh, sw), dilations (dh, dw),
                 pads (top, left, bottom, right), group
    MaxPool      kernel_shape, strides, dilations, pads, ceil_mode
    AveragePool  kernel_shape, strides, dilations, pads, ceil_mode, count_include_pad
    Gemm         alpha, beta, transA, transB
    Clip         min, max (numbers; the type's range when absent); inputs [x]
    Reshape      shape (the resolved output shape); inputs [x]
    Flatten, Softmax  axis (non-negative);  Transpose  perm;  BatchNormalization  epsilon
    QuantizeLinear, DequantizeLinear  axis (non-negative), dtype (numpy name of the output)
Every HOST node carries onnx_op, onnx_domain, onnx_node (the serialized NodeProto, inputs and
outputs matching the IR node's by position), opsets ({domain: version}) and fallback (True when
it is there only because of `host_fallback`); QOperator ops add their normalized attributes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.ir import CompileError, Graph, Node, Op, QuantParams, Value
from compiler.passes import bypass_node, drop_unused
from compiler.reference import KERNELS, Kernel, host_evaluator, pool_geometry

MIN_OPSET = 13

# Element types numpy holds natively; the narrow and float8 types need ml_dtypes arithmetic.
DTYPES = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16",
    TensorProto.UINT16: "uint16",
    TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32",
    TensorProto.INT64: "int64",
    TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool",
}


class _Unsupported(Exception):
    """A node Loom cannot import as it is: what about it, and what would be supported."""

    def __init__(self, what: str, supported: str) -> None:
        super().__init__(what)
        self.what, self.supported = what, supported


@dataclass
class _Proto:
    """An ONNX node under conversion: attributes with schema defaults, and its Values."""

    node: onnx.NodeProto
    name: str  # the IR node's name
    attrs: dict
    inputs: list[Value | None]
    outputs: list[Value | None]

    def const(self, index: int) -> np.ndarray | None:
        """The constant data of an input, or None when it is omitted or not constant."""
        value = self.inputs[index] if index < len(self.inputs) else None
        return None if value is None else value.const

    def axis(self, name: str, rank: int) -> int:
        """An axis attribute made non-negative."""
        return self.attrs[name] % rank if rank else 0


Converter = Callable[[_Proto], dict]


@dataclass(frozen=True)
class OpSpec:
    """How Loom imports one ONNX op and where it may run."""

    op: Op | None  # the IR op; None when the node is consumed at import
    where: str  # "accel": accelerator-eligible, "host": host only, "import": gone after import
    convert: Converter | None  # the normalized attributes; raises _Unsupported
    note: str = ""
    arity: int | None = None  # inputs kept when later ones become attributes (Clip, Reshape)

    @property
    def kernel(self) -> Kernel | None:
        """The numpy float implementation (the onnx.reference runner for HOST ops)."""
        return KERNELS.get(self.op)


def _window(p: _Proto, weight: int | None = None) -> dict:
    """kernel_shape, strides, dilations and explicit pads of a 2-D window op (auto_pad resolved)."""
    x = p.inputs[0]
    if len(x.shape) != 4:
        raise _Unsupported(f"with a {len(x.shape)}-D input", "4-D (N, C, H, W) inputs")
    kernel = tuple(p.attrs.get("kernel_shape") or p.inputs[weight].shape[2:])
    strides = tuple(p.attrs.get("strides") or (1, 1))
    dilations = tuple(p.attrs.get("dilations") or (1, 1))
    auto = p.attrs.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = tuple(p.attrs.get("pads") or (0, 0, 0, 0))
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        begin, end = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
            total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
            # SAME_UPPER puts the odd pixel of padding at the end, SAME_LOWER at the beginning.
            begin.append(total - total // 2 if auto == "SAME_LOWER" else total // 2)
            end.append(total - begin[-1])
        pads = (*begin, *end)
    return {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "pads": pads}


def _conv(p: _Proto) -> dict:
    """Conv: window attributes and group."""
    return {**_window(p, weight=1), "group": p.attrs["group"]}


def _qlinearconv(p: _Proto) -> dict:
    """QLinearConv: window attributes (weight is input 3) and group."""
    return {**_window(p, weight=3), "group": p.attrs["group"]}


def _pool(p: _Proto) -> dict:
    """MaxPool (storage_order only concerns Indices) or AveragePool: window attrs, ceil_mode."""
    attrs = {**_window(p), "ceil_mode": p.attrs["ceil_mode"]}
    x, y = p.inputs[0].shape, p.outputs[0].shape
    out, _ = pool_geometry(attrs, x[2:])
    # onnx shape inference and onnxruntime disagree on some ceil_mode windows that would start
    # in the end padding (ONNX says to drop them); a wrong shape would poison every later value.
    if y[2:] != out:
        raise CompileError(
            f"node {p.name}: onnx shape inference gives {p.node.op_type} output {y}, but the "
            f"ONNX pooling rule (as onnxruntime computes it) gives {(*x[:2], *out)}"
        )
    return attrs


def _averagepool(p: _Proto) -> dict:
    """AveragePool: window attributes, ceil_mode and count_include_pad."""
    return {**_pool(p), "count_include_pad": p.attrs["count_include_pad"]}


def _none(p: _Proto) -> dict:
    """An op without attributes."""
    return {}


def _gemm(p: _Proto) -> dict:
    """Gemm: alpha, beta, transA, transB."""
    return {k: p.attrs[k] for k in ("alpha", "beta", "transA", "transB")}


def _clip(p: _Proto) -> dict:
    """Clip: constant min and max inputs become attributes (the type's range when omitted)."""
    dtype = np.dtype(p.inputs[0].dtype)
    floating = np.issubdtype(dtype, np.floating)
    full = (-math.inf, math.inf) if floating else (int(np.iinfo(dtype).min), np.iinfo(dtype).max)
    bounds = []
    for index, default in zip((1, 2), full, strict=True):
        if index >= len(p.inputs) or p.inputs[index] is None:
            bounds.append(default)
            continue
        data = p.const(index)
        if data is None:
            raise _Unsupported("with a non-constant min or max", "constant min and max")
        bounds.append(float(data) if floating else int(data))
    return {"min": bounds[0], "max": bounds[1]}


def _batchnorm(p: _Proto) -> dict:
    """BatchNormalization in inference mode: epsilon."""
    if p.attrs.get("training_mode", 0):
        raise _Unsupported("in training mode", "training_mode=0 (inference)")
    return {"epsilon": p.attrs["epsilon"]}


def _reshape(p: _Proto) -> dict:
    """Reshape by a constant shape: the shape-inferred output shape."""
    if p.const(1) is None:
        raise _Unsupported("with a non-constant shape", "a constant shape input")
    return {"shape": p.outputs[0].shape}


def _flatten(p: _Proto) -> dict:
    """Flatten: axis in [0, rank]."""
    rank = len(p.inputs[0].shape)
    return {"axis": p.attrs["axis"] + rank if p.attrs["axis"] < 0 else p.attrs["axis"]}


def _transpose(p: _Proto) -> dict:
    """Transpose: perm (reversed axes by default)."""
    rank = len(p.inputs[0].shape)
    return {"perm": tuple(p.attrs.get("perm") or range(rank - 1, -1, -1))}


def _softmax(p: _Proto) -> dict:
    """Softmax: axis."""
    return {"axis": p.axis("axis", len(p.inputs[0].shape))}


def _quant_params(p: _Proto, axis: int, integer: Value) -> QuantParams | None:
    """The QuantParams of the integer side of a Q/DQ node when scale and zero point are constant."""
    scale, zero = p.const(1), p.const(2)
    if scale is None or (len(p.inputs) > 2 and p.inputs[2] is not None and zero is None):
        return None
    dtype = np.dtype(integer.dtype)
    zero = np.zeros_like(scale, dtype=dtype) if zero is None else zero
    return QuantParams(scale, zero, bits=8 * dtype.itemsize, axis=axis if scale.size > 1 else None)


def _qdq_common(p: _Proto) -> int:
    """Axis of a Q/DQ node after rejecting blocked quantization and other precisions."""
    if p.attrs.get("block_size", 0):
        raise _Unsupported("with blocked quantization", "per-tensor and per-axis scales")
    if p.attrs.get("precision", 0):
        raise _Unsupported("with a precision attribute", "division in the input's type")
    return p.axis("axis", len(p.inputs[0].shape))


def _quantize(p: _Proto) -> dict:
    """QuantizeLinear: axis and output dtype; the output Value gets its QuantParams."""
    axis = _qdq_common(p)
    p.outputs[0].quant = _quant_params(p, axis, p.outputs[0])
    return {"axis": axis, "dtype": p.outputs[0].dtype}


def _dequantize(p: _Proto) -> dict:
    """DequantizeLinear: axis and output dtype; the integer input gets its QuantParams."""
    axis = _qdq_common(p)
    p.inputs[0].quant = p.inputs[0].quant or _quant_params(p, axis, p.inputs[0])
    return {"axis": axis, "dtype": p.outputs[0].dtype}


def _dropout(p: _Proto) -> dict:
    """Dropout in inference mode, an identity."""
    if len(p.inputs) > 2 and p.inputs[2] is not None:
        mode = p.const(2)
        if mode is None or bool(mode):
            raise _Unsupported("in training mode", "inference (training_mode absent or false)")
    return {}


_QOPERATOR = "imported as a host node for the quantizer to lower onto the accelerator"
SUPPORTED_OPS: dict[str, OpSpec] = {
    "Conv": OpSpec(Op.CONV, "accel", _conv, "grouped and depthwise too; dilated on the host"),
    "Gemm": OpSpec(Op.GEMM, "accel", _gemm),
    "MatMul": OpSpec(Op.MATMUL, "accel", _none, "2-D by a constant; others on the host"),
    "Relu": OpSpec(Op.RELU, "accel", _none),
    "Clip": OpSpec(Op.CLIP, "accel", _clip, arity=1),
    "Add": OpSpec(Op.ADD, "accel", _none, "residual adds"),
    "MaxPool": OpSpec(Op.MAXPOOL, "accel", _pool),
    "AveragePool": OpSpec(Op.AVERAGEPOOL, "accel", _averagepool),
    "GlobalAveragePool": OpSpec(Op.GLOBALAVERAGEPOOL, "accel", _none),
    "BatchNormalization": OpSpec(Op.BATCHNORM, "host", _batchnorm,
                                 "on the accelerator once fold_batchnorm puts it into a Conv"),
    "Reshape": OpSpec(Op.RESHAPE, "host", _reshape, arity=1),
    "Flatten": OpSpec(Op.FLATTEN, "host", _flatten),
    "Transpose": OpSpec(Op.TRANSPOSE, "host", _transpose),
    "Softmax": OpSpec(Op.SOFTMAX, "host", _softmax),
    "QuantizeLinear": OpSpec(Op.QUANTIZE, "host", _quantize, "QDQ: read by the quantizer"),
    "DequantizeLinear": OpSpec(Op.DEQUANTIZE, "host", _dequantize, "QDQ: read by the quantizer"),
    "QLinearConv": OpSpec(Op.HOST, "accel", _qlinearconv, _QOPERATOR),
    "ConvInteger": OpSpec(Op.HOST, "accel", _conv, _QOPERATOR),
    "QLinearMatMul": OpSpec(Op.HOST, "accel", _none, _QOPERATOR),
    "MatMulInteger": OpSpec(Op.HOST, "accel", _none, _QOPERATOR),
    "Identity": OpSpec(Op.HOST, "import", _none, "removed"),
    "Dropout": OpSpec(Op.HOST, "import", _dropout, "removed (inference)"),
    "Constant": OpSpec(None, "import", None, "becomes a constant value"),
}


def op_spec(node: Node) -> OpSpec | None:
    """The registry entry of a node's op (None for host fallbacks and Loom's own ops)."""
    if node.op == Op.HOST:
        return None if node.attrs["fallback"] else SUPPORTED_OPS.get(node.attrs["onnx_op"])
    return SUPPORTED_OPS.get(node.op.value)


def import_onnx(
    model: str | os.PathLike | onnx.ModelProto,
    *,
    host_fallback: bool = False,
    batch: int | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> Graph:
    """Convert an ONNX model (path or ModelProto) to a verified Graph with static shapes.

    Symbolic input dimensions must be pinned: `batch` sets every symbolic leading dimension,
    `input_shapes` whole input shapes (dimensions the model fixes cannot change). With
    `host_fallback`, unsupported nodes become `Op.HOST` nodes instead of errors.
    """
    proto, label = _load(model)
    _check(proto, label)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    _pin_inputs(proto, input_shapes or {}, batch, label)
    try:
        proto = onnx.shape_inference.infer_shapes(
            proto, check_type=True, strict_mode=True, data_prop=True
        )
    except Exception as e:  # onnx raises InferenceError, ValidationError or RuntimeError here
        raise CompileError(f"{label}: shape inference failed: {_one_line(e)}") from None
    return _Importer(proto, label, host_fallback).run()


def _one_line(error: Exception) -> str:
    """An exception message squeezed onto one line."""
    return " ".join(str(error).split())


def _load(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The ModelProto and a label for messages (the file name, or the graph's name)."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)  # pinning input shapes must not touch the caller's model
        return proto, f"model {model.graph.name or '(unnamed)'}"
    label = os.fspath(model)
    try:
        return onnx.load(label), label
    except FileNotFoundError:
        raise CompileError(f"{label}: no such file") from None
    except (DecodeError, ValueError, OSError) as e:
        raise CompileError(f"{label}: not a readable ONNX model: {_one_line(e)}") from None


def _check(proto: onnx.ModelProto, label: str) -> None:
    """Run onnx.checker and require an ai.onnx opset of at least MIN_OPSET."""
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise CompileError(f"{label}: invalid ONNX model: {_one_line(e)}") from None
    opset = _opsets(proto).get("")
    if opset is None:
        raise CompileError(f"{label}: the model imports no ai.onnx opset; opset >= 13 is needed")
    if opset < MIN_OPSET:
        raise CompileError(
            f"{label}: opset {opset} is too old; Loom needs opset >= {MIN_OPSET} "
            f"(onnx.version_converter.convert_version can upgrade it)"
        )
    if proto.graph.sparse_initializer:
        raise CompileError(f"{label}: sparse initializers are not supported; store them dense")


def _opsets(proto: onnx.ModelProto) -> dict[str, int]:
    """The model's opset imports by domain, the ai.onnx domain also under ''."""
    opsets = {d.domain: d.version for d in proto.opset_import}
    if "ai.onnx" in opsets:
        opsets.setdefault("", opsets["ai.onnx"])
    return opsets


def _pin_inputs(
    proto: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], batch: int | None, label: str
) -> None:
    """Write concrete dims from `shapes` and `batch` into the graph inputs' types."""
    initializers = {i.name for i in proto.graph.initializer}
    inputs = {i.name: i for i in proto.graph.input if i.name not in initializers}
    if batch is not None:
        for value in inputs.values():
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = batch
    for name, shape in shapes.items():
        if name not in inputs:
            raise CompileError(f"{label}: input_shapes names {name}, which is not a graph input")
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise CompileError(
                f"{label}: input {name} has rank {len(dims)}, but input_shapes gives {shape}"
            )
        pairs = zip(dims, shape, strict=True)
        if any(d.HasField("dim_value") and d.dim_value != n for d, n in pairs):
            raise CompileError(
                f"{label}: input {name} has shape {_dims(dims)}, input_shapes gives "
                f"{tuple(shape)}; only symbolic dims can be pinned"
            )
        for dim, size in zip(dims, shape, strict=True):
            dim.dim_value = size


def _dims(dims) -> tuple:
    """Dims of a TensorShapeProto as ints, symbol names or '?'."""
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims
    )


class _Importer:
    """Conversion of one shape-inferred ModelProto into a Graph."""

    def __init__(self, proto: onnx.ModelProto, label: str, host_fallback: bool) -> None:
        self.proto, self.label, self.host_fallback = proto, label, host_fallback
        self.opsets = _opsets(proto)
        g = proto.graph
        self.types = {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}
        self.read = {n for node in g.node for n in node.input} | {o.name for o in g.output}
        self.first_reader: dict[str, str] = {}  # value -> "node N (Op)" of its first reader
        for index, node in enumerate(g.node):
            for name in node.input:
                self.first_reader.setdefault(
                    name, f"node {node.name or f'{node.op_type}_{index}'} ({node.op_type})")
        self.graph = Graph({}, [], [], [o.name for o in g.output], g.name or "model")
        self.removable: list[Node] = []

    def run(self) -> Graph:
        """Build, clean and verify the Graph."""
        g, graph = self.proto.graph, self.graph
        for init in g.initializer:
            graph.values[init.name] = self._constant(init.name, numpy_helper.to_array(init))
        # Initializers listed as inputs are defaults a caller may override; Loom freezes them.
        graph.inputs = [i.name for i in g.input if i.name not in graph.values]
        for name in graph.inputs:
            graph.values[name] = self._value(name, graph_input=True)
        for index, proto in enumerate(g.node):
            self._convert(proto, self._node_name(proto, index))
        for node in self.removable:
            others = [n for n in node.outputs[1:] if n in self.read]
            if not others:
                bypass_node(graph, node)
        drop_unused(graph)
        graph.verify()
        return graph

    def _node_name(self, proto: onnx.NodeProto, index: int) -> str:
        """The node's own name, or op_type_index, made unique."""
        base = proto.name or f"{proto.op_type}_{index}"
        taken = {node.name for node in self.graph.nodes}
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def _constant(self, name: str, array: np.ndarray) -> Value:
        """A constant Value of a numpy-native type."""
        if str(array.dtype) not in DTYPES.values():
            raise CompileError(
                f"{self._read_by(name)}constant {name} has element type {array.dtype}; "
                f"{_SUPPORTED_TYPES}"
            )
        return Value(name, array.shape, str(array.dtype), const=array)

    def _read_by(self, name: str) -> str:
        """'node N (Op): ' of the first node reading a value, for messages ('' if none)."""
        return f"{self.first_reader[name]}: " if name in self.first_reader else ""

    def _value(self, name: str, graph_input: bool = False) -> Value:
        """A non-constant Value from the inferred type; static numeric tensors only."""
        if name not in self.types:
            raise CompileError(f"{self.label}: the type of {name} cannot be inferred")
        if not self.types[name].HasField("tensor_type"):
            kind = self.types[name].WhichOneof("value")
            raise CompileError(f"{self._read_by(name)}value {name} has {kind}, not a tensor "
                               f"type; Loom needs tensors")
        tensor = self.types[name].tensor_type
        if tensor.elem_type not in DTYPES:
            type_name = TensorProto.DataType.Name(tensor.elem_type)
            raise CompileError(f"{self._read_by(name)}value {name} has element type "
                               f"{type_name}; {_SUPPORTED_TYPES}")
        dims = _dims(tensor.shape.dim) if tensor.HasField("shape") else None
        if dims is None or not all(isinstance(d, int) for d in dims):
            if graph_input:
                raise CompileError(
                    f"{self.label}: input {name} has shape {dims}; pin its symbolic dims with "
                    f"batch=N or input_shapes={{'{name}': (...)}}"
                )
            raise CompileError(
                f"{self.label}: the shape of {name} cannot be inferred ({dims}); Loom needs "
                f"static shapes"
            )
        return Value(name, dims, DTYPES[tensor.elem_type])

    def _convert(self, proto: onnx.NodeProto, name: str) -> None:
        """Append the IR node of one ONNX node (or a constant, or a host node)."""
        graph = self.graph
        default_domain = proto.domain in ("", "ai.onnx")
        spec = SUPPORTED_OPS.get(proto.op_type) if default_domain else None
        if spec is not None and spec.op is None:
            (out,) = proto.output
            result = ReferenceEvaluator(proto).run(None, {})[0]
            graph.values[out] = self._constant(out, np.asarray(result))
            return
        inputs = list(proto.input)
        while inputs and not inputs[-1]:
            inputs.pop()
        try:
            if spec is None:
                raise _Unsupported("", ", ".join(sorted(SUPPORTED_OPS)))
            attrs = spec.convert(self._proto(proto, name, inputs))
            if spec.op != Op.HOST:
                extra = [n for n in proto.output[1:] if n in self.read]
                if extra:
                    raise _Unsupported(f"with its output {extra[0]} in use", "only output 0")
        except _Unsupported as e:
            op = proto.op_type if default_domain else f"{proto.domain}.{proto.op_type}"
            what = f" {e.what}" if e.what else ""
            message = f"node {name}: op {op}{what} is not supported; supported: {e.supported}"
            if not self.host_fallback:
                raise CompileError(message) from None
            self._proto(proto, name, inputs)
            node = self._host(proto, name, inputs, {"fallback": True}, message)
        else:
            if spec.op == Op.HOST:
                context = f"node {name}: op {proto.op_type}"
                node = self._host(proto, name, inputs, {**attrs, "fallback": False}, context)
                if spec.where == "import":
                    self.removable.append(node)
            else:
                for out in proto.output[1:]:
                    graph.values.pop(out, None)
                node = Node(name, spec.op, inputs[:spec.arity], [proto.output[0]], attrs)
        graph.nodes.append(node)

    def _proto(self, proto: onnx.NodeProto, name: str, inputs: list[str]) -> _Proto:
        """The node under conversion, after adding Values for its outputs."""
        values = self.graph.values
        for out in proto.output:
            if out and out not in values:
                values[out] = self._value(out)
        return _Proto(
            proto,
            name,
            self._attributes(proto),
            [values[n] if n else None for n in inputs],
            [values[n] if n else None for n in proto.output],
        )

    def _attributes(self, proto: onnx.NodeProto) -> dict:
        """The node's attributes over its schema's defaults, strings decoded."""
        attrs = {}
        domain = "" if proto.domain == "ai.onnx" else proto.domain
        if onnx.defs.has(proto.op_type, domain):
            version = self.opsets.get(domain, 1)
            schema = onnx.defs.get_schema(proto.op_type, version, domain)
            for key, attr in schema.attributes.items():
                if attr.default_value.name:
                    attrs[key] = helper.get_attribute_value(attr.default_value)
        for attr in proto.attribute:
            attrs[attr.name] = helper.get_attribute_value(attr)
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}

    def _host(self, proto: onnx.NodeProto, name: str, inputs: list[str], attrs: dict,
              context: str) -> Node:
        """A HOST node that runs `proto` with onnx.reference; checked to be runnable now."""
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in proto.attribute):
            raise CompileError(f"{context}; nodes with subgraphs cannot run on the host either")
        serialized = proto.SerializeToString()
        values = self.graph.values
        named = [n for n in dict.fromkeys(inputs) if n]
        types = tuple((values[n].dtype, values[n].shape) for n in named)
        try:
            host_evaluator(serialized, tuple(self.opsets.items()), types)
        except Exception as e:  # onnx.reference raises NotImplementedError, RuntimeError, ...
            raise CompileError(
                f"{context}; onnx.reference cannot run it on the host: {_one_line(e)}"
            ) from None
        attrs = {
            **attrs,
            "onnx_op": proto.op_type,
            "onnx_domain": proto.domain,
            "onnx_node": serialized,
            "opsets": dict(self.opsets),
        }
        outputs = [n if n in values else "" for n in proto.output]
        return Node(name, Op.HOST, inputs, outputs, attrs)


_SUPPORTED_TYPES = f"supported: {', '.join(DTYPES.values())}"

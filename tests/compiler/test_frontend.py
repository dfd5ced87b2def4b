"""import_onnx: normalized attrs, constants, removed ops, QDQ/QOperator, host fallback, errors."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import DIGITS, OPSET, Builder, assert_close, random_inputs, run_ort

from compiler.frontend import SUPPORTED_OPS, import_onnx, op_spec
from compiler.ir import CompileError, Op
from compiler.reference import KERNELS, run_float

SUPPORTED = ", ".join(sorted(SUPPORTED_OPS))


def one_node(op: str, shape=(1, 3, 7, 7), consts=(), outputs: int = 1, opset: int = OPSET,
             **attrs) -> onnx.ModelProto:
    """A model of one node reading the float input x and the given constant arrays."""
    b = Builder("x", shape, opset=opset)
    names = ["" if c is None else b.const(c) for c in consts]
    y = b.op(op, [b.input, *names], outputs=outputs, name=op.lower(), **attrs)
    return b.model([y])


def only_node(model: onnx.ModelProto, **kwargs):
    """The single node of the imported graph."""
    (node,) = import_onnx(model, **kwargs).nodes
    return node


def check_against_ort(model: onnx.ModelProto, **kwargs) -> None:
    """run_float on the imported model agrees with onnxruntime."""
    inputs = random_inputs(model)
    want = run_ort(model, inputs)
    got = run_float(import_onnx(model, **kwargs), inputs)
    for name in want:
        assert_close(got[name], want[name])


def compile_error(model, **kwargs) -> str:
    """The one-line message of the CompileError that importing raises."""
    with pytest.raises(CompileError) as info:
        import_onnx(model, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_registry():
    """Every entry names an IR op with a float kernel, except Constant, which import folds."""
    for name, spec in SUPPORTED_OPS.items():
        assert spec.where in ("accel", "host", "import")
        assert spec.kernel is not None or name == "Constant"
        if spec.op not in (None, Op.HOST):
            assert spec.op.value == name and spec.kernel is KERNELS[spec.op]
    accel = {n for n, s in SUPPORTED_OPS.items() if s.where == "accel"}
    assert {"Conv", "Gemm", "MatMul", "Relu", "Clip", "Add", "MaxPool", "AveragePool",
            "GlobalAveragePool"} <= accel


def test_digits_model():
    """The bundled model imports with a pinned batch, constants as Values, attrs normalized."""
    graph = import_onnx(DIGITS, batch=4)
    assert [n.op for n in graph.nodes] == [
        Op.CONV, Op.RELU, Op.CONV, Op.BATCHNORM, Op.RELU, Op.CONV, Op.BATCHNORM, Op.RELU,
        Op.FLATTEN, Op.GEMM,
    ]
    assert graph.inputs == ["input"] and graph.outputs == ["logits"]
    assert graph.values["input"].shape == (4, 1, 8, 8)
    assert graph.values["logits"].shape == (4, 10)
    conv2 = graph.nodes[2]
    assert conv2.attrs == {"kernel_shape": (3, 3), "strides": (2, 2), "dilations": (1, 1),
                           "pads": (1, 1, 1, 1), "group": 1}
    assert graph.values[conv2.inputs[1]].const.shape == (16, 8, 3, 3)
    assert graph.values[conv2.outputs[0]].shape == (4, 16, 4, 4)
    assert all(n.target == "host" for n in graph.nodes)  # partitioning decides later


def test_symbolic_batch_must_be_pinned():
    """A symbolic input dim is an error naming the input and the ways to pin it."""
    message = compile_error(DIGITS)
    assert "input input has shape ('batch', 1, 8, 8)" in message
    assert "batch=N" in message and "input_shapes" in message
    graph = import_onnx(DIGITS, input_shapes={"input": (3, 1, 8, 8)})
    assert graph.values["logits"].shape == (3, 10)


@pytest.mark.parametrize(("shapes", "expected"), [
    ({"images": (1, 1, 8, 8)}, "images, which is not a graph input"),
    ({"input": (1, 8, 8)}, "rank 4"),
    ({"input": (1, 3, 8, 8)}, "has shape ('batch', 1, 8, 8), input_shapes gives (1, 3, 8, 8)"),
])
def test_input_shapes_errors(shapes, expected):
    """input_shapes must name inputs, keep their rank and agree with their fixed dims."""
    assert expected in compile_error(DIGITS, input_shapes=shapes)


def test_caller_model_is_not_modified():
    """Pinning a batch works on a copy of a ModelProto argument."""
    model = onnx.load(DIGITS)
    before = model.SerializeToString()
    import_onnx(model, batch=2)
    assert model.SerializeToString() == before


def test_conv_defaults():
    """A Conv without attributes gets kernel_shape from W, unit strides and dilations, no pads."""
    node = only_node(one_node("Conv", consts=[np.ones((4, 3, 3, 2), np.float32)]))
    assert node.attrs == {"kernel_shape": (3, 2), "strides": (1, 1), "dilations": (1, 1),
                          "pads": (0, 0, 0, 0), "group": 1}


@pytest.mark.parametrize(("auto_pad", "pads"), [
    ("SAME_UPPER", (1, 1, 2, 2)), ("SAME_LOWER", (2, 2, 1, 1)), ("VALID", (0, 0, 0, 0)),
])
@pytest.mark.parametrize("op", ["Conv", "MaxPool", "AveragePool"])
def test_auto_pad(op, auto_pad, pads):
    """auto_pad becomes explicit pads (odd padding at the end for SAME_UPPER), same numerics."""
    consts = [np.full((2, 3, 4, 4), 0.1, np.float32)] if op == "Conv" else []
    window = {} if op == "Conv" else {"kernel_shape": [4, 4]}
    model = one_node(op, consts=consts, auto_pad=auto_pad, strides=[2, 2], **window)
    assert only_node(model).attrs["pads"] == pads
    check_against_ort(model)


def test_pool_defaults():
    """Pools get unit strides and dilations, no pads, ceil_mode 0, count_include_pad 0."""
    maxpool = only_node(one_node("MaxPool", kernel_shape=[2, 3]))
    assert maxpool.attrs == {"kernel_shape": (2, 3), "strides": (1, 1), "dilations": (1, 1),
                             "pads": (0, 0, 0, 0), "ceil_mode": 0}
    avgpool = only_node(one_node("AveragePool", kernel_shape=[3, 3], ceil_mode=1))
    assert avgpool.attrs["ceil_mode"] == 1 and avgpool.attrs["count_include_pad"] == 0


def test_gemm_defaults():
    """Gemm gets alpha=beta=1 and no transposes."""
    node = only_node(one_node("Gemm", shape=(2, 3), consts=[np.ones((3, 4), np.float32)]))
    assert node.attrs == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}


@pytest.mark.parametrize(("consts", "bounds"), [
    ([], (-math.inf, math.inf)),
    ([np.float32(-0.5)], (-0.5, math.inf)),
    ([None, np.float32(0.25)], (-math.inf, 0.25)),
    ([np.float32(0.0), np.float32(6.0)], (0.0, 6.0)),
])
def test_clip_bounds_become_attributes(consts, bounds):
    """Clip's constant min/max inputs become attrs, omitted ones the float range; inputs [x]."""
    model = one_node("Clip", consts=consts)
    node = only_node(model)
    assert (node.attrs["min"], node.attrs["max"]) == bounds and node.inputs == ["x"]
    check_against_ort(model)


def test_reshape_shape_is_resolved():
    """Reshape's constant shape input (with 0 and -1) becomes the concrete output shape."""
    model = one_node("Reshape", shape=(2, 3, 4, 5), consts=[np.array([0, -1, 5], np.int64)])
    node = only_node(model)
    assert node.attrs == {"shape": (2, 12, 5)} and node.inputs == ["x"]
    check_against_ort(model)


@pytest.mark.parametrize(("op", "attrs", "expected"), [
    ("Flatten", {"axis": -2}, {"axis": 2}),
    ("Flatten", {}, {"axis": 1}),
    ("Softmax", {}, {"axis": 3}),
    ("Softmax", {"axis": 1}, {"axis": 1}),
    ("Transpose", {}, {"perm": (3, 2, 1, 0)}),
    ("Transpose", {"perm": [0, 2, 3, 1]}, {"perm": (0, 2, 3, 1)}),
])
def test_axis_attributes(op, attrs, expected):
    """Axes become non-negative, defaults filled, and results agree with onnxruntime."""
    model = one_node(op, shape=(2, 3, 4, 5), **attrs)
    assert only_node(model).attrs == expected
    check_against_ort(model)


def test_batchnorm_attributes():
    """BatchNormalization keeps its four parameter inputs and epsilon."""
    c = np.ones(3, np.float32)
    node = only_node(one_node("BatchNormalization", consts=[c, c, c, c], epsilon=1e-3))
    assert node.attrs == {"epsilon": pytest.approx(1e-3)} and len(node.inputs) == 5


def test_constant_identity_and_dropout_disappear():
    """Constant nodes become constant Values; Identity and Dropout are bypassed by name."""
    b = Builder("x", (1, 4))
    k = b.op("Constant", [], value=numpy_helper.from_array(np.full((1, 4), 2.0, np.float32)))
    y = b.op("Add", [b.op("Dropout", [b.op("Identity", [b.input])]), k])
    out = b.op("Identity", [b.op("Relu", [y])])
    graph = import_onnx(b.model([out]))
    assert [n.op for n in graph.nodes] == [Op.ADD, Op.RELU]
    assert graph.nodes[0].inputs[0] == "x"
    assert graph.values[graph.nodes[0].inputs[1]].const.tolist() == [[2.0] * 4]
    assert graph.nodes[1].outputs == [out] and graph.outputs == [out]


def test_identity_between_graph_input_and_output_stays():
    """An Identity from a graph input to a graph output cannot be bypassed: it runs on the host."""
    node = only_node(one_node("Identity"))
    assert node.op == Op.HOST and node.attrs["onnx_op"] == "Identity"
    assert not node.attrs["fallback"]


def test_dropout_in_training_mode_is_rejected():
    """Dropout with training_mode true is not an identity."""
    model = one_node("Dropout", consts=[np.float32(0.5), np.bool_(True)])
    assert "op Dropout in training mode is not supported" in compile_error(model)


def qdq_conv() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 W, per-channel scales)) -> Relu, as QDQ exporters write it."""
    b = Builder("x", (1, 3, 6, 6))
    scale, zero = b.const(np.float32(0.02)), b.const(np.uint8(128))
    xq = b.op("DequantizeLinear", [b.op("QuantizeLinear", [b.input, scale, zero]), scale, zero])
    w = b.const(b.rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8))
    w_scale = b.const(np.array([0.01, 0.02, 0.03, 0.04], np.float32))
    w_zero = b.const(np.zeros(4, np.int8))
    wq = b.op("DequantizeLinear", [w, w_scale, w_zero], axis=0)
    return b.model([b.op("Relu", [b.op("Conv", [xq, wq], pads=[1, 1, 1, 1])])])


def test_qdq_nodes_carry_quant_params():
    """Q/DQ import with axis and dtype; quantized Values get QuantParams."""
    graph = import_onnx(qdq_conv())
    q, dq_x, dq_w = graph.nodes[:3]
    assert (q.op, dq_x.op, dq_w.op) == (Op.QUANTIZE, Op.DEQUANTIZE, Op.DEQUANTIZE)
    assert q.attrs == {"axis": 1, "dtype": "uint8"}
    assert dq_w.attrs == {"axis": 0, "dtype": "float32"}
    xq = graph.values[q.outputs[0]].quant
    assert (xq.scale, xq.zero_point, xq.bits, xq.axis) == (np.float32(0.02), 128, 8, None)
    wq = graph.values[dq_w.inputs[0]].quant
    assert wq.per_channel and wq.axis == 0 and wq.bits == 8
    check_against_ort(qdq_conv())


def qlinear_conv() -> onnx.ModelProto:
    """A QOperator QLinearConv on uint8 input with int8 weights and an int32 bias."""
    b = Builder("x", (1, 3, 6, 6))
    scale, zero = b.const(np.float32(0.02)), b.const(np.uint8(128))
    xq = b.op("QuantizeLinear", [b.input, scale, zero])
    w = b.const(b.rng.integers(-127, 128, (5, 3, 3, 3), dtype=np.int8))
    params = [xq, scale, zero, w, b.const(np.float32(0.01)), b.const(np.int8(0)),
              b.const(np.float32(0.05)), b.const(np.uint8(100)),
              b.const(np.arange(5, dtype=np.int32) * 50)]
    y = b.op("QLinearConv", params, pads=[1, 0, 1, 0], strides=[2, 1])
    return b.model([b.op("DequantizeLinear", [y, b.const(np.float32(0.05)), zero])])


def test_qoperator_imported_as_is():
    """QLinearConv is a HOST node with normalized window attrs; it runs exactly like ORT."""
    graph = import_onnx(qlinear_conv())
    node = graph.nodes[1]
    assert node.op == Op.HOST and node.attrs["onnx_op"] == "QLinearConv"
    assert not node.attrs["fallback"] and op_spec(node).where == "accel"
    assert node.attrs["pads"] == (1, 0, 1, 0) and node.attrs["kernel_shape"] == (3, 3)
    assert node.attrs["strides"] == (2, 1) and node.attrs["group"] == 1
    model = qlinear_conv()
    inputs = random_inputs(model)
    np.testing.assert_array_equal(run_float(graph, inputs)[graph.outputs[0]],
                                  run_ort(model, inputs)[graph.outputs[0]])


@pytest.mark.parametrize(("op", "attrs"), [("Erf", {}), ("LeakyRelu", {"alpha": 0.3})])
def test_host_fallback_runs_unsupported_op(op, attrs):
    """Unsupported ops fail import; with host_fallback they run through onnx.reference."""
    model = one_node(op, **attrs)
    name = op.lower()
    assert compile_error(model) == f"node {name}: op {op} is not supported; supported: {SUPPORTED}"
    node = only_node(model, host_fallback=True)
    assert node.op == Op.HOST and node.attrs["onnx_op"] == op and node.attrs["fallback"]
    assert op_spec(node) is None
    assert onnx.NodeProto.FromString(node.attrs["onnx_node"]).op_type == op
    check_against_ort(model, host_fallback=True)


def test_unsupported_feature_falls_back_whole_node():
    """A supported op with an unsupported feature names it; host_fallback runs the node."""
    model = one_node("MaxPool", shape=(1, 2, 5, 5, 5), kernel_shape=[2, 2, 2])
    assert compile_error(model) == (
        "node maxpool: op MaxPool with a 5-D input is not supported; "
        "supported: 4-D (N, C, H, W) inputs"
    )
    check_against_ort(model, host_fallback=True)


def test_custom_domain_op():
    """An op of another domain is unsupported, and onnx.reference cannot run it either."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    node = helper.make_node("Foo", ["x"], ["y"], domain="com.example", name="foo")
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", 1, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.example", 1)])
    assert compile_error(model).startswith("node foo: op com.example.Foo is not supported")
    assert "onnx.reference cannot run it" in compile_error(model, host_fallback=True)


def test_old_opset_is_rejected():
    """Opset 12 is named, with the minimum and the way to upgrade."""
    message = compile_error(one_node("Relu", opset=12))
    assert message == (
        "model test: opset 12 is too old; Loom needs opset >= 13 "
        "(onnx.version_converter.convert_version can upgrade it)"
    )


def test_malformed_files(tmp_path):
    """Unreadable, missing and invalid files give one line naming the file."""
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model at all\xff\xff")
    assert compile_error(garbage).startswith(f"{garbage}: not a readable ONNX model")
    missing = tmp_path / "missing.onnx"
    assert compile_error(missing) == f"{missing}: no such file"
    model = one_node("Relu")
    model.graph.node[0].input[0] = "undefined"
    invalid = tmp_path / "invalid.onnx"
    onnx.save(model, invalid)
    message = compile_error(invalid)
    assert message.startswith(f"{invalid}: invalid ONNX model:") and "undefined" in message


def test_unsupported_element_type():
    """Values of types numpy cannot hold natively (bfloat16, int4, float8) are rejected, naming
    the node that reads them."""
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    assert compile_error(model).startswith(
        "node Relu_0 (Relu): value x has element type BFLOAT16; supported: float32")


def test_node_names_are_unique():
    """Unnamed and duplicate-named ONNX nodes get unique IR names."""
    b = Builder("x", (1, 4))
    y = b.op("Relu", [b.op("Relu", [b.input])])
    model = b.model([y])
    model.graph.node[0].name = ""
    model.graph.node[1].name = "Relu_0"
    assert [n.name for n in import_onnx(model).nodes] == ["Relu_0", "Relu_0_1"]

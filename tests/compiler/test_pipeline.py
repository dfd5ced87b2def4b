"""The whole compiler: digits CNN to programs, run on the functional simulator, bit-exact."""

import json
from importlib import resources

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import CNN_MODELS, random_inputs, run_ort
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compiler.frontend import import_onnx
from compiler.ir import CompileError, Op
from compiler.model_file import CompiledModel
from compiler.pipeline import accelerated_layers, compile_model, prepare_graph
from compiler.qreference import run_integer
from compiler.reference import run_float
from compiler.runtime import run_batches
from compiler.schedule import ConvSchedule
from compiler.tune.log import layer_key
from isa import load_config

DIGITS = str(resources.files("loom") / "models" / "digits_cnn.onnx")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)


@pytest.fixture(scope="module")
def small_model(digits):
    x_train = digits[0]
    return compile_model(DIGITS, load_config("small"), calib={"input": x_train[:64]}, verify=True)


def test_every_conv_and_gemm_runs_on_the_accelerator(small_model):
    accel = [n for n in small_model.graph.nodes if n.target == "accel"]
    assert [n.op for n in accel] == [Op.QCONV] * 4
    assert set(small_model.layers) == {n.name for n in accel}


def test_accelerator_matches_integer_reference_and_float_accuracy(small_model, digits):
    _, x_test, _, y_test = digits
    x, y = x_test[:60], y_test[:60]
    outputs, report = run_batches(small_model, {"input": x})
    (name,) = small_model.graph.outputs
    expected = np.concatenate([
        run_integer(small_model.graph, {"input": x[i:i + 1]}, small_model.config.acc_bits)[name]
        for i in range(len(x))
    ])
    np.testing.assert_array_equal(outputs[name], expected)
    assert np.mean(outputs[name].argmax(1) == y) >= 0.95
    accel = [layer for layer in report.layers if layer.target == "accel"]
    assert sum(layer.macs for layer in accel) == 60 * (4608 + 18432 + 9216 + 640)
    assert all(layer.bytes_moved > 0 for layer in accel)


def test_model_file_round_trip(small_model, digits, tmp_path):
    path = tmp_path / "digits.loom"
    small_model.save(path)
    loaded = CompiledModel.load(path)
    x = digits[1][:4]
    a, _ = run_batches(small_model, {"input": x})
    b, _ = run_batches(loaded, {"input": x})
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CompileError, match="corrupt or truncated"):
        CompiledModel.load(path)


def test_tuning_log_picks_the_recorded_schedule(digits, tmp_path, capsys):
    cfg = load_config("small")
    schedule = ConvSchedule(rows=2, cols=4, cout=1, cin=1, threads=2)
    graph, _ = prepare_graph(DIGITS, cfg, calib={"input": digits[0][:16]})
    node, shape = accelerated_layers(graph)[0]
    assert node.name == "/0/Conv"
    key = layer_key(cfg, shape, node.attrs)
    log = tmp_path / "tune.jsonl"
    records = [
        {"layer": key, "config_id": cfg.config_id_hex, "cycles": 900,
         "schedule": schedule.to_dict()},
        {"layer": key, "config_id": cfg.config_id_hex, "cycles": 1200,
         "schedule": ConvSchedule(1, 1, 1, 1).to_dict()},
        {"layer": key, "config_id": "00000000", "cycles": 1,
         "schedule": ConvSchedule(1, 2, 1, 1).to_dict()},
        {"layer": key, "config_id": cfg.config_id_hex, "cycles": None, "error": "timeout",
         "schedule": ConvSchedule(1, 2, 1, 1).to_dict()},
    ]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    model = compile_model(DIGITS, cfg, calib={"input": digits[0][:16]}, tuning_log=log)
    assert model.layers["/0/Conv"].schedule == schedule
    assert "no record for /2/Conv" in capsys.readouterr().err
    x = digits[1][:3]
    tuned, _ = run_batches(model, {"input": x})
    (name,) = model.graph.outputs
    expected = np.concatenate([run_integer(model.graph, {"input": x[i:i + 1]})[name]
                               for i in range(3)])
    np.testing.assert_array_equal(tuned[name], expected)


def test_a_malformed_tuning_log_is_one_error(digits, tmp_path):
    log = tmp_path / "tune.jsonl"
    log.write_text('{"layer": "x", "config_id": "1", "cycles": 5, "schedule": {"rows": 1}}\n')
    with pytest.raises(CompileError, match=r"tune.jsonl:1: not a tuning record"):
        compile_model(DIGITS, load_config("small"), calib={"input": digits[0][:8]},
                      tuning_log=log)


def test_calibration_data_must_name_the_inputs():
    with pytest.raises(CompileError, match="calibration data lacks input input"):
        compile_model(DIGITS, load_config("small"), calib={"x": np.zeros((2, 1, 8, 8))})


def _one_node(op: str, inputs: dict, output: tuple, consts: dict | None = None, **attrs):
    """A one-node model: inputs and output as {name: (elem_type, shape)}, constants by name."""
    consts = consts or {}
    graph = helper.make_graph(
        [helper.make_node(op, [*inputs, *consts], ["y"], **attrs)], "one",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info("y", *output)],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


FLOAT = TensorProto.FLOAT
ODD_INPUTS = {  # models whose inputs or outputs do not all lead with the batch dimension
    "weight input": (_one_node("MatMul", {"a": (FLOAT, (5, 3)), "b": (FLOAT, (3, 4))},
                               (FLOAT, (5, 4))), {"a": (5, 3), "b": (3, 4)}),
    "scalar input": (_one_node("Add", {"a": (FLOAT, (2, 3)), "b": (FLOAT, ())},
                               (FLOAT, (2, 3))), {"a": (2, 3), "b": ()}),  # a QADD: 1% error
    "scalar output": (_one_node("MatMul", {"a": (FLOAT, (3,)), "b": (FLOAT, (3,))},
                                (FLOAT, ())), {"a": (3,), "b": (3,)}),
    "empty input": (_one_node("Reshape", {"a": (FLOAT, (0, 3, 4))}, (FLOAT, (3, 4, 0)),
                              {"s": np.array([3, 4, 0])}, allowzero=1), {"a": (0, 3, 4)}),
    "no input": (helper.make_model(helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value_float=2.0)], "c", [],
        [helper.make_tensor_value_info("y", FLOAT, ())]),
        opset_imports=[helper.make_opsetid("", 17)]), {}),
}


@pytest.mark.filterwarnings("ignore:no calibration data")
@pytest.mark.parametrize("case", ODD_INPUTS)
def test_inputs_and_outputs_without_a_batch_dimension(case):
    """Inputs are split along axis 0 by their own compiled shapes; rank-0 ones go whole."""
    model, shapes = ODD_INPUTS[case]
    rng = np.random.default_rng(0)
    feeds = {n: rng.random(s).astype(np.float32) for n, s in shapes.items()}
    compiled = compile_model(model, load_config("small"), calib=feeds or None)
    got, _ = run_batches(compiled, feeds)
    want = run_float(import_onnx(model), feeds)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6 if case != "scalar input" else 0.02)
    if case == "weight input":  # two batches: every input stacks two of its compiled shapes
        twice = {n: np.concatenate([a, 2 * a]) for n, a in feeds.items()}
        got, _ = run_batches(compiled, twice)
        np.testing.assert_allclose(got["y"][5:], 4 * want["y"], rtol=1e-6)
        with pytest.raises(CompileError, match="different numbers of batches"):
            run_batches(compiled, {"a": twice["a"], "b": feeds["b"]})
        with pytest.raises(CompileError, match=r"stack arrays of the compiled shape \(5, 3\)"):
            run_batches(compiled, {"a": twice["a"][:7], "b": feeds["b"]})
        # Calibration drops a partial last batch.
        compile_model(model, load_config("small"), calib={"a": twice["a"][:7], "b": feeds["b"]})


@pytest.mark.parametrize("preset", ["small", "nonsquare"])
def test_depthwise_and_grouped_convs_and_pools_run_on_the_accelerator(preset, tmp_path):
    """The MobileNet-like test model: every conv (depthwise, grouped, pointwise) and both pools
    on the accelerator, bit-exact with the integer reference, the output within 4 quanta of
    onnxruntime's float result, and the same through a saved model file."""
    cfg = load_config(preset)
    model = CNN_MODELS["depthwise"](2)
    samples = [random_inputs(model, seed=s) for s in range(8)]
    calib = {"x": np.concatenate([s["x"] for s in samples])}
    compiled = compile_model(model, cfg, calib=calib, verify=True)
    graph = compiled.graph
    accel = [n for n in graph.nodes if n.target == "accel"]
    assert [n.op for n in graph.nodes if n.target == "host"] == \
        [Op.QUANTIZE, Op.FLATTEN, Op.RESHAPE, Op.RESHAPE, Op.DEQUANTIZE]
    assert sorted(n.attrs["groups"] for n in accel) == [1, 1, 1, 4, 5, 20, 20, 24, 40, 40]
    scale = float(graph.values[graph.nodes[-1].inputs[0]].quant.scale)
    x = random_inputs(model, seed=100)["x"]
    x = np.concatenate([x, random_inputs(model, seed=101)["x"]])
    got, report = run_batches(compiled, {"x": x})
    (out,) = graph.outputs
    want = np.concatenate([run_integer(graph, {"x": x[i:i + 2]}, cfg.acc_bits)[out]
                           for i in (0, 2)])
    np.testing.assert_array_equal(got[out], want)
    ort = np.concatenate([run_ort(model, {"x": x[i:i + 2]})[out] for i in (0, 2)])
    assert np.abs(got[out] - ort).max() <= 4 * scale
    depthwise = [layer for layer in report.layers if layer.node == "Conv_conv10"]
    assert depthwise and depthwise[0].target == "accel" and depthwise[0].macs == \
        4 * 24 * 9 * 9 * 8
    path = tmp_path / "depthwise.loom"
    compiled.save(path)
    again, _ = run_batches(CompiledModel.load(path), {"x": x})
    np.testing.assert_array_equal(again[out], got[out])


@pytest.mark.slow
def test_depthwise_model_on_the_verilator_model_matches_the_functional_simulator():
    """Grouped, depthwise and pooling layers give the same outputs on the RTL as on the
    functional simulator (their sparse weight loads and uop kernels included)."""
    cfg = load_config("small")
    model = CNN_MODELS["depthwise"](2)
    compiled = compile_model(model, cfg, calib=random_inputs(model))
    x = random_inputs(model, seed=5)
    want, _ = run_batches(compiled, x, "functional")
    got, report = run_batches(compiled, x, "rtl")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert all(layer.cycles for layer in report.layers if layer.target == "accel")

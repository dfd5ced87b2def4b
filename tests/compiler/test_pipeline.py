"""The whole compiler: digits CNN to programs, run on the functional simulator, bit-exact."""

import json
from importlib import resources

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compiler.ir import CompileError, Op
from compiler.model_file import CompiledModel
from compiler.pipeline import accelerated_layers, compile_model, prepare_graph
from compiler.qreference import run_integer
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

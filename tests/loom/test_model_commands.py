"""`loom compile` and `loom run` on the bundled digits CNN, and their one-line errors."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.pipeline import compile_model
from isa import load_config
from loom.cli import main
from loom.demo import digits_split

DIGITS = "loom/models/digits_cnn.onnx"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    x_train, x_test, _, y_test = digits_split()
    np.savez(folder / "calib.npz", input=x_train[:32])
    np.savez(folder / "test.npz", input=x_test[:12])
    np.save(folder / "test.npy", x_test[:12])
    model = compile_model(DIGITS, load_config("small"), calib={"input": x_train[:32]})
    model.save(folder / "prebuilt.loom")
    return folder, y_test[:12]


def test_compile_then_run_with_check(capsys, data):
    folder, labels = data
    model = folder / "digits.loom"
    code, out, _ = run(capsys, "compile", DIGITS, "--config", "small", "--calib",
                       str(folder / "calib.npz"), "-o", str(model), "--verify")
    assert code == 0 and "4 layers on the accelerator" in out
    code, out, _ = run(capsys, "run", str(model), "--input", str(folder / "test.npz"), "--check",
                       "--reference", DIGITS, "--json", "-o", str(folder / "out.npz"))
    report = json.loads(out)
    assert code == 0 and report["check"]["pass"]
    logits = np.load(folder / "out.npz")["logits"]
    assert logits.shape == (12, 10)
    assert np.mean(logits.argmax(1) == labels) >= 0.9
    accel = [layer for layer in report["report"]["layers"] if layer["target"] == "accel"]
    assert len(accel) == 4 and all(layer["macs"] > 0 for layer in accel)


def test_run_an_onnx_model_directly(capsys, data):
    folder, _ = data
    code, out, _ = run(capsys, "run", DIGITS, "--config", "small", "--input",
                       str(folder / "test.npy"))
    assert code == 0 and "accel" in out and "host" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["compile", "missing.onnx"], "missing.onnx"),
        (["run", "{folder}/test.npz"], "not a compiled Loom model"),
        (["run", "{folder}/prebuilt.loom", "--check"], "needs --reference"),
        (["run", "{folder}/prebuilt.loom", "--config", "small"], "carries its own"),
        (["run", "{folder}/prebuilt.loom", "--input", "{folder}/missing.npz"], "cannot read"),
    ],
)
def test_bad_input_is_one_line(capsys, data, argv, fragment):
    folder, _ = data
    argv = [a.replace("{folder}", str(folder)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], err


NODE_TESTS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


@pytest.mark.parametrize(("test", "fragment"), [
    ("test_constant", None),  # no graph input
    ("test_dropout_default_ratio", None),  # a rank-0 input
    ("test_gemm_default_scalar_bias", None),  # weights given as inputs
    ("test_matmul_1d_1d", None),  # a scalar output
    ("test_reshape_allowzero_reordered", "non-constant shape"),  # an empty input
    ("test_maxpool_2d_uint8", None),  # an integer tensor of a float model
    ("test_batchnorm_example", None),
    ("test_qlinearmatmul_2D_uint8_float32", "node QLinearMatMul_0_dequantize (DequantizeLinear)"),
])
def test_compiling_onnx_node_tests_never_shows_a_traceback(capsys, tmp_path, test, fragment):
    """ONNX node-test models, calibrated on their inputs, compile or fail with one line naming
    the node (no traceback)."""
    folder = NODE_TESTS / test
    model = onnx.load(folder / "model.onnx")
    files = sorted(folder.glob("test_data_set_0/input_*"))  # fewer than 10 in these tests
    inputs = {i.name: numpy_helper.to_array(onnx.load_tensor(str(f)))
              for i, f in zip(model.graph.input, files, strict=True)}
    np.savez(tmp_path / "calib.npz", **inputs)
    batch = next((len(a) for a in inputs.values() if a.ndim and len(a)), 1)
    code, _, err = run(capsys, "compile", str(folder / "model.onnx"), "--config", "small",
                       "--calib", str(tmp_path / "calib.npz"), "--batch", str(batch),
                       "-o", str(tmp_path / "m.loom"))
    if fragment is None:
        assert code == 0, err
    else:
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and fragment in lines[0], err

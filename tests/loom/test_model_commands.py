"""`loom compile` and `loom run` on the bundled digits CNN, and their one-line errors."""

import json

import numpy as np
import pytest

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

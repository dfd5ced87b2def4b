"""The demo: Verilog for `default`, a hand-written sample program, and the digits CNN end to end.

1. generate the accelerator's Verilog for the `default` config;
2. assemble and run the bundled sample program (matmul + bias + ReLU + requantization) on the
   functional simulator and check it against numpy;
3. compile the bundled digits classifier (trained by scripts/train_digits.py) for `default`,
   run scikit-learn's digits test split on the chosen backend (the Verilator RTL simulation by
   default) and report accuracy next to onnxruntime's float accuracy, cycles per image and
   utilization.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from isa.asm import assemble
from isa.config import load_config
from isa.packing import wrap
from sim.functional import FunctionalSim

SAMPLE = "matmul_bias_relu.s"
M = K = N = 8
BLOCK = 4
DIGITS_MODEL = "digits_cnn.onnx"
CALIBRATION_IMAGES = 100


def sample_text() -> str:
    """Source text of the bundled sample program."""
    return (resources.files("loom") / "samples" / SAMPLE).read_text()


def reference(a: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What the sample computes, in numpy: min(rshr(max(A@W + bias, 0), 2), 127) as int8."""
    acc = np.maximum(a @ w + bias, 0)
    acc = np.minimum((acc + 2) >> 2, 127)
    return wrap(acc, 8)


def sample_program(seed: int = 0):
    """The assembled sample and a DRAM image with seeded A, W and bias; also A, W and bias."""
    program = assemble(sample_text(), source=SAMPLE)
    rng = np.random.default_rng(seed)
    a = rng.integers(-8, 9, size=(M, K))
    w = rng.integers(-8, 9, size=(K, N))
    bias = rng.integers(-64, 65, size=N)

    dram = program.dram_image()
    kb, nb = K // BLOCK, N // BLOCK
    program.write(dram, "A", a.reshape(M * kb, 1, BLOCK))
    blocks = w.reshape(kb, BLOCK, nb, BLOCK).transpose(2, 0, 3, 1)  # [nb][kb][out][in]
    program.write(dram, "W", blocks.reshape(nb * kb, BLOCK, BLOCK))
    program.write(dram, "bias", bias.reshape(nb, 1, BLOCK))
    return program, dram, (a, w, bias)


def run_sample(seed: int = 0) -> dict:
    """Run the sample on random data; return the check result and simulator statistics."""
    program, dram, (a, w, bias) = sample_program(seed)
    stats = FunctionalSim(program.config).run(program, dram)
    got = program.read(dram, "C").reshape(M, N)
    expected = reference(a, w, bias)
    return {
        "program": SAMPLE,
        "config": program.config.name,
        "seed": seed,
        "correct": bool(np.array_equal(got, expected)),
        "elements": int(got.size),
        "max_abs_diff": int(np.abs(got - expected).max()),
        "stats": stats.to_dict(),
    }


def digits_split():
    """scikit-learn's digits as NCHW float32 in [0, 1], split as the model was trained."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)


def run_digits(config: str = "default", backend: str = "rtl", images: int | None = None) -> dict:
    """Compile the digits CNN, run the test split on a backend, compare with onnxruntime."""
    import onnxruntime as ort

    from compiler.pipeline import compile_model
    from compiler.runtime import run_batches

    model_path = str(resources.files("loom") / "models" / DIGITS_MODEL)
    x_train, x_test, _, y_test = digits_split()
    if images is not None:
        x_test, y_test = x_test[:images], y_test[:images]
    cfg = load_config(config)
    model = compile_model(model_path, cfg, calib={"input": x_train[:CALIBRATION_IMAGES]})
    outputs, report = run_batches(model, {"input": x_test}, backend)
    logits = outputs[model.graph.outputs[0]]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    float_logits = session.run(None, {"input": x_test})[0]
    accel = [layer for layer in report.layers if layer.target == "accel"]
    cycles = report.cycles
    macs = sum(layer.macs for layer in accel)
    return {
        "model": DIGITS_MODEL,
        "config": cfg.name,
        "backend": backend,
        "images": len(x_test),
        "accuracy": float(np.mean(logits.argmax(1) == y_test)),
        "float_accuracy": float(np.mean(float_logits.argmax(1) == y_test)),
        "accelerated_layers": len(accel),
        "host_ops": len(report.layers) - len(accel),
        "cycles_per_image": None if cycles is None else cycles / len(x_test),
        "utilization": None if not cycles else macs / (cycles * cfg.macs_per_cycle),
        "layers": [layer.to_dict() for layer in accel],
    }


def run_demo(out_dir: str | Path = "build/demo", backend: str = "rtl", seed: int = 0) -> dict:
    """All three steps; the report of each."""
    from hw.verilog import write

    verilog = write(load_config("default"), out_dir)
    return {
        "verilog": verilog,
        "sample": run_sample(seed),
        "digits": run_digits("default", backend),
    }

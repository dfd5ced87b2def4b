"""The demo: assemble the bundled sample program, run it on the functional simulator, check it."""

from __future__ import annotations

from importlib import resources

import numpy as np

from isa.asm import assemble
from isa.packing import wrap
from sim.functional import FunctionalSim

SAMPLE = "matmul_bias_relu.s"
M = K = N = 8
BLOCK = 4


def sample_text() -> str:
    """Source text of the bundled sample program."""
    return (resources.files("loom") / "samples" / SAMPLE).read_text()


def reference(a: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What the sample computes, in numpy: min(rshr(max(A@W + bias, 0), 2), 127) as int8."""
    acc = np.maximum(a @ w + bias, 0)
    acc = np.minimum((acc + 2) >> 2, 127)
    return wrap(acc, 8)


def run_demo(seed: int = 0) -> dict:
    """Run the sample on random data; return the check result and simulator statistics."""
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

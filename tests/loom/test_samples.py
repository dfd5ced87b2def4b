"""The matmul sample program: results, exact statistics, token balance and argument checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from isa.config import load_config
from isa.formats import MemType, Opcode
from isa.instructions import TokenQueue, pops, pushes
from loom.samples import blocked, matmul_program, matmul_reference, matmul_tiling, unblocked
from sim.functional import run

CASES = [
    # preset, m, k, n: one tile, then tails in every dimension and several k-steps
    ("small", 8, 8, 8),
    ("small", 52, 132, 44),
    ("small", 64, 256, 64),
    ("default", 32, 64, 48),
    ("default", 64, 1040, 80),
    ("int4", 16, 96, 64),
    ("nonsquare", 34, 1032, 272),
]
FLAGS = [
    {"bias": True, "relu": True, "shift": 0},
    {"bias": False, "relu": False, "shift": 0},
    {"bias": True, "relu": False, "shift": 7},
    {"bias": False, "relu": True, "shift": 3},
]


def expected_stats(sample, m: int, k: int, n: int, flags: dict) -> dict:
    """What the simulator must count for a matmul sample, from its tiling."""
    cfg, t = sample.program.config, sample.tiling
    rows, kb, nb = m // cfg.batch, k // cfg.block_in, n // cfg.block_out
    tiles_m, tiles_n = math.ceil(rows / t.rows), math.ceil(nb / t.n_blocks)
    steps = math.ceil(kb / t.k_blocks)
    tiles = tiles_m * tiles_n
    bias, alus = flags["bias"], int(flags["relu"]) + int(flags["shift"] > 0)
    kernels = sample.program.kernels
    return {
        "instructions": len(sample.program.insns),
        "insns": {
            "LOAD": len(kernels) + tiles * (2 * steps + bias),
            "STORE": tiles,
            "GEMM": tiles * (steps + (not bias)),
            "ALU": tiles * alus,
            "FINISH": 1,
            "NOP": 4 * t.threads,
        },
        "bytes_loaded": {
            "uop": 4 * sum(len(u) for u in kernels.values()),
            "inp": rows * kb * cfg.elem_bytes("inp") * tiles_n,
            "wgt": nb * kb * cfg.elem_bytes("wgt") * tiles_m,
            "acc": rows * nb * cfg.elem_bytes("acc") * bias,
        },
        "bytes_stored": {"out": rows * nb * cfg.elem_bytes("out")},
        "gemm_uops": rows * nb * (kb + (not bias)),
        "macs": m * k * n,
        "alu_uops": rows * nb * alus,
        "alu_lane_ops": rows * nb * alus * cfg.batch * cfg.block_out,
    }


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"{k}{v}" for k, v in f.items()))
@pytest.mark.parametrize(("preset", "m", "k", "n"), CASES)
def test_matmul_matches_numpy_with_exact_stats(preset, m, k, n, flags, threads):
    sample = matmul_program(load_config(preset), m, k, n, virtual_threads=threads, seed=7, **flags)
    dram, stats = run(sample.program, sample.dram())
    np.testing.assert_array_equal(sample.output(dram), sample.expected())
    assert stats.to_dict() == expected_stats(sample, m, k, n, flags)


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_never_deadlocks_on_the_shallowest_queues(threads):
    cfg = dataclasses.replace(load_config("small"), insn_queue_depth=2, dep_queue_depth=2)
    sample = matmul_program(cfg, 40, 160, 36, virtual_threads=threads, shift=2, seed=3)
    dram, _ = run(sample.program, sample.dram())
    np.testing.assert_array_equal(sample.output(dram), sample.expected())


@pytest.mark.parametrize("threads", [1, 2])
def test_every_token_pushed_is_popped(threads):
    program = matmul_program(load_config("small"), 40, 160, 36, virtual_threads=threads).program
    for queue in TokenQueue:
        pushed = sum(queue in pushes(insn) for insn in program.insns)
        popped = sum(queue in pops(insn) for insn in program.insns)
        assert pushed == popped > 0, queue


def test_two_threads_alternate_buffer_halves():
    cfg = load_config("small")
    program = matmul_program(cfg, 40, 160, 36, virtual_threads=2).program
    inp = [i.sram_base for i in program.insns if i.op == Opcode.LOAD and i.mem == MemType.INP
           and i.x_size]
    store = [i.sram_base for i in program.insns if i.op == Opcode.STORE and i.x_size]
    assert inp[:4] == [0, cfg.inp_depth // 2] * 2
    assert store[:4] == [0, cfg.acc_depth // 2] * 2


@pytest.mark.parametrize("preset", ["small", "default", "int4", "nonsquare"])
@pytest.mark.parametrize("threads", [1, 2])
def test_tiles_fit_each_threads_share_of_the_buffers(preset, threads):
    cfg = load_config(preset)
    t = matmul_tiling(cfg, 300, 300, 300, threads)
    assert t.rows * t.k_blocks <= cfg.inp_depth // threads
    assert t.n_blocks * t.k_blocks <= cfg.wgt_depth // threads
    assert t.rows * t.n_blocks <= cfg.acc_depth // threads
    assert min(t.rows, t.k_blocks, t.n_blocks) >= 1


def test_layout_of_inputs_and_outputs():
    cfg = load_config("nonsquare")  # batch 2, block_in 8, block_out 16
    sample = matmul_program(cfg, 4, 16, 32, seed=1)
    a = unblocked(sample.inputs["A"], 4, 16)
    assert sample.inputs["A"].shape == (2 * 2, 2, 8)
    np.testing.assert_array_equal(sample.inputs["A"][1], a[0:2, 8:16])  # row block 0, k-block 1
    w_t = unblocked(sample.inputs["W"], 32, 16)  # W^T blocks [out][in], n-blocks by k-blocks
    np.testing.assert_array_equal(sample.inputs["W"][1], w_t[0:16, 8:16])
    assert sample.inputs["bias"].shape == (2, 2, 16)
    assert (sample.inputs["bias"][:, 0] == sample.inputs["bias"][:, 1]).all()
    m = np.arange(24).reshape(4, 6)
    np.testing.assert_array_equal(unblocked(blocked(m, 2, 3), 4, 6), m)


def test_reference_semantics():
    cfg = dataclasses.replace(load_config("small"), acc_bits=16)
    a, w = np.array([[100, 100]]), np.array([[100], [100]])  # 20000, wraps at 16 bits
    got = matmul_reference(cfg, a, w, np.array([-4000]), relu=False, shift=0)
    assert got.item() == 16000 % 256 - 256 * (16000 % 256 >= 128)
    got = matmul_reference(cfg, a, w, np.array([20000]), relu=True, shift=4)  # 40000 wraps < 0
    assert got.item() == 0
    got = matmul_reference(cfg, -a, w, None, relu=False, shift=3)  # -20000 >> 3 = -2500
    assert got.item() == -2500 % 256 - 256 * (-2500 % 256 >= 128)


def test_seed_makes_inputs_reproducible():
    cfg = load_config("small")
    one, two = matmul_program(cfg, 8, 8, 8, seed=5), matmul_program(cfg, 8, 8, 8, seed=5)
    assert all(np.array_equal(one.inputs[k], two.inputs[k]) for k in one.inputs)
    fresh = matmul_program(cfg, 8, 8, 8)
    again = matmul_program(cfg, 8, 8, 8, seed=fresh.seed)
    np.testing.assert_array_equal(fresh.expected(), again.expected())


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((5, 8, 8), {}, "m=5 must be a positive multiple of 2"),
        ((8, 6, 8), {}, "k=6 must be a positive multiple of 4"),
        ((8, 8, 10), {}, "n=10"),
        ((0, 8, 8), {}, "m=0"),
        ((8, 8, 8), {"virtual_threads": 3}, "virtual_threads must be 1 or 2"),
        ((8, 8, 8), {"shift": -1}, "shift must be from 0 to acc_bits=32"),
    ],
)
def test_bad_arguments(args, kwargs, message):
    cfg = dataclasses.replace(load_config("small"), batch=2)
    with pytest.raises(ValueError, match=message):
        matmul_program(cfg, *args, **kwargs)

"""The GEMM core against isa.semantics.gemm: every lane width, several shapes, streamed inputs."""

import dataclasses
import gc
import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from hw.gemm import GemmCore, lut_product
from isa import load_config
from isa.semantics import gemm

SEED = 7

# 2x8x4 keeps 1-bit INP and WGT elements whole bytes and gives an odd number of tree levels.
WIDTHS = [(1, 1), (2, 2), (4, 4), (8, 8), (1, 8), (8, 1), (2, 4)]
SHAPES = [(1, 1, 4), (1, 4, 4), (2, 2, 8)]


def _operands(cfg, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` (inp, wgt) element pairs: the extremes of each width first, then random lanes."""
    def lanes(bits, shape):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        values = rng.integers(lo, hi, size=(count, *shape), endpoint=True)
        values[0], values[1], values[2] = lo, hi, lo  # lo*lo is the largest product
        return values

    inp = lanes(cfg.inp_bits, cfg.elem_shape("inp"))
    wgt = lanes(cfg.wgt_bits, cfg.elem_shape("wgt"))
    wgt[1] = wgt[0]  # hi * lo, the most negative product
    return inp, wgt


def _run(cfg, inp, wgt, valid):
    """Stream pairs into a GemmCore (valid pattern `valid`); return its sums and cycle stamps."""
    dut = GemmCore(cfg)
    got = []

    async def tb(ctx):
        pairs = iter(zip(inp.reshape(len(inp), -1), wgt.reshape(len(wgt), -1), strict=True))
        for cycle, fire in enumerate([*valid, *[False] * dut.latency]):
            ctx.set(dut.valid, fire)
            if fire:
                x, w = next(pairs)
                ctx.set(dut.inp, x.tolist())
                ctx.set(dut.wgt, w.tolist())
            await ctx.tick()
            if ctx.get(dut.valid_out):
                got.append((cycle, list(ctx.get(dut.sums))))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return dut, got


def _check(cfg, count, bubbles, seed):
    rng = np.random.default_rng(seed)
    inp, wgt = _operands(cfg, count, rng)
    pattern = random.Random(seed)
    valid = [True] * count
    for _ in range(bubbles):
        valid.insert(pattern.randrange(1, len(valid)), False)
    dut, got = _run(cfg, inp, wgt, valid)
    want = gemm(inp, wgt).reshape(count, -1)
    fired = [c for c, v in enumerate(valid) if v]
    assert [c for c, _ in got] == [c + dut.latency - 1 for c in fired], f"seed {seed}"
    for n, (_, sums) in enumerate(got):
        assert sums == want[n].tolist(), f"seed {seed}: pair {n}"
    assert dut.sum_bits == cfg.inp_bits + cfg.wgt_bits + (cfg.block_in.bit_length() - 1)


@pytest.mark.parametrize(("inp_bits", "wgt_bits"), WIDTHS)
def test_every_lane_width_is_exact(inp_bits, wgt_bits):
    cfg = dataclasses.replace(
        load_config("small"), batch=2, block_in=8, inp_bits=inp_bits, wgt_bits=wgt_bits
    )
    _check(cfg, count=24, bubbles=4, seed=SEED + 10 * inp_bits + wgt_bits)


@pytest.mark.parametrize(("inp_bits", "wgt_bits"), WIDTHS)
def test_lut_multipliers_are_exact(inp_bits, wgt_bits):
    """lut_mult_bits builds the products from partial products: same sums, same timing."""
    cfg = dataclasses.replace(
        load_config("small"), batch=2, block_in=8, inp_bits=inp_bits, wgt_bits=wgt_bits,
        lut_mult_bits=8,
    )
    assert cfg.lut_multipliers
    _check(cfg, count=24, bubbles=4, seed=SEED + 100 + 10 * inp_bits + wgt_bits)


def test_lut_product_is_every_product_of_two_bytes():
    """Exhaustively: all 65,536 products of two signed bytes (and 4 x 4 bits)."""
    for bits in (4, 8):
        a, b = Signal(signed(bits)), Signal(signed(bits))
        product = Signal(signed(2 * bits))
        m = Module()
        m.d.comb += product.eq(lut_product(a, b))
        values = range(-(1 << (bits - 1)), 1 << (bits - 1))
        wrong = []

        async def tb(ctx, a=a, b=b, product=product, values=values, wrong=wrong):
            for x in values:
                for y in values:
                    ctx.set(a, x)
                    ctx.set(b, y)
                    if ctx.get(product) != x * y:
                        wrong.append((x, y, ctx.get(product)))

        sim = Simulator(m)
        sim.add_testbench(tb)
        sim.run()
        assert not wrong, f"{bits}-bit products wrong: {wrong[:4]}"


@pytest.mark.parametrize(("batch", "block_in", "block_out"), SHAPES)
def test_shapes_stream_back_to_back(batch, block_in, block_out):
    cfg = dataclasses.replace(
        load_config("small"), batch=batch, block_in=block_in, block_out=block_out
    )
    _check(cfg, count=20, bubbles=0, seed=SEED + block_in)


def test_default_shape():
    _check(load_config("default"), count=6, bubbles=1, seed=SEED)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # only asked its latency
def test_latency_follows_the_adder_tree():
    small = load_config("small")
    latencies = [
        GemmCore(dataclasses.replace(small, block_in=n)).latency for n in (1, 2, 4, 8, 16)
    ]
    # Input and product registers, then one register per two adder levels and after the last.
    assert latencies == [2, 3, 3, 4, 4]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # half-built on purpose
def test_rejects_non_config():
    with pytest.raises(TypeError, match="cfg must be an HwConfig"):
        GemmCore("small")
    gc.collect()  # the half-built component warns when collected: do it under the filter

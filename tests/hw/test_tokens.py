"""Token queues count pushes and pops and report room and availability."""

from amaranth.sim import Simulator

from hw.tokens import TokenQueue


def test_counts_saturate_at_depth():
    dut = TokenQueue(3)
    seen = []

    async def bench(ctx):
        assert not ctx.get(dut.can_pop) and ctx.get(dut.can_push)
        for push, pop in [(1, 0), (1, 0), (1, 1), (1, 0), (0, 0), (0, 1), (0, 1), (0, 1)]:
            ctx.set(dut.push, push)
            ctx.set(dut.pop, pop)
            await ctx.tick()
            seen.append((ctx.get(dut.count), ctx.get(dut.can_push), ctx.get(dut.can_pop)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [
        (1, 1, 1), (2, 1, 1), (2, 1, 1), (3, 0, 1), (3, 0, 1), (2, 1, 1), (1, 1, 1), (0, 1, 0),
    ]

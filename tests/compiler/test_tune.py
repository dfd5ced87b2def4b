"""The tuner without the RTL: keys, log, search space, analytic model, cost model, search."""

import itertools
import json
import math

import numpy as np
import pytest

from compiler.ir import CompileError
from compiler.schedule import ConvSchedule, fits
from compiler.tune.analytic import counters, predict_cycles
from compiler.tune.log import (
    TuningRecord,
    append_records,
    best_schedules,
    layer_key,
    parse_layer_key,
    read_records,
)
from compiler.tune.model import CostModel
from compiler.tune.search import TuneResult, random_search, tune_task
from compiler.tune.space import ScheduleSpace
from compiler.tune.tasks import conv_task
from isa import load_config
from isa.formats import MemType, Opcode
from sim.functional import FunctionalSim

SMALL = load_config("small")


def test_layer_keys_read_back_to_the_layer():
    task = conv_task(SMALL, (1, 10, 9, 7), 6, 3, stride=2)
    layer = parse_layer_key(task.key)
    assert layer.input_shape == (1, 10, 9, 7)
    assert (layer.out_channels, layer.kernel, layer.strides) == (6, (3, 3), (2, 2))
    assert layer.conv_shape(SMALL) == task.shape
    assert layer.epilogue == "prc"  # RSHR pre_shift, MULR, CLIP (after the bias MOV)
    assert layer.per_channel and layer.epilogue_ops == 3
    # A key logged before MULR existed keeps its own count.
    old = parse_layer_key("conv n1 c64 56x56 o64 k3x3 s1x1 p1,1,1,1 epvqlh")
    assert old.per_channel and old.epilogue_ops == 5
    with pytest.raises(CompileError, match="not a layer key"):
        parse_layer_key("conv of some kind")
    # A grouped layer names its groups, so its records never apply to the dense layer.
    grouped = conv_task(SMALL, (1, 12, 9, 7), 12, 3, groups=12)
    assert " g12 " in grouped.key and grouped.key != conv_task(SMALL, (1, 12, 9, 7), 12, 3).key
    assert parse_layer_key(grouped.key).conv_shape(SMALL) == grouped.shape
    assert grouped.shape.block_inputs == ((0, 1), (1, 2), (2, 3))


def test_the_space_is_exactly_the_legal_schedules():
    task = conv_task(SMALL, (1, 12, 6, 5), 8, 3)
    space = ScheduleSpace(SMALL, task.shape)
    s = task.shape
    legal = [
        ConvSchedule(r, c, co, ci, t)
        for r, c, co, ci, t in itertools.product(
            range(1, s.out_height + 1), range(1, s.out_width + 1),
            range(1, s.cout_blocks + 1), range(1, s.cin_blocks + 1), (1, 2))
        if fits(SMALL, s, ConvSchedule(r, c, co, ci, t))
    ]
    assert len(space) == len(legal) > 0
    assert sorted(map(tuple, (vars(space.point(i)).values() for i in range(len(space))))) == \
        sorted(map(tuple, (vars(p).values() for p in legal)))
    rng = np.random.default_rng(3)
    sample = space.sample(rng, 20)
    assert len(set(sample)) == 20 and all(p in space for p in sample)
    for point in sample:
        assert space.neighbour(point, rng) in space


@pytest.mark.parametrize("seed", range(10))
def test_analytic_counters_match_the_functional_simulator(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(3, 9, 2))
    kernel, stride = [(1, 1), (3, 1), (3, 2), (5, 1)][seed % 4]
    if seed >= 6:  # grouped and depthwise: only the non-zero weight blocks are loaded and run
        groups, per_in, per_out = [(13, 1, 1), (4, 3, 2), (3, 2, 5), (6, 1, 2)][seed - 6]
        task = conv_task(SMALL, (1, groups * per_in, h, w), groups * per_out, kernel, stride,
                         seed=seed, groups=groups)
        assert task.shape.sparse
    else:
        task = conv_task(SMALL, (1, int(rng.integers(3, 13)), h, w), int(rng.integers(2, 13)),
                         kernel, stride, seed=seed)
    if seed % 3 == 0:  # a uniform multiplier: loaded as rows all the same
        task.attrs["multiplier"] = np.full_like(task.attrs["multiplier"], 5)
    schedule = ScheduleSpace(SMALL, task.shape).sample(rng, 1)[0]
    program = task.lower(schedule).program
    stats = FunctionalSim(SMALL).run(program)
    layer = parse_layer_key(layer_key(SMALL, task.input_shape, task.attrs))
    c = counters(SMALL, task.shape, schedule, layer.epilogue_ops, layer.per_channel)
    got = {"inp_bytes": stats.bytes_loaded["inp"], "wgt_bytes": stats.bytes_loaded["wgt"],
           "acc_bytes": stats.bytes_loaded["acc"], "out_bytes": stats.bytes_stored["out"],
           "gemm_uops": stats.gemm_uops, "alu_uops": stats.alu_uops,
           "gemm_insns": stats.insns["GEMM"], "alu_insns": stats.insns["ALU"],
           "store_insns": stats.insns["STORE"]}
    assert {k: c[k] for k in got} == got, f"seed {seed}, {task.key}, {schedule}"
    data_loads = sum(1 for i in program.insns if i.op == Opcode.LOAD
                     and i.mem_type != MemType.UOP and i.x_size > 0)
    assert data_loads == c["load_insns"], f"seed {seed}"


def test_the_prior_prefers_overlap_and_fewer_tiles():
    task = conv_task(SMALL, (1, 16, 16, 16), 16, 3)
    layer = parse_layer_key(task.key)

    def prior(s):
        c = counters(SMALL, task.shape, s, layer.epilogue_ops, layer.per_channel)
        return predict_cycles(SMALL, c, s.threads)

    assert prior(ConvSchedule(4, 16, 2, 2, 2)) < prior(ConvSchedule(4, 16, 2, 2, 1))
    assert prior(ConvSchedule(4, 16, 2, 2, 2)) < prior(ConvSchedule(1, 2, 1, 1, 2))


def test_the_log_round_trips_and_keeps_the_best_per_layer(tmp_path):
    log = tmp_path / "t.jsonl"
    fast, slow = ConvSchedule(2, 2, 1, 1), ConvSchedule(1, 1, 1, 1)
    append_records(log, [
        TuningRecord("a", SMALL.config_id_hex, slow.to_dict(), 900),
        TuningRecord("a", SMALL.config_id_hex, fast.to_dict(), 500),
        TuningRecord("a", "ffffffff", slow.to_dict(), 1),
        TuningRecord("b", SMALL.config_id_hex, fast.to_dict(), None, "exceeded 10 cycles"),
    ])
    records = read_records(log)
    assert [r.cycles for r in records] == [900, 500, 1, None]
    assert best_schedules(records, SMALL) == {"a": fast}
    with open(log, "a") as f:
        f.write(json.dumps({"layer": "a"}) + "\n")
    with pytest.raises(CompileError, match=r"t.jsonl:5: not a tuning record"):
        read_records(log)


class FakeMeasurer:
    """Cycles from a hidden function of the schedule, as a Measurer reports them."""

    def __init__(self, task, cycles):
        self.task, self.cycles, self.calls = task, cycles, 0

    def measure(self, task, schedules, max_cycles=None):
        self.calls += len(schedules)
        out = []
        for s in schedules:
            cycles = self.cycles(s)
            error = None
            if max_cycles is not None and cycles > max_cycles:
                cycles, error = None, f"exceeded {max_cycles} cycles"
            out.append(TuningRecord(task.key, SMALL.config_id_hex, s.to_dict(), cycles, error))
        return out


def _hidden_cycles(task):
    """A landscape the analytic prior gets only roughly right (a penalty on split reductions)."""
    layer = parse_layer_key(task.key)

    def cycles(s):
        c = counters(SMALL, task.shape, s, layer.epilogue_ops, layer.per_channel)
        split = s.cin < task.shape.cin_blocks
        return int(predict_cycles(SMALL, c, s.threads) * (1.3 if split else 1.0))

    return cycles


def test_model_guided_search_finds_near_optimal_schedules_and_beats_random():
    task = conv_task(SMALL, (1, 16, 14, 14), 16, 3)
    cycles = _hidden_cycles(task)
    space = ScheduleSpace(SMALL, task.shape)
    optimum = min(cycles(space.point(i)) for i in range(len(space)))
    wins = 0
    for seed in range(3):
        tuned = tune_task(task, FakeMeasurer(task, cycles), CostModel(SMALL, seed=seed), 32,
                          seed=seed)
        baseline = random_search(task, FakeMeasurer(task, cycles), 32, seed=seed)
        assert len(tuned.records) == 32
        assert len({r.conv_schedule for r in tuned.records}) == 32, "a point measured twice"
        assert tuned.best.cycles <= 1.06 * optimum, f"seed {seed}: {tuned.best} vs {optimum}"
        wins += tuned.best.cycles <= baseline.best.cycles
    assert wins >= 2


def test_the_cost_model_learns_from_one_layer_and_ranks_another():
    rng = np.random.default_rng(0)
    source = conv_task(SMALL, (1, 16, 14, 14), 16, 3)
    target = conv_task(SMALL, (1, 12, 10, 10), 20, 3, seed=1)
    model = CostModel(SMALL)
    measured = FakeMeasurer(source, _hidden_cycles(source)).measure(
        source, ScheduleSpace(SMALL, source.shape).sample(rng, 200))
    model.add(measured)
    model.fit()
    points = ScheduleSpace(SMALL, target.shape).sample(rng, 100)
    truth = np.log2([_hidden_cycles(target)(s) for s in points])
    predicted = model.predict(target.key, points)
    ranks = np.corrcoef(np.argsort(np.argsort(truth)), np.argsort(np.argsort(predicted)))[0, 1]
    assert ranks > 0.8
    # and it learned that split reductions are slower, which the prior alone does not know
    split = np.array([s.cin < target.shape.cin_blocks for s in points])
    error = predicted - truth
    assert split.any() and (~split).any()
    assert abs(error[split].mean() - error[~split].mean()) < 0.15


def test_best_so_far_curve():
    result = TuneResult(conv_task(SMALL, (1, 4, 4, 4), 4, 1))
    result.records = [TuningRecord("k", "c", {}, None, "x"), TuningRecord("k", "c", {}, 9),
                      TuningRecord("k", "c", {}, 12), TuningRecord("k", "c", {}, 7)]
    assert result.best_so_far() == [math.inf, 9, 9, 7]

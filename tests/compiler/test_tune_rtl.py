"""The tuner's measurements on the Verilator model, and `loom tune` end to end (slow tier)."""

import json

import numpy as np
import pytest

from compiler.model_file import CompiledModel
from compiler.schedule import ConvSchedule
from compiler.tune.log import read_records
from compiler.tune.measure import Measurer, measure_cycles
from compiler.tune.tasks import conv_task
from isa import load_config
from loom.cli import main
from loom.demo import digits_split
from sim.rtl import RtlSim

pytestmark = pytest.mark.slow
SMALL = load_config("small")
DIGITS = "loom/models/digits_cnn.onnx"


def test_measurements_run_in_parallel_are_logged_and_reused(tmp_path):
    task = conv_task(SMALL, (1, 8, 10, 10), 8, 3)
    log = tmp_path / "t.jsonl"
    good = [ConvSchedule(3, 10, 1, 2, 2), ConvSchedule(2, 10, 1, 1, 2), ConvSchedule(1, 2, 1, 1)]
    too_big = ConvSchedule(10, 10, 2, 2, 2)  # does not fit: recorded, not raised
    with Measurer(SMALL, log=log, jobs=2) as measurer:
        records = measurer.measure(task, [*good, too_big])
    assert [r.cycles is not None for r in records] == [True, True, True, False]
    assert "does not fit" in records[3].error
    direct = RtlSim(SMALL).run(task.lower(good[0]).program).cycles
    assert records[0].cycles == direct
    assert len(read_records(log)) == 4

    with Measurer(SMALL, log=log, jobs=1) as measurer:  # a new run reuses the log
        again = measurer.measure(task, good)
        limited = measurer.measure(task, [ConvSchedule(1, 1, 1, 1)], max_cycles=records[0].cycles)
    assert [r.cycles for r in again] == [r.cycles for r in records[:3]]
    assert limited[0].cycles is None and limited[0].error.startswith("exceeded ")
    assert len(read_records(log)) == 5


def test_a_cycle_limit_stops_a_slow_candidate():
    task = conv_task(SMALL, (1, 8, 10, 10), 8, 3)
    cycles, error = measure_cycles(task, ConvSchedule(1, 1, 1, 1), max_cycles=1000)
    assert cycles is None and error == "exceeded 1000 cycles"


def test_loom_tune_then_compile_with_its_log(tmp_path, capsys):
    log, plot = tmp_path / "digits.jsonl", tmp_path / "digits.png"
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=digits_split()[0][:32])
    code = main(["tune", DIGITS, "--config", "small", "--calib", str(calib), "--trials", "8",
                 "--jobs", "2", "--log", str(log), "--plot", str(plot), "--baseline", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    layers = report["layers"]
    assert len(layers) == 4 and all(row["trials"] == 8 for row in layers)
    for row in layers:  # tuning starts from the heuristic, so it never ends slower
        assert row["best_cycles"] <= row["heuristic_cycles"]
        assert row["random_best_cycles"] is not None
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert len(read_records(log)) >= 4 * 8

    model_file = tmp_path / "digits.loom"
    code = main(["compile", DIGITS, "--config", "small", "--calib", str(calib),
                 "--tuning-log", str(log), "-o", str(model_file)])
    _, err = capsys.readouterr()
    assert code == 0 and "no record" not in err
    compiled = CompiledModel.load(model_file)
    chosen = [layer.schedule.to_dict() for layer in compiled.layers.values()]
    assert sorted(map(json.dumps, chosen)) == sorted(
        json.dumps(row["best_schedule"]) for row in layers)


def test_loom_tune_rejects_a_bad_budget(capsys):
    assert main(["tune", DIGITS, "--trials", "0"]) == 1
    assert "--trials and --jobs must be at least 1" in capsys.readouterr().err

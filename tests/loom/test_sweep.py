"""`loom sweep`: grids, staged and cached evaluation, fitting, reports (synthesis tier)."""

import csv
import json
from dataclasses import replace

import pytest

from boards.boards import load_board
from isa.errors import ConfigError
from loom.cli import main
from loom.sweep import SweepSpec, parse_params, product, read_grid, run_sweep
from loom.sweep_report import best_point, pareto, short_label

DIGITS = "loom/models/digits_cnn.onnx"
# the `small` preset's fields, so the Verilator model is the one other tests build
SMALL = {"block_in": 4, "block_out": 4, "uop_depth": 256, "inp_depth": 256, "wgt_depth": 64,
         "acc_depth": 256, "insn_queue_depth": 16, "dep_queue_depth": 4}


def test_grids_from_params_and_files(tmp_path):
    assert product(parse_params(["block_in=4,8", "inp_bits=4,8"])) == [
        {"block_in": 4, "inp_bits": 4}, {"block_in": 4, "inp_bits": 8},
        {"block_in": 8, "inp_bits": 4}, {"block_in": 8, "inp_bits": 8}]
    with pytest.raises(ConfigError, match="write key=v1,v2"):
        parse_params(["block_in"])
    grid = tmp_path / "g.toml"
    grid.write_text('points = [{block_in = 2}]\n[params]\nblock_out = [4, 8]\n')
    assert read_grid(grid) == [{"block_in": 2}, {"block_out": 4}, {"block_out": 8}]
    grid.write_text("nothing = 1\n")
    with pytest.raises(ConfigError, match="needs `points`"):
        read_grid(grid)


def test_pareto_front_and_best():
    points = [
        {"config": "a", "status": "ok", "lut": 100, "dsp": 9, "latency_ms": 5.0},
        {"config": "b", "status": "ok", "lut": 200, "dsp": 4, "latency_ms": 2.0},
        {"config": "c", "status": "ok", "lut": 300, "dsp": 8, "latency_ms": 3.0},
        {"config": "d", "status": "does not fit", "lut": 50, "dsp": 1},
    ]
    assert [p["config"] for p in pareto(points, "lut")] == ["a", "b"]
    assert [p["config"] for p in pareto(points, "dsp")] == ["b"]
    assert best_point(points)["config"] == "b"


@pytest.mark.synth
@pytest.mark.slow
def test_a_sweep_evaluates_skips_and_resumes(tmp_path):
    board = load_board("ulx3s_85f")
    tight = replace(board, dsps=20)  # small's 24 DSPs do not fit; a 1x2x2 core does
    points = [SMALL, {**SMALL, "block_in": 2, "block_out": 2}, {**SMALL, "block_in": 12}]
    spec = SweepSpec(tight, points, model=DIGITS)
    records = run_sweep(spec, tmp_path, jobs=2)
    assert [r["status"] for r in records] == ["does not fit", "ok", "invalid"]
    assert records[0]["reason"].startswith("DSP: 24 > 20")
    ok = records[1]
    assert ok["dsp"] <= 20 and ok["cycles"] > 0 and ok["clock_source"] == "target"
    assert ok["latency_ms"] == pytest.approx(ok["cycles"] / board.target_mhz / 1e3, abs=1e-3)
    assert "block_in must be a power of two" in records[2]["reason"]

    stage = tmp_path / "points" / ok["config_id"] / "cycles.json"
    saved = stage.read_text()
    again = run_sweep(spec, tmp_path)  # resumes: every stage comes from its cache
    assert again == records and stage.read_text() == saved


@pytest.mark.synth
@pytest.mark.slow
def test_loom_sweep_writes_table_plot_and_report(tmp_path, capsys):
    params = [f"--param={k}={v}" for k, v in SMALL.items()]
    code = main(["sweep", "--board", "ulx3s_85f", "--no-latency", *params,
                 "-o", str(tmp_path), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert result["best"]["config"].startswith("1x4x4") and "latency_ms" not in result["best"]
    rows = list(csv.DictReader((tmp_path / "sweep.csv").read_text().splitlines()))
    assert len(rows) == 1 and int(rows[0]["dsp"]) == result["best"]["dsp"]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "Best configuration that fits: `1x4x4" in (tmp_path / "report.md").read_text()


def test_loom_sweep_errors(capsys):
    assert main(["sweep", "--board", "ulx3s_85f", "--no-latency"]) == 1
    assert "nothing to sweep" in capsys.readouterr().err
    assert main(["sweep", "--board", "ulx3s_85f", "--param", "block_in=8"]) == 1
    assert "give a MODEL.onnx" in capsys.readouterr().err
    assert main(["sweep", "--board", "nope", "--param", "block_in=8"]) == 1
    assert "no board named 'nope'" in capsys.readouterr().err


def test_plot_labels_name_the_overrides_beyond_the_shape():
    """Two points of one GEMM shape are told apart in the plot by their other overrides."""
    record = {"config": "1x16x8_i4w4a32o8_u8192i2048w1024a2048_bus64_q512d8_lut4",
              "params": {"block_in": 16, "block_out": 8, "inp_bits": 4, "wgt_bits": 4,
                         "lut_mult_bits": 4}}
    assert short_label(record) == "1x16x8 i4 w4 lut4"
    assert short_label({"config": "1x8x8_i8", "params": {"block_in": 8}}) == "1x8x8"

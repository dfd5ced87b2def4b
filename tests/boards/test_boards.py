"""Board definitions: every board loads, its default config fits, `fits` and `loom boards`."""

import dataclasses
import importlib.resources
import json
from types import SimpleNamespace

import pytest

from boards.boards import board_names, estimate, fits, load_board
from boards.dram import dram_model
from boards.synth import Resources
from isa import HwConfig
from isa.errors import ConfigError, LoomError
from loom.cli import main

NAMES = ["arty_a7_100t", "de10_nano", "pynq_z1", "ultra96", "ulx3s_85f"]


def resources(family: str, lut=1000, ff=1000, dsp=10, bram=4.0) -> Resources:
    """A synthesis result with the given counts."""
    return Resources(family, "top", lut, ff, dsp, bram, 0, {})


def test_the_five_boards_are_bundled():
    assert board_names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_board_loads_with_positive_budgets_and_a_fitting_default(name):
    board = load_board(name)
    assert board.name == name
    for field in ("luts", "ffs", "dsps", "brams", "target_mhz"):
        assert getattr(board, field) > 0, field
    cfg = board.default_config
    # a valid HwConfig: constructing it again from its fields runs every check
    assert HwConfig(**cfg.to_dict()) == cfg
    used = estimate(cfg, board.family)
    assert used["dsp"] >= cfg.macs_per_cycle and used["dsp"] <= board.dsps
    assert 0 < used["bram"] <= board.brams
    assert dram_model(board.dram).name == board.dram


def test_estimate_counts_gemm_and_alu_multipliers_and_tiled_blocks():
    cfg = HwConfig()  # VTA's 1x16x16 default
    used = estimate(cfg, "xilinx7")
    assert used["dsp"] == 256 + 2 * 16
    # the 2048-bit x 1024 weight buffer alone takes 57 RAMB36 in its 36x1024 aspect
    assert used["bram"] > 57
    assert fits(load_board("pynq_z1"), resources("xilinx7", dsp=used["dsp"])) == [
        "DSP: 288 > 220 DSP48E1"
    ]


def test_fits_accepts_within_budget_and_flags_each_exceeded_line():
    board = load_board("ulx3s_85f")
    assert fits(board, resources("ecp5", lut=board.luts, dsp=board.dsps, bram=board.brams)) == []
    over = fits(board, resources("ecp5", lut=90000, ff=10, dsp=200, bram=208.5))
    assert over == ["LUT: 90000 > 83640 LUT4", "DSP: 200 > 156 MULT18X18D",
                    "BRAM: 208.5 > 208 DP16KD"]


def test_fits_refuses_another_family():
    with pytest.raises(ConfigError, match="from a ecp5 synthesis; board pynq_z1 is xilinx7"):
        fits(load_board("pynq_z1"), resources("ecp5"))


def test_unknown_board_is_one_line_listing_the_boards():
    with pytest.raises(LoomError) as info:
        load_board("zedboard")
    message = str(info.value)
    assert "\n" not in message and "no board named 'zedboard'" in message
    assert all(name in message for name in NAMES)


def test_board_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_board("ultra96").dsps = 1


def test_cli_lists_boards(capsys):
    assert main(["boards"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert "xc7z020clg400-1" in lines[NAMES.index("pynq_z1")]
    assert "1x8x8_" in lines[NAMES.index("ulx3s_85f")]


def test_cli_shows_one_board(capsys):
    assert main(["boards", "de10_nano"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Terasic DE10-Nano") and "5CSEBA6U23I7" in out and "M10K" in out


def test_cli_json(capsys):
    assert main(["boards", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in listed] == NAMES
    assert main(["boards", "ultra96", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dsps"] == 360 and shown["default_config"]["axi_data_bits"] == 128
    assert HwConfig(**shown["default_config"]).block_in == 16


def test_cli_bad_name_is_one_line_exit_1(capsys):
    assert main(["boards", "zedboard"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("loom: error: no board named 'zedboard'; boards: arty_a7_100t")



def test_config_may_name_an_isa_preset(tmp_path, monkeypatch):
    real = importlib.resources.files("boards") / "data" / "ulx3s_85f.toml"
    fields = real.read_text().split("[config]")[0].replace('"ulx3s_85f"', '"mine"', 1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.toml").write_text(fields + '[config]\npreset = "small"\n')
    monkeypatch.setattr("boards.boards.package_files", SimpleNamespace(files=lambda _: tmp_path))
    board = load_board("mine")
    assert board.config_source == "preset small" and board.default_config.block_in == 4

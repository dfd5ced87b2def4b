"""`loom pnr`, `loom bitstream` and `loom zynq`: arguments, outputs and one-line errors."""

import json

from loom.cli import main


def test_zynq_writes_the_wrapper_for_a_config(tmp_path, capsys):
    assert main(["zynq", "--config", "small", "-o", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["top"] == "loom_zynq"
    text = (tmp_path / "loom_zynq.v").read_text()
    assert "module loom_zynq" in text and "module loom_accel" in text


def test_boards_without_a_flow_are_one_line_errors(capsys):
    assert main(["bitstream", "--board", "pynq_z1"]) == 1
    assert main(["pnr", "--board", "de10_nano"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "no bitstream top for pynq_z1" in err[0]
    assert "needs an ECP5 board; de10_nano" in err[1]

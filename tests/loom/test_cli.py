"""The `loom` command line: help, each subcommand, and one-line errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from isa import Program, load_config
from loom.cli import build_parser, main
from loom.demo import sample_text

SUBCOMMANDS = [
    "config", "asm", "disasm", "sim", "verilog", "synth", "demo", "fuzz", "compile", "run",
]


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loom: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in SUBCOMMANDS]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 0
    assert "usage: loom" in capsys.readouterr().out


def test_config(capsys):
    code, out, _ = run(capsys, "config", "small")
    assert code == 0 and "1x4x4_i8w8a32o8" in out and "GEMM" in out
    code, out, _ = run(capsys, "config", "default", "--json")
    assert json.loads(out)["macs_per_cycle"] == 256
    code, out, _ = run(capsys, "config", "--list")
    listed = {line.split()[0] for line in out.splitlines()}
    assert {"default", "small", "int4", "nonsquare"} <= listed


def test_bad_config_is_one_line(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "config", "nope")[::2], "no config named 'nope'")
    bad = tmp_path / "bad.toml"
    bad.write_text("block_in = 12\n")
    assert_one_line_error(*run(capsys, "config", str(bad))[::2], "block_in must be a power of two")


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.s"
    path.write_text(sample_text())
    return path


def test_asm_disasm_sim(capsys, tmp_path, sample):
    out_file = tmp_path / "sample.loom"
    code, out, _ = run(capsys, "asm", str(sample), "-o", str(out_file))
    assert code == 0 and "instructions" in out
    program = Program.load(out_file)

    code, text, _ = run(capsys, "disasm", str(out_file))
    assert code == 0 and ".config small" in text
    again = tmp_path / "again.s"
    again.write_text(text)
    code, _, _ = run(capsys, "asm", str(again), "-o", str(tmp_path / "again.loom"))
    assert code == 0
    assert Program.load(tmp_path / "again.loom").insns == program.insns

    a = np.ones((16, 1, 4), dtype=np.int64)
    np.save(tmp_path / "a.npy", a)
    code, out, _ = run(
        capsys, "sim", str(out_file), "--json",
        "--input", f"A={tmp_path / 'a.npy'}", "--output", f"C={tmp_path / 'c.npy'}",
    )
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats["macs"] == 8 * 8 * 8
    c = np.load(tmp_path / "c.npy")
    assert c.shape == (16, 1, 4)


@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (lambda d, s: ["sim", str(d / "missing.loom")], ["no such file"]),
        (lambda d, s: ["disasm", str(_write(d / "x.loom", b"junk"))], ["corrupt or truncated"]),
        (lambda d, s: ["asm", str(_write(d / "bad.s", b".config small\nfrob 1\nfinish\n"))],
         ["bad.s:2", "frob"]),
        (lambda d, s: ["sim", str(s), "--input", "A"], ["--input takes SEGMENT=FILE.npy"]),
        (lambda d, s: ["sim", str(s), "--input", f"Z={d / 'z.npy'}"], ["no segment 'Z'"]),
        (lambda d, s: ["sim", str(_write(d / "dead.s", b".config small\nnop compute pop=prev\n"
                                         b"finish\n"))], ["deadlock", "load->compute"]),
        (lambda d, s: ["sim", str(s), "--config", "nope"], ["no config named"]),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, sample, make_args, fragments):
    np.save(tmp_path / "z.npy", np.zeros((1, 1, 4)))
    assert_one_line_error(*run(capsys, *make_args(tmp_path, sample))[::2], *fragments)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_demo_passes_on_the_functional_simulator(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--json", "--backend", "functional", "-o", str(tmp_path))
    report = json.loads(out)
    assert code == 0 and report["pass"]
    assert report["sample"]["correct"] and report["sample"]["stats"]["macs"] == 8 * 8 * 8
    digits = report["digits"]
    assert digits["images"] == 450 and digits["accelerated_layers"] == 4
    assert digits["accuracy"] >= digits["float_accuracy"] - 0.01
    assert (tmp_path / "loom_accel.v").is_file()


@pytest.mark.slow
def test_demo_on_the_rtl_backend_reports_cycles(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "-o", str(tmp_path))
    assert code == 0
    assert "cycles:" in out and "rtl backend" in out


def test_real_process_exit_code_and_no_traceback(tmp_path):
    bad = _write(tmp_path / "x.loom", b"not a program")
    result = subprocess.run(
        [sys.executable, "-m", "loom.cli", "sim", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    debug = subprocess.run(
        [sys.executable, "-m", "loom.cli", "--debug", "sim", str(bad)],
        capture_output=True, text=True,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    "argv", [["frob"], ["sim"], ["synth", "--family", "ice40"], ["demo", "--seed", "x"]]
)
def test_usage_errors_are_one_line(argv):
    result = subprocess.run(
        [sys.executable, "-m", "loom.cli", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("loom")


def test_verilog_writes_module_and_manifest(capsys, tmp_path):
    code, out, _ = run(capsys, "verilog", "--config", "small", "-o", str(tmp_path), "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["config_id"] == load_config("small").config_id_hex
    text = (tmp_path / "loom_accel.v").read_text()
    assert "module loom_accel(" in text and summary["bytes"] == len(text)
    manifest = json.loads((tmp_path / "loom_accel.json").read_text())
    assert manifest["top"] == "loom_accel"
    assert {p["name"] for p in manifest["ports"]} >= {"m_axi_araddr", "s_axil_wdata", "irq"}
    assert "CONFIG_ID" in {r["name"] for r in manifest["registers"]}


@pytest.mark.slow
def test_sim_on_the_rtl_backend_with_trace_and_waves(capsys, tmp_path, sample):
    trace, waves = tmp_path / "trace.json", tmp_path / "waves.vcd"
    code, out, _ = run(capsys, "sim", str(sample), "--backend", "rtl", "--json",
                       "--trace", str(trace), "--waves", str(waves))
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats["cycles"] > 0 and stats["gemm_uops"] == 32
    events = json.loads(trace.read_text())
    assert any(e.get("name") for e in (events["traceEvents"] if isinstance(events, dict)
                                        else events))
    assert waves.read_text().startswith("$")


def test_waves_need_the_rtl_backend(capsys, sample):
    assert_one_line_error(*run(capsys, "sim", str(sample), "--waves", "w.vcd")[::2],
                          "--waves and --trace need --backend rtl")

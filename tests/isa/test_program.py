"""Program container: layout, data binding, the .loom file and its failure modes."""

import json
import zipfile
from itertools import pairwise

import numpy as np
import pytest

from isa import Insn, MemType, Opcode, Program, ProgramError, Segment, Uop, load_config
from isa.program import ALIGN, UOP_SEGMENT

SMALL = load_config("small")


def _program(**kwargs):
    insns = [
        Insn(Opcode.LOAD, mem_type=MemType.UOP, x_size=2, y_size=1, x_stride=2),
        Insn(Opcode.FINISH),
    ]
    segments = [
        Segment("A", "input", "inp", 5, meta={"logical_shape": [5, 4]}),
        Segment("bias", "weights", "acc", 2, data=bytes(range(32))),
        Segment("C", "output", "out", 5),
    ]
    return Program(SMALL, insns, segments, {"k": [Uop(0, 1, 2), Uop(3, 4, 5)]}, **kwargs)


def test_layout_is_aligned_and_disjoint():
    program = _program()
    spans = sorted((s.offset, s.offset + s.nbytes(SMALL)) for s in program.segments.values())
    assert all(start % ALIGN == 0 for start, _ in spans)
    assert all(end <= nxt for (_, end), (nxt, _) in pairwise(spans))
    assert program.insn_offset >= spans[-1][1]
    assert program.dram_size == program.insn_offset + 16 * len(program.insns)
    assert program.elem_addr("A", 2) == program.segments["A"].offset // 4 + 2
    assert program.kernel_addr("k") == (program.segments[UOP_SEGMENT].offset // 4, 2)


def test_write_read_and_image():
    program = _program()
    dram = program.dram_image()
    bias = program.read(dram, "bias")
    assert bias.shape == (2, 1, 4)
    assert program.read(dram, "A").shape == (5, 1, 4)
    values = np.arange(20).reshape(5, 1, 4) - 10
    program.write(dram, "A", values)
    np.testing.assert_array_equal(program.read(dram, "A"), values)
    with pytest.raises(ProgramError, match=r"segment A holds shape \(5, 1, 4\)"):
        program.write(dram, "A", values[:4])
    with pytest.raises(ProgramError, match="no segment 'B'; segments: uops, A, bias, C"):
        program.read(dram, "B")


def test_save_load_round_trip(tmp_path):
    program = _program(host_graph={"nodes": ["softmax"]})
    path = tmp_path / "p.loom"
    program.save(path)
    loaded = Program.load(path)
    assert loaded.config == program.config
    assert loaded.insns == program.insns
    assert loaded.kernels == program.kernels
    assert loaded.host_graph == {"nodes": ["softmax"]}
    assert loaded.segments["A"].meta == {"logical_shape": [5, 4]}
    np.testing.assert_array_equal(loaded.dram_image(), program.dram_image())


def test_program_must_end_with_one_finish():
    with pytest.raises(ProgramError, match="end with exactly one FINISH"):
        Program(SMALL, [Insn(Opcode.FINISH), Insn(Opcode.GEMM)])
    with pytest.raises(ProgramError, match="instruction 0: STORE writes only OUT"):
        Program(SMALL, [Insn(Opcode.STORE, mem_type=MemType.ACC), Insn(Opcode.FINISH)])


def test_bad_segments_and_kernels():
    with pytest.raises(ProgramError, match="kind 'inputs' is not one of"):
        Segment("A", "inputs", "inp", 1)
    with pytest.raises(ProgramError, match="segment A is defined twice"):
        Program(SMALL, [Insn(Opcode.FINISH)], [Segment("A", "input", "inp", 1)] * 2)
    with pytest.raises(ProgramError, match="kernel k uop 0: uop field dst=256 is out of range"):
        Program(SMALL, [Insn(Opcode.FINISH)], kernels={"k": [Uop(256, 0, 0)]})


def _rewrite(path, change):
    with zipfile.ZipFile(path) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    change(files)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _edit_manifest(**fields):
    def change(files):
        manifest = json.loads(files["manifest.json"])
        manifest.update(fields)
        files["manifest.json"] = json.dumps(manifest)

    return change


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"hello"), "corrupt or truncated"),
        (lambda p: _rewrite(p, _edit_manifest(version=2)), "format version 2 is not supported"),
        (lambda p: _rewrite(p, _edit_manifest(format="zip")), "not a Loom program file"),
        (lambda p: _rewrite(p, _edit_manifest(config_id="00000000")), "does not match"),
        (lambda p: _rewrite(p, lambda f: f.pop("manifest.json")), "no manifest.json"),
        (lambda p: _rewrite(p, lambda f: f.update({"insns.bin": b"\x07" * 16})), "opcode 7"),
        (lambda p: _rewrite(p, lambda f: f.update({"insns.bin": b"\x03" * 15})), "multiple"),
        (lambda p: _rewrite(p, _edit_manifest(segments=[{"name": "A"}])), "malformed entry"),
    ],
)
def test_damaged_files_give_clear_errors(tmp_path, damage, message):
    path = tmp_path / "p.loom"
    _program().save(path)
    damage(path)
    with pytest.raises(ProgramError, match=message) as info:
        Program.load(path)
    assert str(path) in str(info.value)


def test_crc_corruption_is_detected(tmp_path):
    path = tmp_path / "p.loom"
    _program().save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("insns.bin")
    data[info.header_offset + 30 + len(info.filename) + 2] ^= 0xFF  # inside the compressed data
    path.write_bytes(bytes(data))
    with pytest.raises(ProgramError, match="corrupt or truncated"):
        Program.load(path)


def test_missing_file():
    with pytest.raises(ProgramError, match="no such file"):
        Program.load("/nonexistent/p.loom")

"""HwConfig: presets, validation messages, derived quantities, IDs and names."""

import dataclasses
import json
from itertools import pairwise

import pytest

from isa import ConfigError, HwConfig, Opcode, load_config, preset_names


def test_presets_include_the_required_shapes():
    names = preset_names()
    assert {"default", "small", "int4", "nonsquare"} <= set(names)
    nonsquare = load_config("nonsquare")
    assert nonsquare.block_in != nonsquare.block_out
    assert load_config("int4").inp_bits == load_config("int4").wgt_bits == 4


def test_default_matches_vta():
    cfg = load_config("default")
    assert (cfg.batch, cfg.block_in, cfg.block_out) == (1, 16, 16)
    assert (cfg.inp_bits, cfg.wgt_bits, cfg.acc_bits) == (8, 8, 32)
    assert cfg.macs_per_cycle == 256
    # VTA's buffer sizes: uop 32 KiB, inp 32 KiB, wgt 256 KiB, acc 128 KiB, out 32 KiB.
    expected = {"uop": 32, "inp": 32, "wgt": 256, "acc": 128, "out": 32}
    assert {k: cfg.buffer_bytes(k) // 1024 for k in expected} == expected
    assert {k: cfg.index_bits(k) for k in ("uop", "inp", "wgt", "acc")} == {
        "uop": 13, "inp": 11, "wgt": 10, "acc": 11,
    }
    assert {k: cfg.elem_bits(k) for k in ("inp", "wgt", "acc", "out")} == {
        "inp": 128, "wgt": 2048, "acc": 512, "out": 128,
    }
    assert cfg.axi_data_bits == 64


def test_field_widths_follow_buffer_depths():
    small = load_config("small")
    gemm = small.insn_formats[Opcode.GEMM]
    assert gemm.field("uop_bgn").width == 8
    assert gemm.field("uop_end").width == 9
    assert gemm.field("dst_factor_out").width == 8
    assert gemm.field("wgt_factor_in").width == 6
    # fields are contiguous LSB-first
    offsets = [f.offset for f in gemm.fields]
    assert offsets == sorted(offsets)
    assert all(a.offset + a.width == b.offset for a, b in pairwise(gemm.fields))


def test_id_is_stable_and_name_is_readable():
    cfg = load_config("default")
    assert cfg.config_id == HwConfig().config_id
    assert cfg.name.startswith("1x16x16_i8w8a32o8_")
    other = dataclasses.replace(cfg, axi_data_bits=128)
    assert other.config_id != cfg.config_id and other.name != cfg.name
    assert len(cfg.config_id_hex) == 8
    # lut_mult_bits enters the canonical form (and the name) only when set
    assert "lut_mult_bits" not in cfg.to_dict()
    lut = dataclasses.replace(cfg, lut_mult_bits=8)
    assert lut.to_dict()["lut_mult_bits"] == 8 and lut.name.endswith("_lut8")
    assert lut.config_id != cfg.config_id and HwConfig.from_dict(lut.to_dict()) == lut
    assert lut.lut_multipliers and not dataclasses.replace(cfg, lut_mult_bits=4).lut_multipliers


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"block_in": 12}, "block_in must be a power of two from 1 to 256, not 12"),
        ({"inp_bits": 3}, "inp_bits must be one of 1, 2, 4, 8, not 3"),
        ({"wgt_bits": 16}, "wgt_bits must be one of 1, 2, 4, 8, not 16"),
        ({"acc_bits": 40}, "acc_bits must be from 16 to 32, not 40"),
        ({"inp_depth": 1000}, "inp_depth must be a power of two"),
        ({"axi_data_bits": 48}, "axi_data_bits must be one of 32, 64, 128, 256, 512, not 48"),
        ({"insn_queue_depth": 1}, "insn_queue_depth must be a power of two from 2"),
        ({"batch": "1"}, "batch must be an integer"),
        ({"acc_bits": 24, "axi_data_bits": 512}, "ACC element of 48 bytes neither divides"),
        ({"block_in": 2, "inp_bits": 1}, "INP element of 2 bits is not a whole number of bytes"),
        ({"lut_mult_bits": 9}, "lut_mult_bits must be from 0 .DSP multipliers. to 8, not 9"),
    ],
)
def test_invalid_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(HwConfig(), **change)


def test_configs_that_overflow_the_encoding_are_rejected():
    # 16384-entry uop buffer and 65536-entry ACC: GEMM fields no longer fit 128 bits.
    with pytest.raises(ConfigError, match=r"GEMM fields need \d+ bits but the word has 128"):
        HwConfig(uop_depth=1 << 16, acc_depth=1 << 16, inp_depth=1 << 16)
    # default with a 16384-entry uop buffer: GEMM fits (127 bits with 512 weights), but the ALU's
    # 4-bit op field, use_imm and 16-bit immediate need 129
    with pytest.raises(ConfigError, match=r"ALU fields need 129 bits but the word has 128: "
                       r"uop_depth: uop_bgn \(14 bits\), uop_end \(15 bits\); acc_depth: .*"
                       r"reduce those buffer depths"):
        HwConfig(uop_depth=1 << 14, wgt_depth=512)
    # a uop holds dst + src + wgt indices in 32 bits
    with pytest.raises(ConfigError, match=r"UOP fields need 33 bits .*wgt_depth: wgt \(11 bits\)"):
        HwConfig(uop_depth=2048, wgt_depth=2048)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_fits_the_encoding(name):
    cfg = load_config(name)
    assert all(f.used_bits <= f.word_bits for f in cfg.insn_formats.values())


def test_load_config_from_files(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text("batch = 1\nblock_in = 8\nblock_out = 8\n")
    assert load_config(toml).block_in == 8
    js = tmp_path / "mine.json"
    js.write_text(json.dumps(load_config("small").to_dict()))
    assert load_config(js) == load_config("small")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("block_in = 12\n", "block_in must be a power of two"),
        ("blok_in = 8\n", "unknown field blok_in"),
        ("block_in = [\n", "not valid TOML"),
    ],
)
def test_bad_config_files_say_which_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match=r"no config named 'nope'.*default"):
        load_config("nope")


def test_describe_is_json_serialisable():
    text = json.dumps(load_config("int4").describe())
    assert '"GEMM"' in text and '"UOP"' in text

"""Dense packing of custom-width lanes and elements into DRAM bytes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import ProgramError, load_config
from isa.packing import pack_elements, pack_lanes, unpack_elements, unpack_lanes, wrap


def test_golden_sub_byte_layout_is_lsb_first():
    # 4-bit lanes 1, -2 -> byte 0 = 0xE1 (lane 0 in the low nibble)
    assert pack_lanes(np.array([1, -2]), 4) == bytes([0xE1])
    # 2-bit lanes 1, -1, 0, -2 -> 0b10_00_11_01
    assert pack_lanes(np.array([1, -1, 0, -2]), 2) == bytes([0b10001101])
    # 1-bit lanes: -1 is the only nonzero value
    assert pack_lanes(np.array([-1, 0, 0, 0, 0, 0, 0, -1]), 1) == bytes([0x81])
    # 24-bit lanes are little-endian
    assert pack_lanes(np.array([0x123456]), 24) == bytes([0x56, 0x34, 0x12])


@settings(max_examples=200, derandomize=True)
@given(st.sampled_from([1, 2, 4, 8, 16, 17, 24, 32]), st.integers(1, 64), st.randoms())
def test_lanes_round_trip(bits, n, rnd):
    count = n * 8  # always a whole number of bytes
    values = np.array(
        [rnd.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for _ in range(count)]
    )
    data = pack_lanes(values, bits)
    assert len(data) == count * bits // 8
    np.testing.assert_array_equal(unpack_lanes(data, bits, count), values)


def test_out_of_range_lane_is_rejected():
    with pytest.raises(ProgramError, match="value 8 does not fit a signed 4-bit lane"):
        pack_lanes(np.array([8, 0]), 4)


def test_wrap_is_twos_complement():
    np.testing.assert_array_equal(wrap(np.array([127, 128, -129, 255]), 8), [127, -128, 127, -1])


@pytest.mark.parametrize("preset", ["small", "default", "int4", "nonsquare"])
def test_elements_round_trip(preset):
    cfg = load_config(preset)
    rng = np.random.default_rng(0)
    for kind in ("inp", "wgt", "acc", "out"):
        bits = cfg.lane_bits(kind)
        values = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(3, *cfg.elem_shape(kind)))
        data = pack_elements(values, cfg, kind)
        assert len(data) == 3 * cfg.elem_bytes(kind)
        np.testing.assert_array_equal(unpack_elements(data, cfg, kind, 3), values)


def test_element_shape_is_checked():
    with pytest.raises(ProgramError, match=r"INP data must have shape \(n, 1, 4\)"):
        pack_elements(np.zeros((2, 4)), load_config("small"), "inp")

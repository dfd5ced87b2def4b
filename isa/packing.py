"""Dense bit packing of tensors into DRAM bytes, as the ISA lays them out.

Lanes of `bits` bits are packed LSB-first: lane 0 occupies the lowest bits of byte 0, and a
multi-byte lane is little-endian. An element of a memory kind is its lanes in row-major order
(INP [batch][block_in], WGT [block_out][block_in], ACC/OUT [batch][block_out]), and elements
follow one another with no gaps (every element is a whole number of bytes; HwConfig checks it).
"""

from __future__ import annotations

import numpy as np

from isa.config import HwConfig
from isa.errors import ProgramError

_NATIVE = {8: np.dtype("<i1"), 16: np.dtype("<i2"), 32: np.dtype("<i4")}


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers to `bits` bits, sign-extended, as int64."""
    values = np.asarray(values, dtype=np.int64)
    shift = 64 - bits
    return (values << shift) >> shift


def pack_lanes(values: np.ndarray, bits: int) -> bytes:
    """Pack signed integer lanes of `bits` bits each into bytes; values must already fit."""
    values = np.asarray(values)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.dtype.kind not in "iub":
        raise ProgramError(f"lanes must be integers, not {values.dtype}")
    if values.dtype.kind == "u" and values.size and values.max() > hi:
        raise ProgramError(f"value {values.max()} does not fit a signed {bits}-bit lane")
    flat = values.astype(np.int64).ravel()
    if flat.size and (flat.min() < lo or flat.max() > hi):
        bad = flat[(flat < lo) | (flat > hi)][0]
        raise ProgramError(f"value {bad} does not fit a signed {bits}-bit lane [{lo}, {hi}]")
    if bits in _NATIVE:
        return flat.astype(_NATIVE[bits]).tobytes()
    if (flat.size * bits) % 8:
        raise ProgramError(f"{flat.size} lanes of {bits} bits are not a whole number of bytes")
    as_bytes = (flat & ((1 << bits) - 1)).astype("<u8").view(np.uint8).reshape(-1, 8)
    lane_bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :bits]
    return np.packbits(lane_bits.ravel(), bitorder="little").tobytes()


def unpack_lanes(data: bytes | np.ndarray, bits: int, count: int) -> np.ndarray:
    """Unpack `count` signed lanes of `bits` bits from the start of `data`, as int64."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    nbytes = (count * bits + 7) // 8
    if buf.size < nbytes:
        raise ProgramError(f"need {nbytes} bytes for {count} lanes of {bits} bits, got {buf.size}")
    buf = buf[:nbytes]
    if bits in _NATIVE:
        return buf.view(_NATIVE[bits]).astype(np.int64)
    lane_bits = np.unpackbits(buf, bitorder="little")[: count * bits].reshape(count, bits)
    padded = np.zeros((count, 64), dtype=np.uint8)
    padded[:, :bits] = lane_bits
    raw = np.packbits(padded, axis=1, bitorder="little").view("<i8").ravel()
    return wrap(raw, bits)


def pack_elements(values: np.ndarray, cfg: HwConfig, kind: str) -> bytes:
    """Pack an array of shape (n, *elem_shape) of one memory kind into DRAM bytes."""
    values = np.asarray(values)
    shape = cfg.elem_shape(kind)
    if values.shape[1:] != shape:
        raise ProgramError(
            f"{kind.upper()} data must have shape (n, {', '.join(map(str, shape))}), "
            f"not {values.shape}"
        )
    if kind == "uop":
        return np.asarray(values, dtype="<u4").tobytes()
    return pack_lanes(values, cfg.lane_bits(kind))


def unpack_elements(data: bytes | np.ndarray, cfg: HwConfig, kind: str, count: int) -> np.ndarray:
    """Unpack `count` elements of one memory kind into an int64 array (n, *elem_shape)."""
    if kind == "uop":
        buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        return buf[: 4 * count].view("<u4").astype(np.int64)
    shape = cfg.elem_shape(kind)
    lanes = count * int(np.prod(shape))
    return unpack_lanes(data, cfg.lane_bits(kind), lanes).reshape(count, *shape)

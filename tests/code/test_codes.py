"""Bit packing of codes (hqgnn.codes) against a naive bit-by-bit reference."""

from __future__ import annotations

import numpy as np
import pytest

from hqgnn.codes import CodeTable, code_bytes, hamming, pack_codes, unpack_codes


def naive_pack(values: np.ndarray, bits: int) -> bytes:
    """Bit j of the little-endian stream = bit (j % 8) of byte j // 8, field by field."""
    dim = len(values)
    nbits = code_bytes(bits, dim) * 8
    stream = [0] * nbits
    for j, v in enumerate(values):
        if bits == 1:
            stream[j] = 1 if v > 0 else 0
        else:
            u = int(v) & (2**bits - 1)
            for b in range(bits):
                stream[bits * j + b] = (u >> b) & 1
    return bytes(sum(stream[8 * n + b] << b for b in range(8)) for n in range(nbits // 8))


def random_codes(rng: np.random.Generator, bits: int, n: int, dim: int) -> np.ndarray:
    if bits == 1:
        return rng.choice([-1, 1], size=(n, dim)).astype(np.int8)
    if bits == 32:
        return rng.normal(size=(n, dim)).astype(np.float32)
    return rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(n, dim)).astype(np.int8)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("dim", [3, 8, 64, 70])
def test_pack_matches_naive_and_round_trips(bits: int, dim: int) -> None:
    rng = np.random.default_rng(bits * 100 + dim)
    values = random_codes(rng, bits, 5, dim)
    packed = pack_codes(values, bits)
    assert packed.shape == (5, code_bytes(bits, dim))
    for row, v in zip(packed, values, strict=True):
        assert row.tobytes() == naive_pack(v, bits)
    assert np.array_equal(unpack_codes(packed, bits, dim), values)


def test_code_bytes_per_width() -> None:
    assert code_bytes(1, 64) == 8 and code_bytes(1, 65) == 16  # whole 64-bit words
    assert code_bytes(4, 64) == 32 and code_bytes(2, 64) == 16 and code_bytes(8, 64) == 64
    assert code_bytes(32, 64) == 256
    with pytest.raises(ValueError, match="bits must be one of"):
        code_bytes(3, 64)


def test_float_codes_round_trip_exactly() -> None:
    values = random_codes(np.random.default_rng(0), 32, 4, 10)
    assert np.array_equal(unpack_codes(pack_codes(values, 32), 32, 10), values)


def test_out_of_range_codes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_codes(np.array([[8, 0]]), 4)
    with pytest.raises(ValueError, match="-1 or \\+1"):
        pack_codes(np.array([[0, 1]]), 1)


def test_hamming_equals_counted_sign_differences() -> None:
    rng = np.random.default_rng(1)
    a, b = random_codes(rng, 1, 7, 130), random_codes(rng, 1, 9, 130)
    got = hamming(pack_codes(a, 1), pack_codes(b, 1))
    expected = (a[:, None, :] != b[None, :, :]).sum(-1)
    assert np.array_equal(got, expected)
    # and the 1-bit identity <q_u, q_i> = d - 2 H that the scores rely on
    assert np.array_equal(a.astype(int) @ b.T.astype(int), 130 - 2 * expected)


def test_code_table_dequantize_and_shapes() -> None:
    rng = np.random.default_rng(2)
    values, scale = random_codes(rng, 4, 6, 16), rng.random(6).astype(np.float32) + 0.1
    t = CodeTable.from_values(values, scale, 4)
    assert np.allclose(t.dequantize(), values * scale[:, None])
    back = CodeTable.from_packed(t.packed, t.scale, 4, 16)
    assert back.unpacked is None and np.array_equal(back.values, values)  # packed-only: unpacked on demand
    assert np.array_equal(back.value_rows(np.array([5, 0])), values[[5, 0]])
    assert np.allclose(back.dequantize(), t.dequantize()) and back.nbytes == 6 * 8 + 6 * 4
    assert np.array_equal(back.subset(np.array([1])).values, values[[1]]) and back.subset(np.array([1])).unpacked is None
    assert CodeTable.from_packed(t.packed, t.scale, 4, 16, unpack=True).unpacked is not None
    assert t.nbytes == 6 * 8 + 6 * 4 + 6 * 16 and t.packed_only().unpacked is None
    with pytest.raises(ValueError, match="shapes disagree"):
        CodeTable(4, 16, t.packed[:, :3], t.values, t.scale)

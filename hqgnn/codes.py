"""Bit packing of b-bit codes and the in-memory code table that retrieval and export share.

Layout of the packed ``code`` bytes (the ``code`` column of ``codes/<version>/*.parquet``):

- **1 bit**: dimension ``j`` is bit ``j % 64`` of 64-bit word ``j // 64``, words little-endian
  (= ``numpy.packbits(..., bitorder="little")``); ``+1 -> 1``, ``-1 -> 0``; padded with zero bits
  to whole 64-bit words, so ``len(code) = 8 * ceil(dim / 64)``. Zero padding on both sides never
  adds to a Hamming distance. FAISS binary indexes take these bytes as they are.
- **b ∈ {2, 4, 8} bits**: value ``j`` (two's complement, ``b`` bits) sits at bits
  ``[b*j, b*(j+1))`` of the little-endian bit stream (4 bits: low nibble first), padded to a
  whole byte: ``len(code) = ceil(b * dim / 8)``.
- **32 bits** (float runs): ``dim`` little-endian float32 values, ``len(code) = 4 * dim``.

Everything here is numpy (no torch), so ``hqgnn recommend`` stays quick to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hqgnn.bits import check_bits, is_float


def code_bytes(bits: int, dim: int) -> int:
    """Bytes of one packed code of ``dim`` values of ``bits`` bits (see module docstring)."""
    if bits == 1:
        return 8 * ((dim + 63) // 64)
    if is_float(check_bits(bits)):
        return 4 * dim
    return (bits * dim + 7) // 8


def pack_codes(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 ``[n, code_bytes(bits, dim)]`` from codes ``[n, dim]`` (int for b <= 8, float for 32)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"codes must be [n, dim], got shape {values.shape}")
    n, dim = values.shape
    if is_float(check_bits(bits)):
        return np.ascontiguousarray(values.astype("<f4")).view(np.uint8).reshape(n, 4 * dim)
    if bits == 1:
        if values.size and not np.isin(values, (-1, 1)).all():
            raise ValueError("1-bit codes must be -1 or +1")
        pad = code_bytes(1, dim) * 8 - dim
        signs = np.pad(values > 0, ((0, 0), (0, pad)))
        return np.packbits(signs, axis=1, bitorder="little")
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"{bits}-bit codes must lie in [{lo}, {hi}], got [{values.min()}, {values.max()}]")
    per_byte = 8 // bits
    pad = code_bytes(bits, dim) * per_byte - dim
    fields = np.pad(values.astype(np.int64) & (2**bits - 1), ((0, 0), (0, pad)))
    fields = fields.reshape(n, -1, per_byte) << (bits * np.arange(per_byte))
    return fields.sum(axis=2).astype(np.uint8)


def unpack_codes(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: int8 ``[n, dim]`` (float32 for 32 bits)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n = packed.shape[0]
    if packed.ndim != 2 or packed.shape[1] != code_bytes(bits, dim):
        raise ValueError(f"expected packed codes [n, {code_bytes(bits, dim)}] for bits={bits}, dim={dim}; got {packed.shape}")
    if is_float(bits):
        return packed.view("<f4").reshape(n, dim).astype(np.float32)
    if bits == 1:
        signs = np.unpackbits(packed, axis=1, count=dim, bitorder="little")
        return (signs.astype(np.int8) * 2 - 1).astype(np.int8)
    per_byte = 8 // bits
    fields = (packed[:, :, None] >> (bits * np.arange(per_byte, dtype=np.uint8))) & (2**bits - 1)
    fields = fields.reshape(n, -1)[:, :dim].astype(np.int16)
    return np.where(fields >= 2 ** (bits - 1), fields - 2**bits, fields).astype(np.int8)


def hamming(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """int32 ``[nq, n]`` Hamming distances between packed 1-bit codes (uint8 ``[nq|n, nbytes]``).

    XOR + popcount over 64-bit words (``numpy.bitwise_count``); memory ``nq x n x words``, so
    callers pass item blocks.
    """
    q = np.ascontiguousarray(queries).view("<u8")
    x = np.ascontiguousarray(items).view("<u8")
    out = np.zeros((q.shape[0], x.shape[0]), dtype=np.int32)
    for w in range(q.shape[1]):
        out += np.bitwise_count(q[:, w, None] ^ x[None, :, w]).astype(np.int32)
    return out


@dataclass(frozen=True)
class CodeTable:
    """Codes of ``n`` users or items as retrieval uses them.

    ``packed``: uint8 ``[n, code_bytes]`` (the exported bytes); ``unpacked``: int8 ``[n, dim]``
    (float32 for 32 bits), the unpacked codes, or ``None`` for a packed-only table, which
    unpacks on demand (:attr:`values`, :meth:`value_rows`): a 1-bit table then holds
    ``code_bytes + 4`` bytes per row instead of ``code_bytes + dim + 4``; ``scale``: float32
    ``[n]`` > 0 (ones for 32 bits). The model's score of a pair is
    ``scale_u * scale_i * <values_u, values_i>``.
    """

    bits: int
    dim: int
    packed: np.ndarray
    unpacked: np.ndarray | None
    scale: np.ndarray

    def __post_init__(self) -> None:
        n = self.scale.shape[0]
        values_ok = self.unpacked is None or self.unpacked.shape == (n, self.dim)
        if self.packed.shape != (n, code_bytes(self.bits, self.dim)) or not values_ok:
            shape = None if self.unpacked is None else self.unpacked.shape
            raise ValueError(
                f"CodeTable shapes disagree: packed {self.packed.shape}, values {shape}, "
                f"scale {self.scale.shape} for bits={self.bits}, dim={self.dim}"
            )

    def __len__(self) -> int:
        return int(self.scale.shape[0])

    @classmethod
    def from_values(cls, values: np.ndarray, scale: np.ndarray, bits: int) -> CodeTable:
        """From unpacked codes ``[n, dim]`` (int; float for 32 bits) and scales ``[n]`` (kept)."""
        values = np.asarray(values)
        values = values.astype(np.float32 if is_float(bits) else np.int8)
        scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        return cls(bits, values.shape[1], pack_codes(values, bits), values, scale)

    @classmethod
    def from_packed(cls, packed: np.ndarray, scale: np.ndarray, bits: int, dim: int, unpack: bool = False) -> CodeTable:
        """From packed code bytes ``[n, code_bytes]`` and scales ``[n]``: packed-only (unpacked on
        demand) unless ``unpack``; 32 bits always keep a zero-copy float32 view of the bytes."""
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if is_float(bits) and packed.shape[1:] == (code_bytes(bits, dim),):
            return cls(bits, dim, packed, packed.view("<f4").reshape(packed.shape[0], dim), scale)
        return cls(bits, dim, packed, unpack_codes(packed, bits, dim) if unpack else None, scale)

    @classmethod
    def from_float(cls, emb: np.ndarray) -> CodeTable:
        """Float32 embeddings ``[n, dim]`` as a 32-bit table (scale 1)."""
        emb = np.asarray(emb, dtype=np.float32)
        return cls.from_values(emb, np.ones(emb.shape[0], np.float32), 32)

    @property
    def values(self) -> np.ndarray:
        """int8 ``[n, dim]`` (float32 for 32 bits): the stored unpacked codes, or all rows unpacked
        now (a new array each call) for a packed-only table; for a few rows use :meth:`value_rows`."""
        return self.unpacked if self.unpacked is not None else unpack_codes(self.packed, self.bits, self.dim)

    def value_rows(self, rows: np.ndarray) -> np.ndarray:
        """The unpacked codes of ``rows`` (int ``[m]``): ``[m, dim]``, unpacking only those rows."""
        if self.unpacked is not None:
            return self.unpacked[rows]
        return unpack_codes(self.packed[rows], self.bits, self.dim)

    def packed_only(self) -> CodeTable:
        """This table without the unpacked copy (the same packed and scale arrays)."""
        if is_float(self.bits):
            return CodeTable.from_packed(self.packed, self.scale, self.bits, self.dim)
        return self if self.unpacked is None else CodeTable(self.bits, self.dim, self.packed, None, self.scale)

    def dequantize(self) -> np.ndarray:
        """float32 ``[n, dim]``: ``values * scale[:, None]``."""
        return self.values.astype(np.float32) * self.scale[:, None]

    def subset(self, rows: np.ndarray) -> CodeTable:
        """The rows ``rows`` (int array) as a new table (packed-only if this one is)."""
        unpacked = self.unpacked[rows] if self.unpacked is not None else None
        return CodeTable(self.bits, self.dim, self.packed[rows], unpacked, self.scale[rows])

    @property
    def bytes_per_row(self) -> int:
        """Packed code bytes per row (scale not included)."""
        return code_bytes(self.bits, self.dim)

    @property
    def nbytes(self) -> int:
        """Bytes the table holds: packed codes, scales and the unpacked copy when it keeps one
        (a view of the packed bytes, as 32-bit tables from :meth:`from_packed` keep, is not counted twice)."""
        own = self.packed.nbytes + self.scale.nbytes
        if self.unpacked is None or np.may_share_memory(self.unpacked, self.packed):
            return int(own)
        return int(own + self.unpacked.nbytes)

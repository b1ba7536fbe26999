"""Sparse user x item interaction matrices (one per split), the shared currency of training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class InteractionMatrix:
    """A binary ``[num_users, num_items]`` matrix in CSR form (rows sorted, no duplicates).

    ``indptr``: int64 ``[num_users + 1]``; ``indices``: int64 ``[nnz]`` item indices.
    """

    indptr: Tensor
    indices: Tensor
    num_users: int
    num_items: int

    @classmethod
    def from_pairs(cls, users: np.ndarray | Tensor, items: np.ndarray | Tensor, num_users: int, num_items: int) -> InteractionMatrix:
        """Build from parallel arrays of user and item indices (duplicates collapsed)."""
        u = torch.as_tensor(np.asarray(users), dtype=torch.int64)
        i = torch.as_tensor(np.asarray(items), dtype=torch.int64)
        if u.shape != i.shape:
            raise ValueError(f"users and items differ in length: {tuple(u.shape)} vs {tuple(i.shape)}")
        if u.numel():
            if int(u.min()) < 0 or int(u.max()) >= num_users:
                raise ValueError(f"user index out of range [0, {num_users}): min {int(u.min())}, max {int(u.max())}")
            if int(i.min()) < 0 or int(i.max()) >= num_items:
                raise ValueError(f"item index out of range [0, {num_items}): min {int(i.min())}, max {int(i.max())}")
        key = torch.unique(u * num_items + i)  # sorted, deduplicated
        rows, cols = key // num_items, key % num_items
        indptr = torch.zeros(num_users + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_users), 0)
        return cls(indptr, cols, num_users, num_items)

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    def row_lengths(self) -> Tensor:
        """int64 ``[num_users]``: interactions per user."""
        return self.indptr[1:] - self.indptr[:-1]

    def rows(self) -> Tensor:
        """int64 ``[nnz]``: the user index of each stored entry."""
        return torch.repeat_interleave(torch.arange(self.num_users), self.row_lengths())

    def dense_rows(self, users: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """bool ``[len(users), num_items]``: the rows of ``users`` as a dense mask on ``device``."""
        users = users.to("cpu", torch.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        out = torch.zeros(users.numel(), self.num_items, dtype=torch.bool, device=device)
        if int(lengths.sum()) == 0:
            return out
        row_ids = torch.repeat_interleave(torch.arange(users.numel()), lengths)
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        cols = self.indices[torch.repeat_interleave(starts, lengths) + offsets]
        out[row_ids.to(device), cols.to(device)] = True
        return out

    def to_torch_sparse_csr(self) -> Tensor:
        """float32 sparse CSR tensor with ones at the stored entries."""
        values = torch.ones(self.nnz, dtype=torch.float32)
        return torch.sparse_csr_tensor(self.indptr, self.indices, values, (self.num_users, self.num_items))

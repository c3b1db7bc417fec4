"""Data stored once per distinct seed and shared by every ensemble member with that seed.

An ensemble whose members differ only in a condition (decay γ, noise σ) need not hold one copy of the data per
member: ``share`` wraps per-seed data so each member reads its seed's copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plasticlab import seeding
from plasticlab.tasks.base import Dataset


@dataclass
class SharedData(Dataset):
    """Data stored once per distinct seed; ``member`` maps each ensemble member to its seed's copy.

    Members that share a seed (same seed, other γ/σ) see the same data and the same mini-batches, so
    differences between them are the condition's effect, not sampling noise.
    """

    member: torch.Tensor | None = None  # (E,) index into the stored copies

    def batch(self, seeds, step: int, batch_size: int):
        """A mini-batch per member for ``step``: each member draws from its own seed."""
        assert self.member is not None, "SharedData needs member: build it with share()"
        idx = seeding.randint(seeds, seeding.key_of("batch", step), (batch_size,), self.n_train)
        # one flat index_select is much faster than torch.gather on an expanded index
        flat = ((self.member * self.n_train)[:, None] + idx).reshape(-1)
        x = torch.index_select(self.x_train.reshape(-1, self.d_in), 0, flat)
        y = torch.index_select(self.y_train.reshape(-1, self.d_out), 0, flat)
        return x.reshape(*idx.shape, self.d_in), y.reshape(*idx.shape, self.d_out)


def share(data: Dataset, member, n_val: int | None = None) -> SharedData:
    """Wrap per-seed (or single shared, leading dim 1) data for an ensemble; validation sets are
    expanded per member (the trainer's forward pass needs (E, n, d))."""
    member = torch.as_tensor(np.asarray(member).copy(), dtype=torch.int64)
    xv, yv = data.x_val, data.y_val
    if n_val is not None:
        xv, yv = xv[:, :n_val], yv[:, :n_val]
    if data.x_train.shape[0] == 1:
        member = torch.zeros_like(member)
        xv, yv = xv.expand(len(member), -1, -1), yv.expand(len(member), -1, -1)
    else:
        xv, yv = xv[member], yv[member]
    # contiguous once here, so each step's flat view is free (a train/val slice is not contiguous)
    return SharedData(
        data.x_train.contiguous(),
        data.y_train.contiguous(),
        xv.contiguous(),
        yv.contiguous(),
        data.loss,
        data.name,
        member=member,
    )

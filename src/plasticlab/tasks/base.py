"""A task is per-member data: tensors with a leading ensemble dimension E."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticlab import seeding


@dataclass
class Dataset:
    """Per-member train and validation tensors with a leading ensemble dim, and the loss."""

    x_train: torch.Tensor  # (E, n_train, d_in)
    y_train: torch.Tensor  # (E, n_train, d_out): targets, or one-hot labels for classification
    x_val: torch.Tensor
    y_val: torch.Tensor
    loss: str  # a plasticlab.losses kind: "mse" | "mse_mean" | "xent"
    name: str = ""

    @property
    def d_in(self) -> int:
        """Input dimension."""
        return self.x_train.shape[-1]

    @property
    def d_out(self) -> int:
        """Output dimension."""
        return self.y_train.shape[-1]

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return self.x_train.shape[1]

    def to(self, device) -> Dataset:
        """The same data on ``device``."""
        xt, yt, xv, yv = (v.to(device) for v in (self.x_train, self.y_train, self.x_val, self.y_val))
        return Dataset(xt, yt, xv, yv, self.loss, self.name)

    def batch(self, seeds, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Member e's mini-batch at ``step``: indices drawn with replacement from its own seed."""
        idx = seeding.randint(
            seeds, seeding.key_of("batch", step), (batch_size,), self.n_train, device=self.x_train.device
        )
        return gather(self.x_train, idx), gather(self.y_train, idx)


def gather(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """data (E or 1, n, d), idx (E, B) -> (E, B, d)."""
    if data.shape[0] == 1 and idx.shape[0] != 1:
        return data[0][idx]
    return torch.gather(data, 1, idx[:, :, None].expand(-1, -1, data.shape[-1]))

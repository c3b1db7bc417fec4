"""The engine's loss kinds, in one place: every trainer, rule and analysis that needs a loss or its output
error asks here, so a new kind is added once.

- ``"mse"``: l = 1/2 ||out - y||^2 per sample (summed over outputs), batch mean: dl/dout = out - y.
- ``"mse_mean"``: torch's ``nn.MSELoss()``: the mean of (out - y)^2 over outputs *and* batch, so per sample
  l = ||out - y||^2 / d_out and dl/dout = 2 (out - y) / d_out. Against ``"mse"`` this is the same descent
  direction times 2/d_out.
- ``"xent"``: softmax cross-entropy against one-hot labels, batch mean.
"""

from __future__ import annotations

import torch

from plasticlab.errors import check_choice

LOSSES = ("mse", "mse_mean", "xent")


def check_loss(loss: str) -> str:
    """``loss`` if it is a known kind, else a PlasticlabError naming the kinds."""
    return check_choice("loss", loss, LOSSES)


def per_sample(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(E, B) loss of each sample."""
    if loss == "mse":
        return 0.5 * ((out - y) ** 2).sum(-1)
    if loss == "mse_mean":
        return ((out - y) ** 2).mean(-1)
    check_loss(loss)
    return -(torch.log_softmax(out, -1) * y).sum(-1)


def output_delta(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """dl/dout per sample (E, B, d_out) of the per-sample loss (the batch mean's 1/B is left to the caller)."""
    if loss == "mse":
        return out - y
    if loss == "mse_mean":
        return (out - y) * (2.0 / out.shape[-1])
    check_loss(loss)
    return torch.softmax(out, dim=-1) - y

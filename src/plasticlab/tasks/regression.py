"""Student–teacher regression (Koplow et al. 2025): isotropic Gaussian inputs, targets from a random teacher
MLP."""

from __future__ import annotations

import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import init_mlp
from plasticlab.tasks.base import Dataset


def teacher_regression(
    seeds,
    d_in: int = 32,
    d_out: int = 32,
    n_train: int = 20000,
    n_val: int = 2000,
    teacher_hidden: list[int] | tuple[int, ...] = (32,),
    teacher_activation: str = "tanh",
    teacher_scale: float = 1.0,
    label_noise: float = 0.0,
    init: str = "normal",
    dtype=torch.float64,
    device=None,
) -> Dataset:
    """Each member's teacher and samples come from its own seed.

    ``teacher_hidden=()`` gives a linear teacher y = W* x; with ``teacher_scale = sqrt(d_in)`` its entries are
    N(0, 1), so ||w*||^2 ~ d_in as in Koplow et al. 2025's noise experiment. ``init``: the teacher's
    layers as ``init_mlp`` makes them ("normal": no biases; "torch": nn.Linear's uniform W and b).
    ``device``: where the data live (default: ``plasticlab.devices.current()``).
    """
    if min(d_in, d_out, n_train, n_val) < 1:
        raise PlasticlabError(f"d_in, d_out, n_train, n_val must be >= 1, got {d_in}, {d_out}, {n_train}, {n_val}")
    if label_noise < 0:
        raise PlasticlabError(f"label_noise must be >= 0, got {label_noise}")
    teacher = init_mlp(
        seeds,
        [d_in, *teacher_hidden, d_out],
        teacher_activation,
        scale=teacher_scale,
        tag="teacher",
        init=init,
        dtype=dtype,
        device=device,
    )
    n = n_train + n_val
    x = seeding.normal(seeds, seeding.key_of("teacher-x"), (n, d_in), dtype, device=device)
    y = teacher.forward(x).out
    if label_noise:
        y = y + label_noise * seeding.normal(
            seeds, seeding.key_of("label-noise"), (n, d_out), dtype, device=device
        )
    return Dataset(
        x[:, :n_train],
        y[:, :n_train],
        x[:, n_train:],
        y[:, n_train:],
        "mse",
        f"teacher-regression(d_in={d_in}, d_out={d_out})",
    )

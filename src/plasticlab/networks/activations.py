"""Activations and their derivatives (written out so local rules and hand backprop need no autograd)."""

from __future__ import annotations

import torch

from plasticlab.errors import check_choice


def _linear(z):
    return z


def _linear_d(z):
    return torch.ones_like(z)


def _relu_d(z):
    return (z > 0).to(z.dtype)


def _tanh_d(z):
    return 1 - torch.tanh(z) ** 2


def _sigmoid_d(z):
    s = torch.sigmoid(z)
    return s * (1 - s)


ACTIVATIONS = {
    "linear": (_linear, _linear_d),
    "relu": (torch.relu, _relu_d),
    "tanh": (torch.tanh, _tanh_d),
    "sigmoid": (torch.sigmoid, _sigmoid_d),
}


def activation(name: str):
    """(phi, phi') for a name in ACTIVATIONS."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]

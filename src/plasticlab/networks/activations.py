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


# grad * phi'(z) from the output h = phi(z), for a backward pass that kept the forward's h (``Trace.chained``)
# instead of recomputing phi. linear, relu and sigmoid are the products above with phi(z) replaced by h (the
# same numbers; linear skips the multiply by ones); tanh is ATen's fused tanh_backward, grad * (1 - h * h)
# in one pass over the activity instead of three. torch's CPU build here contracts it to a multiply-add, so it
# differs from the unfused product in the last bits (relative to the deltas' scale ~1e-7 in float32,
# ~2e-16 in float64).
def _linear_back(grad, h):
    return grad


def _relu_back(grad, h):
    return grad * (h > 0).to(h.dtype)


def _tanh_back(grad, h):
    return torch.ops.aten.tanh_backward(grad, h)


def _sigmoid_back(grad, s):
    return grad * (s * (1 - s))


ACTIVATIONS = {
    "linear": (_linear, _linear_d),
    "relu": (torch.relu, _relu_d),
    "tanh": (torch.tanh, _tanh_d),
    "sigmoid": (torch.sigmoid, _sigmoid_d),
}


BACKWARD_FROM_OUTPUT = {"linear": _linear_back, "relu": _relu_back, "tanh": _tanh_back, "sigmoid": _sigmoid_back}


def activation(name: str):
    """(phi, phi') for a name in ACTIVATIONS."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]


def backward_from_output(name: str):
    """``(grad, h) -> grad * phi'(z)`` given the output h = phi(z), for a name in ACTIVATIONS."""
    return BACKWARD_FROM_OUTPUT[check_choice("activation", name, ACTIVATIONS)]

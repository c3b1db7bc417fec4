"""Ensemble-batched networks."""

from plasticlab.networks.activations import ACTIVATIONS, activation
from plasticlab.networks.mlp import MLP, Trace, init_mlp

__all__ = ["ACTIVATIONS", "MLP", "Trace", "activation", "init_mlp"]

"""Measurements: Hebbian alignment, chaos order parameters."""

from plasticlab.metrics.hebbian import cosine, hebbian_alignment, hebbian_direction, neuron_alignment

__all__ = ["cosine", "hebbian_alignment", "hebbian_direction", "neuron_alignment"]

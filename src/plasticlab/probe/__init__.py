"""HebbianProbe: Hebbian alignment of any PyTorch model's Linear/Conv2d layers, from hooks (see docs/probe.md)."""

from plasticlab.probe.hebbian import HebbianProbe

__all__ = ["HebbianProbe"]

"""Closed-form theory: critical flip fractions and solution-manifold spectra of curl descent."""

from plasticlab.theory.curl import (
    LAYERS,
    FlipPath,
    ManifoldSpectrum,
    balanced_point,
    critical_flip_fraction,
    flip_diagonal,
    hidden_curve,
    linear_flow,
    manifold_spectrum,
    readout_curve,
    sample_manifold_spectrum,
    stability_matrix,
)

__all__ = [
    "LAYERS",
    "FlipPath",
    "ManifoldSpectrum",
    "balanced_point",
    "critical_flip_fraction",
    "flip_diagonal",
    "hidden_curve",
    "linear_flow",
    "manifold_spectrum",
    "readout_curve",
    "sample_manifold_spectrum",
    "stability_matrix",
]

"""Sweeps: run an experiment's chunks, resumably, locally or on Dask."""
from plasticlab.sweeps.execute import execute

__all__ = ["execute"]

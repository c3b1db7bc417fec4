"""Sweeps: run an experiment's chunks as independent tasks, resumably, in local processes or on Dask."""

from plasticlab.sweeps.execute import SweepFailed, execute
from plasticlab.sweeps.status import status, summary
from plasticlab.sweeps.store import chunk_hash

__all__ = ["SweepFailed", "chunk_hash", "execute", "status", "summary"]

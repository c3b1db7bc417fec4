"""Shapes shared by the curl-descent experiments (hidden-flip, chaos): the paper's c sweeps at fixed M + N."""

from __future__ import annotations

import math

TOTAL = 219  # M + N in the paper's c sweeps


def shape_for(c: float, total: int = TOTAL) -> tuple[int, int]:
    """(M, N) with M + N = total and M/N ≈ c; floor reproduces the paper's (50,169), (62,157), (73,146)."""
    M = max(1, min(total - 1, int(math.floor(total * c / (1 + c) + 1e-9))))
    return M, total - M

"""Counter-based random numbers for ensembles.

Every draw of ensemble member ``e`` is a pure function of ``(seeds[e], key, element index)``: a member
gives the same numbers alone or inside a batch of 1000, and no generator state is carried between calls.
The mixing function is SplitMix64 written with int64 tensor ops (wrap-around multiply, masked shifts so
that right shifts are logical), so a whole (E, ...) draw is one vectorised computation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

_MASK64 = (1 << 64) - 1


def _s64(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= (1 << 63) else x


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_M1 = _s64(0xBF58476D1CE4E5B9)
_M2 = _s64(0x94D049BB133111EB)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 mixing function on int64 tensors (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def key_of(*parts: object) -> int:
    """A stable 63-bit key from any printable parts, e.g. ``key_of("batch", step)``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _as_seeds(seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(seeds, dtype=torch.int64)
    if s.ndim != 1:
        raise ValueError(f"seeds must be 1-D, got shape {tuple(s.shape)}")
    return s


def random_bits(seeds, key: int, shape: Sequence[int]) -> torch.Tensor:
    """(E, *shape) int64 of 64 random bits each, a function of (seed, key, flat index) only."""
    s = _as_seeds(seeds)
    n = math.prod(shape)
    base = splitmix64(splitmix64(s * _GOLDEN ^ _s64(key)))  # (E,)
    idx = torch.arange(n, dtype=torch.int64)
    bits = splitmix64(base[:, None] + idx[None, :] * _M1)
    return bits.reshape(len(s), *shape)


def uniform(seeds, key: int, shape: Sequence[int], dtype=torch.float64) -> torch.Tensor:
    """Uniform on the open interval (0, 1), shape (E, *shape)."""
    bits = _shr(random_bits(seeds, key, shape), 11)  # 53 random bits
    return ((bits.to(torch.float64) + 0.5) * 2.0**-53).to(dtype)


def normal(seeds, key: int, shape: Sequence[int], dtype=torch.float64) -> torch.Tensor:
    """Standard normal draws (Box–Muller), shape (E, *shape)."""
    n = math.prod(shape)
    u = uniform(seeds, key, (2, n), torch.float64)
    z = torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])
    return z.reshape(len(u), *shape).to(dtype)


def randint(seeds, key: int, shape: Sequence[int], high: int) -> torch.Tensor:
    """Integers in [0, high), shape (E, *shape)."""
    return torch.floor(uniform(seeds, key, shape) * high).to(torch.int64).clamp_(max=high - 1)


def permutation(seeds, key: int, n: int) -> torch.Tensor:
    """One random permutation of range(n) per member, shape (E, n)."""
    return torch.argsort(random_bits(seeds, key, (n,)), dim=1)


def permutations(seeds, keys: Sequence[int], n: int) -> torch.Tensor:
    """``permutation(seeds, k, n)`` for every k in ``keys`` in one vectorised draw, shape (E, len(keys), n):
    the same numbers (each is a function of (seed, key, index) only) for a fraction of the per-call cost,
    e.g. a block of epochs' shuffles at once."""
    s = _as_seeds(seeds)
    k = torch.tensor([_s64(int(key)) for key in keys], dtype=torch.int64)
    base = splitmix64(splitmix64(s[:, None] * _GOLDEN ^ k[None, :]))  # (E, K), as in random_bits
    idx = torch.arange(n, dtype=torch.int64)
    return torch.argsort(splitmix64(base[:, :, None] + idx * _M1), dim=2)

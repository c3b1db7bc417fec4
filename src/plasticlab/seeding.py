"""Counter-based random numbers for ensembles.

Every draw of ensemble member ``e`` is a pure function of ``(seeds[e], key, element index)``: a member
gives the same numbers alone or inside a batch of 1000, and no generator state is carried between calls.
The mixing function is SplitMix64 written with int64 tensor ops (wrap-around multiply, masked shifts so
that right shifts are logical), so a whole (E, ...) draw is one vectorised computation.

Draws are computed on the CPU and then moved to ``device`` (default: ``plasticlab.devices.current()``):
the numbers are then bit-identical on every device, at the cost of a host-to-device copy per draw.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from plasticlab.devices import pick

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


_F = TypeVar("_F", bound=Callable[..., Any])
_outside_graphs: dict[str, Callable[..., Any]] = {}  # filled by keep_out_of_compiled_graphs()


def _eager(fn: _F) -> _F:
    """A draw that stays out of torch.compile graphs once ``keep_out_of_compiled_graphs()`` ran: the
    generator's unsigned 64-bit constants overflow the compiler's int64 index arithmetic, and eager draws
    keep a compiled step's random numbers bit-identical to the eager step's. Until then (every run that does
    not compile) it is one dict lookup; torch._dynamo, seconds to import, is not touched."""
    name = fn.__name__

    @functools.wraps(fn)
    def draw(*args: Any, **kwargs: Any) -> Any:
        return (_outside_graphs.get(name) or fn)(*args, **kwargs)

    return draw  # type: ignore[return-value]


def keep_out_of_compiled_graphs() -> None:
    """Make every draw a graph break under torch.compile (called before anything is compiled)."""
    if not _outside_graphs:
        for fn in (random_bits, uniform, normal, randint, permutation, permutations):
            raw = vars(fn)["__wrapped__"]  # set by functools.wraps in _eager
            _outside_graphs[raw.__name__] = torch.compiler.disable(raw)


def _on(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(pick(device))


@_eager
def random_bits(seeds, key: int, shape: Sequence[int], device=None) -> torch.Tensor:
    """(E, *shape) int64 of 64 random bits each, a function of (seed, key, flat index) only."""
    return _on(_bits(seeds, key, shape), device)


def _bits(seeds, key: int, shape: Sequence[int]) -> torch.Tensor:
    s = _as_seeds(seeds).cpu()
    n = math.prod(shape)
    base = splitmix64(splitmix64(s * _GOLDEN ^ _s64(key)))  # (E,)
    idx = torch.arange(n, dtype=torch.int64)
    bits = splitmix64(base[:, None] + idx[None, :] * _M1)
    return bits.reshape(len(s), *shape)


@_eager
def uniform(seeds, key: int, shape: Sequence[int], dtype=torch.float64, device=None) -> torch.Tensor:
    """Uniform on the open interval (0, 1), shape (E, *shape)."""
    return _on(_uniform(seeds, key, shape).to(dtype), device)


def _uniform(seeds, key: int, shape: Sequence[int]) -> torch.Tensor:
    bits = _shr(_bits(seeds, key, shape), 11)  # 53 random bits
    return (bits.to(torch.float64) + 0.5) * 2.0**-53


@_eager
def normal(seeds, key: int, shape: Sequence[int], dtype=torch.float64, device=None) -> torch.Tensor:
    """Standard normal draws (Box–Muller), shape (E, *shape)."""
    n = math.prod(shape)
    u = _uniform(seeds, key, (2, n))
    z = torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])
    return _on(z.reshape(len(u), *shape).to(dtype), device)


@_eager
def randint(seeds, key: int, shape: Sequence[int], high: int, device=None) -> torch.Tensor:
    """Integers in [0, high), shape (E, *shape)."""
    return _on(torch.floor(_uniform(seeds, key, shape) * high).to(torch.int64).clamp_(max=high - 1), device)


@_eager
def permutation(seeds, key: int, n: int, device=None) -> torch.Tensor:
    """One random permutation of range(n) per member, shape (E, n)."""
    return _on(torch.argsort(_bits(seeds, key, (n,)), dim=1), device)


@_eager
def permutations(seeds, keys: Sequence[int], n: int, device=None) -> torch.Tensor:
    """``permutation(seeds, k, n)`` for every k in ``keys`` in one vectorised draw, shape (E, len(keys), n):
    the same numbers (each is a function of (seed, key, index) only) for a fraction of the per-call cost,
    e.g. a block of epochs' shuffles at once."""
    s = _as_seeds(seeds).cpu()
    k = torch.tensor([_s64(int(key)) for key in keys], dtype=torch.int64)
    base = splitmix64(splitmix64(s[:, None] * _GOLDEN ^ k[None, :]))  # (E, K), as in random_bits
    idx = torch.arange(n, dtype=torch.int64)
    return _on(torch.argsort(splitmix64(base[:, :, None] + idx * _M1), dim=2), device)

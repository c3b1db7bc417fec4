"""A rule as a vector field on weight space, and how far it is from being a gradient (Ninou et al. 2025).

F(theta) is the rule's full update (learning signal and decay) of one ensemble member on a *fixed* batch,
with every layer's weight matrix flattened into theta (biases held fixed). Its Jacobian J = dF/dtheta
splits into S = (J + J^T)/2 and A = (J - J^T)/2; a gradient field (F = -grad V) has A = 0 exactly, so

    nongradient_fraction = ||A||_F / ||J||_F   (0 for a gradient field, 1 for a pure rotation).

The loop test needs no Jacobian: the circulation of F around small circles in random 2-planes, divided by
2 pi r^2 times the rms in-plane change of F per unit length. For the 2x2 in-plane Jacobian K this is
||K_A||_F / ||K||_F (signed): exactly 0 in every plane for a gradient field, +-1 for a rotation. It is a zero
test, not an estimate of the full fraction: in a random plane u^T S u picks up tr(S)/P while u^T A v has no
trace term, so fields whose Jacobian has a large trace read smaller there.

Everything is deterministic: noise transforms draw with fixed keys (``steps``: one draw per listed step,
averaged), and stateful pieces (Adam moments, BCM thresholds, baselines) use a frozen ``state``.
Note the metric is Euclidean: a preconditioned gradient (Adam, J = -P H) also counts as non-gradient,
exactly as curl descent does (P = a +-1 diagonal); the difference is that a positive P keeps stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.losses import check_loss
from plasticlab.networks.mlp import MLP
from plasticlab.rules.base import Chain, Context


def member(net: MLP, e: int) -> MLP:
    """Member e of an ensemble as an E=1 network."""
    return MLP(
        [W[e : e + 1] for W in net.weights],
        [None if b is None else b[e : e + 1] for b in net.biases],
        net.activation,
        net.init,
    )


def flatten(weights: list[torch.Tensor]) -> torch.Tensor:
    """All layers' weights as one flat vector theta."""
    return torch.cat([W.reshape(-1) for W in weights])


@dataclass
class RuleField:
    """F(theta) of one member: call it on a flat theta, or use ``.jacobian(theta)``."""

    rule: Chain
    template: MLP  # E=1: shapes, biases, activation
    x: torch.Tensor  # (1, B, in)
    y: torch.Tensor  # (1, B, out)
    loss: str
    seeds: torch.Tensor  # (1,)
    state: Any
    steps: tuple[int, ...] = (0,)

    @property
    def shapes(self) -> list[torch.Size]:
        """The (1, out, in) shape of each layer's weight matrix."""
        return [W.shape for W in self.template.weights]

    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """The flat theta split back into per-layer weight matrices (inverse of ``flatten``)."""
        out, i = [], 0
        for s in self.shapes:
            n = math.prod(s)
            out.append(theta[i : i + n].reshape(s))
            i += n
        return out

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """F(theta): the rule's flat update at these weights, averaged over ``steps``."""
        weights = self.unflatten(theta)
        net = MLP(weights, list(self.template.biases), self.template.activation, self.template.init)
        total: Any = 0
        for s in self.steps:
            trace = net.forward(self.x, self.rule.perturb(weights, self.state, self.seeds, s))
            ctx = Context(net=net, trace=trace, x=self.x, y=self.y, loss=self.loss, seeds=self.seeds, step=s)
            total = total + flatten([u for u, _ in self.rule.step(self.state, ctx).updates])
        return total / len(self.steps)

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """J = dF/dtheta at theta (P, P), by reverse mode."""
        return torch.func.jacrev(self)(theta)


def rule_field(
    rule: Chain,
    net: MLP,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "mse",
    *,
    e: int = 0,
    seed: int | None = None,
    state: Any = None,
    steps=(0,),
) -> tuple[RuleField, torch.Tensor]:
    """(F, theta0) for member ``e`` of ``net`` on the batch (x, y) ((E, B, d) or (B, d)).

    ``seed`` fixes the member's random feedback / target networks / noise (default: e); ``state`` the
    frozen rule state (default ``rule.init`` at theta0, see ``warm_state`` for stateful rules)."""
    if not isinstance(rule, Chain):
        raise PlasticlabError(
            f"rule_field needs a rule chain, e.g. chain(sgd(), weight_decay(1e-3)); got {rule!r}"
        )
    check_loss(loss)
    one = member(net, e)
    pick = lambda t: (t[e : e + 1] if t.shape[0] > 1 else t) if t.ndim == 3 else t[None]
    seeds = torch.tensor([e if seed is None else int(seed)], dtype=torch.int64)
    state = rule.init(one, seeds) if state is None else state
    field = RuleField(rule, one, pick(x), pick(y), loss, seeds, state, tuple(int(s) for s in steps))
    return field, flatten(one.weights)


def warm_state(
    rule: Chain, net: MLP, data, seed: int, *, steps: int = 50, batch_size: int = 256, e: int = 0
) -> Any:
    """Advance a stateful rule's state ``steps`` mini-batches with member e's weights held fixed (Adam's
    moments become batch averages of g and g^2 at this point; BCM thresholds settle)."""
    one = member(net, e)
    seeds = torch.tensor([int(seed)], dtype=torch.int64)
    state = rule.init(one, seeds)
    for s in range(steps):
        x, y = member_batch(data, e, seeds, seeding.key_of("warm-batch", s), batch_size)
        trace = one.forward(x, rule.perturb(one.weights, state, seeds, s))
        state = rule.step(
            state, Context(net=one, trace=trace, x=x, y=y, loss=data.loss, seeds=seeds, step=s)
        ).state
    return state


def member_batch(data, e: int, seeds: torch.Tensor, key: int, batch_size: int):
    """A (1, B, d) mini-batch of member e's training data (per-member, shared, or seed-shared storage)."""
    row = 0 if data.x_train.shape[0] == 1 else e
    if getattr(data, "member", None) is not None and data.x_train.shape[0] > 1:
        row = int(data.member[e])
    idx = seeding.randint(seeds, key, (batch_size,), data.n_train)[0]
    return data.x_train[row][idx][None], data.y_train[row][idx][None]


@dataclass
class FieldAnalysis:
    """Norms and spectrum of a rule's Jacobian split into symmetric and antisymmetric parts."""

    nongradient_fraction: float  # ||A||_F / ||J||_F
    norm_J: float
    norm_sym: float
    norm_antisym: float
    eigenvalues: torch.Tensor  # complex (P,)
    max_real: float  # largest real part: > 0 means the point repels along some direction
    max_imag: float  # largest |imaginary part|: rotation rate

    def as_dict(self) -> dict[str, float]:
        """The scalar results by name (the eigenvalues left out), for a table row."""
        return dict(
            nongradient_fraction=self.nongradient_fraction,
            norm_J=self.norm_J,
            norm_sym=self.norm_sym,
            norm_antisym=self.norm_antisym,
            max_real_eig=self.max_real,
            max_imag_eig=self.max_imag,
        )


def split(J: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(symmetric, antisymmetric) parts of a square matrix."""
    return (J + J.T) / 2, (J - J.T) / 2


def nongradient_fraction(J: torch.Tensor) -> float:
    """||A||_F / ||J||_F with A the antisymmetric part of J: 0 for a gradient field (NaN if J = 0)."""
    _S, A = split(J)
    nJ = torch.linalg.matrix_norm(J).item()
    return float("nan") if not nJ > 0 else torch.linalg.matrix_norm(A).item() / nJ


def analyse_jacobian(J: torch.Tensor, eigenvalues: bool = True) -> FieldAnalysis:
    """The symmetric / antisymmetric split of J, its norms and (optionally) its eigenvalues."""
    S, A = split(J)
    nJ = torch.linalg.matrix_norm(J).item()
    nA = torch.linalg.matrix_norm(A).item()
    frac = nA / nJ if nJ > 0 else float("nan")
    if eigenvalues and torch.isfinite(J).all():
        ev = torch.linalg.eigvals(J)
        mr, mi = ev.real.max().item(), ev.imag.abs().max().item()
    else:
        ev, mr, mi = torch.empty(0, dtype=torch.complex128), float("nan"), float("nan")
    return FieldAnalysis(frac, nJ, torch.linalg.matrix_norm(S).item(), nA, ev, mr, mi)


def analyse(field: Callable, theta: torch.Tensor, eigenvalues: bool = True) -> FieldAnalysis:
    """Jacobian of ``field`` at theta (reverse mode), its symmetric/antisymmetric split and spectrum."""
    J = torch.func.jacrev(field)(theta)
    return analyse_jacobian(J, eigenvalues)


def nongradient_fraction_hutchinson(
    field: Callable, theta: torch.Tensor, probes: int = 32, seed: int = 0
) -> float:
    """The same ratio for large theta without forming J: ||M||_F^2 = E||M v||^2 for v ~ N(0, I), with
    J v from one jvp and J^T v from one vjp per probe (a biased ratio of unbiased estimates)."""
    vjp = torch.func.vjp(field, theta)[1]
    V = seeding.normal(torch.tensor([seed]), seeding.key_of("hutchinson"), (probes, theta.numel()), theta.dtype)[0]
    sJ = sA = 0.0
    for v in V:
        Jv = torch.func.jvp(field, (theta,), (v,))[1]
        JTv = vjp(v)[0]
        sJ += Jv.pow(2).sum().item()
        sA += ((Jv - JTv) / 2).pow(2).sum().item()
    return math.sqrt(sA / sJ) if sJ > 0 else float("nan")


@dataclass
class LoopResult:
    """Circulation of a field around small loops in random 2-planes: ~0 for a gradient field."""

    ratios: torch.Tensor  # (planes,) signed ||K_A|| / ||K|| per plane
    circulations: torch.Tensor  # (planes,) raw circulation around each loop

    @property
    def mean_abs(self) -> float:
        """Mean |ratio| over the planes."""
        return self.ratios.abs().mean().item()

    @property
    def max_abs(self) -> float:
        """Largest |ratio| over the planes."""
        return self.ratios.abs().max().item()


def loop_test(
    field: Callable,
    theta: torch.Tensor,
    *,
    planes: int = 8,
    radius: float = 1e-3,
    points: int = 16,
    seed: int = 0,
    plane_vectors=None,
) -> LoopResult:
    """Circulation of F around circles theta + r (cos t u + sin t v) in random orthonormal 2-planes (u, v),
    by the trapezoid rule (spectrally accurate for a periodic integrand). ``plane_vectors`` = list of (u, v)
    overrides the random planes."""
    if plane_vectors is None:
        G = seeding.normal(
            torch.tensor([seed]), seeding.key_of("loop-planes"), (planes, 2, theta.numel()), theta.dtype
        )[0]
        plane_vectors = []
        for g in G:
            q, _ = torch.linalg.qr(g.T)
            plane_vectors.append((q[:, 0], q[:, 1]))
    F0 = field(theta)
    t = torch.arange(points, dtype=theta.dtype) * (2 * math.pi / points)
    ratios, circs = [], []
    for u, v in plane_vectors:
        circ, var = 0.0, 0.0
        for c, s in zip(torch.cos(t), torch.sin(t)):
            F = field(theta + radius * (c * u + s * v))
            dF = F - F0
            circ += (F @ (radius * (-s * u + c * v))).item()
            du, dv = (dF @ u).item(), (dF @ v).item()
            var += du * du + dv * dv  # not ** 2: a field of ~1e200 must give inf, not raise OverflowError
        circ *= 2 * math.pi / points
        rms_slope = math.sqrt(var / points) / radius
        circs.append(circ)
        ok = 0 < rms_slope < math.inf and math.isfinite(circ)  # a field too large to measure: no ratio
        ratios.append(circ / (2 * math.pi * radius**2 * rms_slope) if ok else float("nan"))
    return LoopResult(torch.tensor(ratios), torch.tensor(circs))

"""Curl-descent student–teacher engine (Ninou et al. 2025), ensemble-batched over a leading dim E.

Network ``y = phi(W2 phi(W1 x))`` with W1 (E, N, M), W2 (E, 1, N). Conventions (Ninou et al. 2025):
- e = ŷ − y; the output delta omits phi' (exact gradient for a linear output only);
- the hidden error is carried back through the *true* W2 (or a fixed DFA feedback matrix), never the
  flipped one: flips act on the update, not on the signal path;
- flips are on the presynaptic (column) index: ΔW2 ← ΔW2 D2 (hidden neurons), ΔW1 ← ΔW1 D1 (inputs);
- ``lr`` multiplies the batch-*mean* gradient, so with d = +1 the step is −lr·∂(½·mean e²)/∂W.

The rule comes from ``plasticlab.rules`` (see ``simulation.curl_rules``): ``rule="gd_flip"`` is
``chain(sgd(), flip_columns([k1, k2]))``, and any registered rule or rule object runs too. ``curl_step`` is
the pure, differentiable reference (torch.func works on it); ``simulate`` runs the same arithmetic fused and
in place for sgd/dfa signals with column flips, and through ``rules.Context`` for every other rule.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from plasticlab import compiling, devices, seeding
from plasticlab.compiling import Compiled
from plasticlab.errors import PlasticlabError, check_choice, check_positive
from plasticlab.networks.mlp import MLP, Trace
from plasticlab.rules import Chain, Context, Transform
from plasticlab.rules.flips import column_flips
from plasticlab.simulation.curl_rules import build_rule, fuse, label_pieces

ACTIVATIONS = ("linear", "tanh", "relu")


def _phi(a: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "tanh":
        return torch.tanh(a)
    if activation == "relu":
        return torch.relu(a)
    return a


def _dphi(a: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor | None:
    """phi'(a) (given h = phi(a)); None for linear so callers skip a multiply by ones."""
    if activation == "tanh":
        return 1.0 - h * h
    if activation == "relu":
        return (a > 0).to(a.dtype)
    return None


def curl_forward(W1: torch.Tensor, W2: torch.Tensor, x: torch.Tensor, activation: str) -> torch.Tensor:
    """ŷ (E, B, 1) for x (E, B, M)."""
    check_choice("activation", activation, ACTIVATIONS)
    h = _phi(x @ W1.transpose(-1, -2), activation)
    return _phi(h @ W2.transpose(-1, -2), activation)


def _per_member(v, like: torch.Tensor) -> torch.Tensor:
    """A float or (E,) tensor as (E, 1, 1) for broadcasting over a member's matrix."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return v.reshape(-1, 1, 1) if v.ndim else v


def curl_step(W1, W2, x, y, d1, d2, lr, activation, feedback=None, norms=None):
    """One rule-flipped update; returns (W1_new, W2_new), inputs untouched.

    d1 (E, M), d2 (E, N) are the ±1 diagonals of D1, D2 (all +1 for GD); ``feedback`` (E, N, 1) replaces
    W2ᵀ in the backward pass (DFA); ``norms`` = (n1, n2), each (E,), rescales each layer to that Frobenius
    norm after the update (None = unconstrained).
    """
    check_choice("activation", activation, ACTIVATIONS)
    B = x.shape[-2]
    a1 = x @ W1.transpose(-1, -2)  # (E, B, N)
    h = _phi(a1, activation)
    e = _phi(h @ W2.transpose(-1, -2), activation) - y  # (E, B, 1); no phi' at the output
    e = e * (_per_member(lr, W1) / B)
    back = W2 if feedback is None else feedback.transpose(-1, -2)  # (E, 1, N)
    delta = e @ back  # (E, B, N)
    dp = _dphi(a1, h, activation)
    if dp is not None:
        delta = delta * dp
    W2n = W2 - (e.transpose(-1, -2) @ h) * d2[:, None, :]
    W1n = W1 - (delta.transpose(-1, -2) @ x) * d1[:, None, :]
    if norms is not None:
        n1, n2 = norms
        W1n = W1n * (_per_member(n1, W1) / torch.linalg.vector_norm(W1n, dim=(-2, -1), keepdim=True))
        W2n = W2n * (_per_member(n2, W2) / torch.linalg.vector_norm(W2n, dim=(-2, -1), keepdim=True))
    return W1n, W2n


# (E, n) ±1 diagonals, first k[e] entries −1 (Ninou et al. 2025): the one builder, the one rules.flip_columns uses
flips = column_flips


# ---------------------------------------------------------------------------------------------------------
# Simulator
# ---------------------------------------------------------------------------------------------------------

INITS = ("random", "teacher")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _key(purpose: str) -> int:
    return seeding.key_of("curl", purpose)


@dataclass(frozen=True)
class CurlConfig:
    """One network/data shape; every member of a batch shares it (different shapes = different chunks)."""

    M: int
    N: int
    activation: str = "tanh"
    P: int = 250  # training-set size (fixed, reshuffled every epoch)
    B: int = 10  # mini-batch; B = P is full batch (no shuffling needed)
    epochs: int = 1000
    eta: float = 0.1  # per-step lr is eta·B/P so an epoch is comparable across P
    n_test: int = 100
    norm_constraint: bool = True  # rescale each layer to its initial Frobenius norm after every step
    init: str = "random"  # "random": teacher-like draw × init_scale; "teacher": teacher + noise
    perturbation: float = 1e-15  # std of the per-weight Gaussian added to the teacher when init="teacher"
    balanced_teacher: bool = False  # rescale the teacher to ‖W1‖_F = √N, ‖W2‖ = 1 (Ninou et al. 2025/B.5)
    threshold: float = 1e-3  # for epochs_to_threshold (train error)
    points_per_decade: int = 20  # log-spaced evaluation epochs (plus epoch 0 and the last epoch)
    record_last: int = 0  # keep all weights over the last K epochs (chaos measurements)
    stop_when_converged: bool = False  # stop once every live member is below threshold
    moment_match: bool = True  # linear + full batch: step on the data moments (XᵀX/P, YᵀX/P)
    dtype: str = "float64"

    def validate(self) -> CurlConfig:
        """This configuration after its checks (one-line errors naming the bad field)."""
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("init", self.init, INITS)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("M", "N", "P", "B", "epochs", "n_test", "points_per_decade"):
            check_positive(name, getattr(self, name))
        check_positive("eta", self.eta)
        if self.B > self.P or self.P % self.B:
            raise PlasticlabError(f"batch size B={self.B} must divide the training-set size P={self.P}")
        if not 0 <= self.record_last <= self.epochs:
            raise PlasticlabError(f"record_last={self.record_last} must be in [0, epochs={self.epochs}]")
        return self

    def checkpoints(self) -> np.ndarray:
        """The epochs at which errors are recorded."""
        # a grid fixed per decade (not per run length) so thresholds are comparable across epoch budgets
        n = int(math.ceil(math.log10(self.epochs) * self.points_per_decade)) + 1
        ts = np.round(10.0 ** (np.arange(n) / self.points_per_decade)).astype(int)
        return np.unique(np.concatenate([[0], ts[ts < self.epochs], [self.epochs]]))


def grid(seeds, k1s=(0,), k2s=(0,), init_scales=(1.0,), rules=("gd_flip",)) -> dict[str, list]:
    """Member lists for the full product (rule-major, seed-minor) — pass as ``simulate(cfg, **grid(...))``."""
    rows = list(itertools.product(rules, k1s, k2s, init_scales, seeds))
    return dict(
        rule=[r[0] for r in rows],
        k1=[r[1] for r in rows],
        k2=[r[2] for r in rows],
        init_scale=[r[3] for r in rows],
        seeds=[r[4] for r in rows],
    )


@dataclass
class CurlResult:
    """Everything a curl-descent simulation recorded, per member and checkpoint."""

    config: CurlConfig
    members: pd.DataFrame  # one row per member: seed, rule, k1, k2, init_scale, eta
    checkpoints: np.ndarray  # (T,) epochs at which errors were measured
    train_error: np.ndarray  # (E, T), NaN after divergence / early stop
    test_error: np.ndarray  # (E, T)
    peak_train_error: np.ndarray  # (E,) max over checkpoints (over every step when full batch)
    epochs_to_threshold: np.ndarray  # (E,) first checkpoint with train error < threshold, else NaN
    diverged: np.ndarray  # (E,) bool
    diverged_at: np.ndarray  # (E,) epoch at which non-finite weights were found, else NaN
    W1: torch.Tensor  # final weights (E, N, M) (the initial ones for diverged members)
    W2: torch.Tensor
    history: dict = field(default_factory=dict)  # "W1" (K,E,N,M), "W2" (K,E,1,N), "epochs" (K,)
    epochs_run: int = 0
    loop_seconds: float = 0.0  # wall time of the epoch loop (init and data generation excluded)
    steps_run: int = 0

    def table(self) -> pd.DataFrame:
        """Tidy per-member summary (final = last measured checkpoint)."""
        df = self.members.copy()
        last = np.where(np.isnan(self.train_error), -np.inf, self.checkpoints[None, :]).argmax(axis=1)
        rows = np.arange(len(df))
        df["train_error"] = np.where(self.diverged, np.nan, self.train_error[rows, last])
        df["test_error"] = np.where(self.diverged, np.nan, self.test_error[rows, last])
        df["peak_train_error"] = self.peak_train_error
        df["epochs_to_threshold"] = self.epochs_to_threshold
        df["diverged"] = self.diverged
        df["diverged_at"] = self.diverged_at
        for k, v in asdict(self.config).items():
            if k not in df:
                df[k] = v
        return df


def _broadcast(name: str, v, E: int) -> list:
    v = list(v) if isinstance(v, (list, tuple, np.ndarray, torch.Tensor)) else [v] * E
    if len(v) != E:
        raise PlasticlabError(f"{name} has {len(v)} entries but there are {E} seeds")
    return v


def _uniform_pm(seeds, key: int, shape, bound: float, dtype) -> torch.Tensor:
    return (2.0 * seeding.uniform(seeds, key, shape) - 1.0).mul_(bound).to(dtype)


def _teacher_data(cfg: CurlConfig, seeds: torch.Tensor):
    """Teacher, data and DFA feedback: functions of the seed alone, so members sharing a seed share them."""
    M, N = cfg.M, cfg.N
    T1 = _uniform_pm(seeds, _key("teacher_W1"), (N, M), 1 / math.sqrt(M), torch.float64)
    T2 = _uniform_pm(seeds, _key("teacher_W2"), (1, N), 1 / math.sqrt(N), torch.float64)
    if cfg.balanced_teacher:
        T1 *= math.sqrt(N) / torch.linalg.vector_norm(T1, dim=(1, 2), keepdim=True)
        T2 /= torch.linalg.vector_norm(T2, dim=(1, 2), keepdim=True)
    X = seeding.normal(seeds, _key("x_train"), (cfg.P, M)) / math.sqrt(2.0)
    Xt = seeding.normal(seeds, _key("x_test"), (cfg.n_test, M)) / math.sqrt(2.0)
    F = _uniform_pm(seeds, _key("feedback"), (N, 1), 1 / math.sqrt(N), torch.float64)
    return T1, T2, X, curl_forward(T1, T2, X, cfg.activation), Xt, curl_forward(T1, T2, Xt, cfg.activation), F


def _student(cfg: CurlConfig, seeds: torch.Tensor, scale: torch.Tensor, T1, T2):
    M, N = cfg.M, cfg.N
    if cfg.init == "teacher":
        return (
            T1 + cfg.perturbation * seeding.normal(seeds, _key("perturb_W1"), (N, M)),
            T2 + cfg.perturbation * seeding.normal(seeds, _key("perturb_W2"), (1, N)),
        )
    s = scale.to(torch.float64).reshape(-1, 1, 1)
    return (
        s * _uniform_pm(seeds, _key("student_W1"), (N, M), 1 / math.sqrt(M), torch.float64),
        s * _uniform_pm(seeds, _key("student_W2"), (1, N), 1 / math.sqrt(N), torch.float64),
    )


def initial_state(cfg: CurlConfig, seeds: torch.Tensor, scale: torch.Tensor, dt):
    """Per-member (W1, W2, X, Y, Xt, Yt, F): the simulator's starting point (teacher, data, student).

    Shared by experiments that step the engine themselves.
    """
    with devices.use("cpu"):
        T1, T2, X, Y, Xt, Yt, F = _teacher_data(cfg, seeds)
        W1, W2 = _student(cfg, seeds, scale, T1, T2)
    return [t.to(dt).contiguous() for t in (W1, W2, X, Y, Xt, Yt, F)]


def _error(W1, W2, X, Y, activation) -> torch.Tensor:
    return 0.5 * (curl_forward(W1, W2, X, activation) - Y).pow(2).mean(dim=(1, 2))


def _group_error(W1, W2, X, Y, activation, k: int) -> torch.Tensor:
    """``_error`` (E,) for U groups of k consecutive members sharing the data X (U, n, M), Y (U, n, 1)."""
    (U, n, M), (E, N) = X.shape, W1.shape[:2]
    h = _phi(torch.bmm(X, W1.view(U, k * N, M).transpose(1, 2)), activation).view(U, n, k, N)
    out = _phi(torch.mul(h, W2.view(U, 1, k, N)).sum(-1), activation)  # (U, n, k)
    return 0.5 * (out - Y).pow(2).mean(dim=1).view(E)


@dataclass(frozen=True)
class CurlProblem:
    """What stays fixed while a batch of members trains: shape, data, flips, feedback, target norms.

    Data depend on the seed only, so they are held once per distinct seed (``Xu``, ``Yu``) and members
    index into them through ``inv``. ``mode`` picks the step: "minibatch" (reshuffled every epoch),
    "full" (one batch, no shuffling) or "moments" (linear + full batch: a step on the data moments).
    """

    cfg: CurlConfig
    members: pd.DataFrame
    useeds: torch.Tensor  # (U,) distinct seeds
    inv: torch.Tensor  # (E,) member -> index into useeds
    Xu: torch.Tensor  # (U, P, M)
    Yu: torch.Tensor  # (U, P, 1)
    Xt: torch.Tensor  # (E, n_test, M)
    Yt: torch.Tensor
    Ft: torch.Tensor  # (E, 1, N) DFA feedback, transposed like W2
    dfa_mask: torch.Tensor  # (E, 1, 1) bool
    dfa_all: bool
    dfa_any: bool
    d1r: torch.Tensor  # (E, 1, M) column flips of W1's update
    d2r: torch.Tensor  # (E, 1, N) column flips of W2's update
    use_d1: bool
    use_d2: bool
    n1: torch.Tensor  # (E, 1, 1) Frobenius norms kept by the norm constraint
    n2: torch.Tensor
    W10: torch.Tensor  # initial weights, restored for members that diverge
    W20: torch.Tensor
    mode: str
    one: torch.Tensor
    rule: Chain  # the members' rule (from plasticlab.rules)
    seeds: torch.Tensor  # (E,) member seeds, for rules that draw random numbers
    fused: bool  # the rule is one the fused step computes (else it runs through rules.Context)
    X_all: torch.Tensor | None = None  # full batch: every member's training set, (flipped copy for W1)
    Xd_all: torch.Tensor | None = None
    Y_all: torch.Tensor | None = None
    Sigma: torch.Tensor | None = None  # moments: XᵀX/P per member
    vstar: torch.Tensor | None = None  # moments: the teacher's end-to-end map
    group: int = 1  # members per shared-data group (consecutive, one per distinct seed); 1 = no grouping

    @property
    def E(self) -> int:
        """Number of members."""
        return len(self.inv)

    @property
    def steps_per_epoch(self) -> int:
        """Updates per epoch (1 for full batch and moments)."""
        return 1 if self.mode != "minibatch" else self.cfg.P // self.cfg.B

    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, Y) of every member, (E, P, ·)."""
        identity = len(self.useeds) == self.E and bool(
            (self.inv == torch.arange(self.E, device=self.inv.device)).all()
        )
        # all seeds distinct and sorted (the usual case): the members' sets are Xu itself, no gather
        return (self.Xu, self.Yu) if identity else (self.Xu[self.inv], self.Yu[self.inv])


@dataclass(frozen=True)
class CurlState:
    """What changes while training: weights, per-member rate, running peak error and divergence."""

    W1: torch.Tensor  # (E, N, M)
    W2: torch.Tensor  # (E, 1, N)
    lr: torch.Tensor  # (E, 1, 1) per-step rate, 1/B and the batch mean folded in; 0 once diverged
    lr_scalar: float | None  # the shared rate when all members have the same one (rides on alpha)
    peak: torch.Tensor  # (E,) max training error seen at every step (full batch only; else -inf)
    diverged: torch.Tensor  # (E,) bool
    diverged_at: torch.Tensor  # (E,) float64 epoch, NaN while finite
    rule_state: Any = ()  # the rule's state (structure fixed at init)
    epoch: int = 0
    step: int = 0


def _members(cfg: CurlConfig, seeds, k1, k2, init_scale, rule, eta) -> pd.DataFrame:
    """Validated per-member table (seed, rule, k1, k2, init_scale, eta): scalars broadcast to every seed."""
    seeds = [int(s) for s in _broadcast("seeds", seeds, len(seeds))]
    E = len(seeds)
    if E == 0:
        raise PlasticlabError("simulate needs at least one seed")
    if isinstance(rule, Transform):
        rules = [repr(rule)] * E
    else:
        rules = [str(r) for r in _broadcast("rule", rule, E)]
        for r in dict.fromkeys(rules):
            label_pieces(r)  # an unknown name fails here, naming the valid ones
    k1s = [int(k) for k in _broadcast("k1", k1, E)]
    k2s = [int(k) for k in _broadcast("k2", k2, E)]
    scales = [float(r) for r in _broadcast("init_scale", init_scale, E)]
    etas = [float(v) for v in _broadcast("eta", cfg.eta if eta is None else eta, E)]
    for k, n, name in ((k1s, cfg.M, "k1"), (k2s, cfg.N, "k2")):
        bad = [v for v in k if not 0 <= v <= n]
        if bad:
            raise PlasticlabError(f"{name}={bad[0]} out of range [0, {n}]")
    return pd.DataFrame(dict(seed=seeds, rule=rules, k1=k1s, k2=k2s, init_scale=scales, eta=etas))


def _mode(cfg: CurlConfig) -> str:
    if cfg.B != cfg.P:
        return "minibatch"
    return "moments" if cfg.activation == "linear" and cfg.moment_match else "full"


def _batch_fields(cfg: CurlConfig, mode: str, Xu, Xu_d, Yu_d, inv, d1, vstar, dt) -> dict[str, Any]:
    """The CurlProblem fields that full-batch and moment steps read (none for mini-batches)."""
    extra: dict[str, Any] = {}
    if mode != "minibatch":  # one batch, no shuffling: order does not change a full-batch mean
        extra["X_all"], extra["Y_all"] = Xu_d[inv].contiguous(), Yu_d[inv].contiguous()
        extra["Xd_all"] = extra["X_all"] * d1[:, None, :] if bool((d1 < 0).any()) else extra["X_all"]
    if mode == "moments":
        # Linear, one output, full batch: the update depends on the data only through Σ̂ = XᵀX/P and
        # c = YᵀX/P, so a step costs O(NM + M²) instead of O(PNM).
        # The teacher is linear too, so c = v* Σ̂: working with v − v* avoids the cancellation of
        # vΣ̂ − c, which would put a 1e-17 floor under errors that start at 1e-30 on the teacher.
        extra["Sigma"] = (Xu.transpose(1, 2) @ Xu / cfg.P)[inv].to(dt).contiguous()
        extra["vstar"] = vstar.to(dt).contiguous()
    return extra


def init_fn(
    cfg: CurlConfig, members: pd.DataFrame, device=None, rule: Transform | None = None
) -> tuple[CurlProblem, CurlState]:
    """The fixed problem and the state at epoch 0 for the members of ``members`` (see ``_members``);
    ``rule`` (one for every member) replaces the rules their labels name."""
    dt, dev = DTYPES[cfg.dtype], devices.pick(device)
    with devices.use("cpu"):  # built on the CPU, then moved: the same numbers on every device
        problem, state = _init_cpu(cfg, members, dt, rule)
    return _to(problem, dev), _to(state, dev)


def _rule_fields(cfg: CurlConfig, members: pd.DataFrame, given: Transform | None, W1, W2) -> tuple[dict, Any]:
    """The CurlProblem fields that come from the rule, and the rule's initial state."""
    rule = build_rule(members, given)
    seeds = torch.tensor(members.seed.to_numpy(), dtype=torch.int64)
    state = rule.init(MLP([W1, W2], [None, None], cfg.activation), seeds)
    f = fuse(rule, state, W2, cfg.M)
    dt, E = W1.dtype, len(members)
    if f is None:  # every step goes through rules.Context: the fused step's inputs are placeholders
        ones, no = torch.ones(E, 1, cfg.M, dtype=dt), torch.zeros(E, 1, 1, dtype=torch.bool)
        f_fields = dict(Ft=torch.zeros(E, 1, cfg.N, dtype=dt), dfa_mask=no, d1=ones[:, 0], d2=ones[:, 0, : cfg.N])
    else:
        f_fields = dict(Ft=f.Ft, dfa_mask=f.dfa_mask, d1=f.d1, d2=f.d2)
    d1, d2 = f_fields.pop("d1"), f_fields.pop("d2")
    fields = dict(
        **f_fields,
        dfa_all=bool(f_fields["dfa_mask"].all()),
        dfa_any=bool(f_fields["dfa_mask"].any()),
        d1r=d1[:, None, :],
        d2r=d2[:, None, :],
        use_d1=bool((d1 < 0).any()),
        use_d2=bool((d2 < 0).any()),
        rule=rule,
        seeds=seeds,
        fused=f is not None,
    )
    return fields, state


def _init_cpu(cfg: CurlConfig, members: pd.DataFrame, dt, rule: Transform | None) -> tuple[CurlProblem, CurlState]:
    E, P, B = len(members), cfg.P, cfg.B
    seeds_np = members.seed.to_numpy()
    useeds, inv_np = np.unique(seeds_np, return_inverse=True)
    useeds_t, inv = torch.tensor(useeds, dtype=torch.int64), torch.tensor(inv_np, dtype=torch.int64)
    T1, T2, Xu, Yu, Xtu, Ytu, _ = _teacher_data(cfg, useeds_t)  # DFA feedback: the rule's own
    W1, W2 = _student(cfg, torch.tensor(seeds_np), torch.tensor(members.init_scale.to_numpy()), T1[inv], T2[inv])
    W1, W2 = W1.to(dt).contiguous(), W2.to(dt).contiguous()
    from_rule, rule_state = _rule_fields(cfg, members, rule, W1, W2)
    mode = _mode(cfg)
    # Folding 1/B and the sign into the error makes every update a single baddbmm.
    lr = torch.tensor(members.eta.to_numpy(), dtype=dt).reshape(E, 1, 1) * (B / P) / B
    Xu_d, Yu_d = Xu.to(dt), Yu.to(dt)
    extra = _batch_fields(cfg, mode, Xu, Xu_d, Yu_d, inv, from_rule["d1r"][:, 0], (T2 @ T1)[inv], dt)
    if mode == "moments":
        lr = lr * B  # the batch mean is already inside Σ̂
    problem = CurlProblem(
        cfg=cfg,
        members=members,
        useeds=useeds_t,
        inv=inv,
        Xu=Xu_d,
        Yu=Yu_d,
        Xt=Xtu[inv].to(dt),
        Yt=Ytu[inv].to(dt),
        n1=torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True),
        n2=torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True),
        W10=W1.clone(),
        W20=W2.clone(),
        mode=mode,
        one=torch.ones((), dtype=dt),
        **from_rule,
        **extra,
    )
    state = CurlState(
        W1=W1,
        W2=W2,
        lr=lr,
        lr_scalar=float(lr[0]) if bool((lr == lr[0]).all()) else None,
        peak=torch.full((E,), -math.inf, dtype=dt),
        diverged=torch.zeros(E, dtype=torch.bool),
        diverged_at=torch.full((E,), math.nan, dtype=torch.float64),
        rule_state=rule_state,
    )
    return problem, state


def _to(obj, device: torch.device):
    """A copy of a problem/state dataclass with every tensor field on ``device``."""
    if device.type == "cpu":
        return obj
    moved = {k: _tree_to(v, device) for k, v in vars(obj).items() if isinstance(v, (torch.Tensor, tuple, list))}
    return replace(obj, **moved)


def _tree_to(tree, device: torch.device):
    """Every tensor of a (nested tuple/list) state on ``device``."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, (tuple, list)):
        items = [_tree_to(t, device) for t in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return tree


def _feedback(W2: torch.Tensor, Ft: torch.Tensor, dfa_mask: torch.Tensor, dfa: str) -> torch.Tensor:
    """What carries the error back to the hidden layer: the true W2, or the fixed DFA matrix."""
    if dfa == "all":
        return Ft
    return torch.where(dfa_mask, Ft, W2) if dfa == "some" else W2


def _renorm(W1, W2, n1, n2, norm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not norm:
        return W1, W2
    W1 = W1 * torch.div(n1, torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True))
    W2 = W2 * torch.div(n2, torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True))
    return W1, W2


def _consts(p: CurlProblem) -> tuple[torch.Tensor, ...]:
    """The problem's tensors a step reads, in ``_step_tensors``' order."""
    return (p.Ft, p.dfa_mask, p.d2r, p.n1, p.n2, p.one)


def _flags(p: CurlProblem, lr_scalar: float | None) -> dict[str, Any]:
    """The Python-level choices of a step (a compiled step is specialised on them)."""
    dfa = "all" if p.dfa_all else ("some" if p.dfa_any else "none")
    return dict(
        act=p.cfg.activation,
        full=p.mode == "full",
        lr_scalar=lr_scalar,
        dfa=dfa,
        use_d2=p.use_d2,
        norm=p.cfg.norm_constraint,
    )


def _step_tensors(
    W1, W2, peak, lr, xb, xdb, yb, Ft, dfa_mask, d2r, n1, n2, one, *, act, full, lr_scalar, dfa, use_d2, norm
):
    """The arithmetic of ``step_fn`` on tensors only (what torch.compile sees): -> (W1, W2, peak)."""
    a1 = torch.bmm(xb, W1.transpose(1, 2))
    h = torch.tanh(a1) if act == "tanh" else (torch.clamp_min(a1, 0.0) if act == "relu" else a1)
    e = torch.bmm(h, W2.transpose(1, 2))
    if act == "tanh":
        e = e.tanh_()
    elif act == "relu":
        e = e.relu_()
    e = e.sub_(yb)
    if full:  # every step's error is the training error, so the peak is exact
        peak = torch.maximum(peak, e.pow(2).mean(dim=(1, 2)).mul_(0.5))
    # one shared learning rate (the usual case) rides on the scalar alpha of the updates below
    if lr_scalar is None:
        e = e.mul_(lr)
    delta = torch.mul(e, _feedback(W2, Ft, dfa_mask, dfa))  # (E,B,1)·(E,1,N): an outer product
    if act == "tanh":
        delta = delta.mul_(torch.addcmul(one, h, h, value=-1.0))
    elif act == "relu":
        delta = delta.mul_(a1 > 0)
    alpha = -1.0 if lr_scalar is None else -lr_scalar
    W2 = torch.baddbmm(W2, e.transpose(1, 2), torch.mul(h, d2r) if use_d2 else h, alpha=alpha)
    W1 = torch.baddbmm(W1, delta.transpose(1, 2), xdb, alpha=alpha)
    W1, W2 = _renorm(W1, W2, n1, n2, norm)
    return W1, W2, peak


def _steps_tensors(W1, W2, peak, lr, xs, xds, ys, *consts, **flags):
    """``_step_tensors`` over a block of K batches xs (K, E, B, M): one compiled graph for K steps, so the
    per-call cost of a compiled function is paid once per block (it exceeds a small step's work)."""
    for i in range(xs.shape[0]):
        W1, W2, peak = _step_tensors(W1, W2, peak, lr, xs[i], xds[i], ys[i], *consts, **flags)
    return W1, W2, peak


_OUTER_BMM = 1 << 16  # entries of δ from which its outer product is a product, not a broadcast multiply


def _group_step_tensors(
    W1,
    W2,
    peak,
    lr,
    xg,
    yg,
    Ft,
    dfa_mask,
    d1r,
    d2r,
    n1,
    n2,
    one,
    *,
    k,
    act,
    full,
    lr_scalar,
    dfa,
    use_d1,
    use_d2,
    norm,
    inplace=False,
):
    """``_step_tensors`` for U groups of k consecutive members that see the same batch xg (U, B, M), yg
    (U, B, 1): one (kN × M)·(M × B) product per group forward and one (kN × B)·(B × M) for ΔW1, where the
    per-member step does k products k times narrower; only the products' summation order differs from
    ``_step_tensors``. ``inplace`` updates W1 and W2 in place (the caller owns them): the
    product then accumulates straight into W1 instead of into a copy, one pass over W1 fewer."""
    U, B, M = xg.shape
    E, N = W1.shape[0], W1.shape[1]
    Wg = W1.view(U, k * N, M)
    a1, hT, e = _group_forward(Wg, W2, xg, yg, k, act)
    if full:
        peak = torch.maximum(peak, e.pow(2).mean(dim=(1, 2)).mul_(0.5))
    if lr_scalar is None:
        e = e.mul_(lr)
    back = _feedback(W2, Ft, dfa_mask, dfa).transpose(1, 2)
    # (E, N, B), an outer product: a broadcast multiply with a short inner dimension is slow on large
    # shapes, where a product with inner dimension 1 (exact, one multiply per entry) is not
    delta = torch.bmm(back, e) if E * N * B >= _OUTER_BMM else torch.mul(back, e)
    if act == "tanh":
        delta = torch.ops.aten.tanh_backward(delta, hT)  # δ·(1 − h²) in one pass
    elif act == "relu":
        delta = delta.mul_(a1.view(E, N, B) > 0)
    alpha = -1.0 if lr_scalar is None else -lr_scalar
    dW2 = torch.bmm(e, hT.transpose(1, 2))  # (E, 1, N)
    dT = delta.view(U, k * N, B)
    # Column flips differ between a group's members, so a flipped ΔW1 is one product per member on its
    # flipped copy of the batch (exactly the per-member step's); that costs less than forming the group's
    # wide product and flipping its columns afterwards, which writes and reads a W1-sized temporary.
    xd = torch.mul(xg.view(U, 1, B, M), d1r.view(U, k, 1, M)).view(E, B, M) if use_d1 else None
    upd = (dW2, d2r if use_d2 else None, delta, dT, xd, xg, alpha)
    W1, W2 = (_group_update_ if inplace else _group_update)(W1, W2, Wg, upd, n1, n2, norm)
    return W1, W2, peak


def _group_forward(Wg, W2, xg, yg, k: int, act: str):
    """The group step's forward pass: pre-activations (U, kN, B), hidden activity transposed hT (E, N, B)
    and each member's error e (E, 1, B)."""
    U, B = xg.shape[0], xg.shape[1]
    E, N = W2.shape[0], W2.shape[2]
    # Hidden activity transposed, (U, kN, B) = (E, N, B) per member: the readout, its error and ΔW2 are
    # then small per-member products, and ΔW1's product reads δ without a transpose.
    a1 = torch.bmm(Wg, xg.transpose(1, 2))
    h = torch.tanh(a1) if act == "tanh" else (torch.clamp_min(a1, 0.0) if act == "relu" else a1)
    hT = h.view(E, N, B)
    e = torch.bmm(W2, hT)  # (E, 1, B): each member's readout
    if act == "tanh":
        e = e.tanh_()
    elif act == "relu":
        e = e.relu_()
    e.view(U, k, 1, B).sub_(yg.view(U, 1, 1, B))  # the group's targets are the same for its k members
    return a1, hT, e


def _group_update_(W1, W2, Wg, upd, n1, n2, norm):
    """The group step's ΔW1, ΔW2 added in place (W1 through its group view ``Wg`` when no column flips),
    then the norm constraint."""
    dW2, d2r, delta, dT, xd, xg, alpha = upd
    W2 = W2.addcmul_(dW2, d2r, value=alpha) if d2r is not None else W2.add_(dW2, alpha=alpha)
    if xd is not None:
        W1 = W1.baddbmm_(delta, xd, alpha=alpha)
    else:
        Wg.baddbmm_(dT, xg, alpha=alpha)
    if norm:
        W1 = W1.mul_(torch.div(n1, torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True)))
        W2 = W2.mul_(torch.div(n2, torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True)))
    return W1, W2


def _group_update(W1, W2, Wg, upd, n1, n2, norm):
    """:func:`_group_update_` into new tensors (the caller's W1, W2 are left as they are)."""
    dW2, d2r, delta, dT, xd, xg, alpha = upd
    W2 = torch.addcmul(W2, dW2, d2r, value=alpha) if d2r is not None else torch.add(W2, dW2, alpha=alpha)
    if xd is not None:
        W1 = torch.baddbmm(W1, delta, xd, alpha=alpha)
    else:
        W1 = torch.baddbmm(Wg, dT, xg, alpha=alpha).view(W1.shape)
    return _renorm(W1, W2, n1, n2, norm)


def _group_steps_tensors(W1, W2, peak, lr, xs, ys, *consts, **flags):
    """``_group_step_tensors`` over a block of K group batches xs (K, U, B, M) (one compiled graph)."""
    for i in range(xs.shape[0]):
        W1, W2, peak = _group_step_tensors(W1, W2, peak, lr, xs[i], ys[i], *consts, **flags)
    return W1, W2, peak


_compiled_steps = Compiled(_steps_tensors, "the curl-descent step")
_compiled_group_steps = Compiled(_group_steps_tensors, "the grouped curl-descent step")
COMPILE_BLOCK = 10  # steps per compiled graph: compile time grows with it, per-call overhead shrinks


def _group_args(p: CurlProblem, lr_scalar: float | None) -> tuple[tuple, dict[str, Any]]:
    """The tensors and flags of ``_group_step_tensors`` for this problem."""
    flags = _flags(p, lr_scalar)
    flags.update(k=p.group, use_d1=p.use_d1)
    return (p.Ft, p.dfa_mask, p.d1r, p.d2r, p.n1, p.n2, p.one), flags


def group_steps_fn(p: CurlProblem, s: CurlState, xs: torch.Tensor, ys: torch.Tensor, compiled: bool) -> CurlState:
    """Steps of every member on the group batches xs (K, U, B, M), ys (K, U, B, 1): the k = ``p.group``
    consecutive members of group u all see batch u. ``compiled`` runs blocks of ``_block(K)`` steps
    through torch.compile (the rate then rides on the error, as in ``compiled_steps_fn``)."""
    consts, flags = _group_args(p, None if compiled else s.lr_scalar)
    W1, W2, peak = s.W1, s.W2, s.peak
    if compiled:
        k = _block(xs.shape[0])
        for i in range(0, xs.shape[0], k):
            W1, W2, peak = _compiled_group_steps(
                W1, W2, peak, s.lr, xs[i : i + k], ys[i : i + k], *consts, **flags
            )
    else:
        W1, W2 = W1.clone(), W2.clone()  # the steps below update these copies in place; s stays as it was
        for i in range(xs.shape[0]):
            W1, W2, peak = _group_step_tensors(W1, W2, peak, s.lr, xs[i], ys[i], *consts, **flags, inplace=True)
    return replace(s, W1=W1, W2=W2, peak=peak, step=s.step + xs.shape[0])


def step_fn(p: CurlProblem, s: CurlState, xb: torch.Tensor, xdb: torch.Tensor, yb: torch.Tensor) -> CurlState:
    """One rule-flipped update of every member on the batch ``xb`` (E, B, M), ``yb`` (E, B, 1); ``xdb`` is
    ``xb`` with W1's column flips applied (``xb`` itself when there are none). Returns a new state."""
    W1, W2, peak = _step_tensors(s.W1, s.W2, s.peak, s.lr, xb, xdb, yb, *_consts(p), **_flags(p, s.lr_scalar))
    return replace(s, W1=W1, W2=W2, peak=peak, step=s.step + 1)


def _block(steps: int) -> int:
    """The largest divisor of ``steps`` up to COMPILE_BLOCK (one graph shape per run)."""
    return max(k for k in range(1, min(steps, COMPILE_BLOCK) + 1) if steps % k == 0)


def compiled_steps_fn(
    p: CurlProblem, s: CurlState, xs: torch.Tensor, xds: torch.Tensor, ys: torch.Tensor
) -> CurlState:
    """``step_fn`` over the batches xs (K, E, B, M) in order, through torch.compile in blocks of ``_block(K)``
    steps (eager, with one warning line, where compiling is unavailable).

    The rate always rides on the error (never on alpha), so freezing a diverged member does not change
    the compiled graph; results equal ``step_fn``'s to rounding."""
    k, W1, W2, peak = _block(xs.shape[0]), s.W1, s.W2, s.peak
    consts, flags = _consts(p), _flags(p, None)
    for i in range(0, xs.shape[0], k):
        W1, W2, peak = _compiled_steps(
            W1, W2, peak, s.lr, xs[i : i + k], xds[i : i + k], ys[i : i + k], *consts, **flags
        )
    return replace(s, W1=W1, W2=W2, peak=peak, step=s.step + xs.shape[0])


def moments_step_fn(p: CurlProblem, s: CurlState) -> CurlState:
    """One full-batch update of a linear network from the data moments (Σ̂, v*): O(NM + M²) per member."""
    assert p.Sigma is not None and p.vstar is not None
    W1, W2 = s.W1, s.W2
    dv = torch.bmm(W2, W1).sub_(p.vstar)  # (E, 1, M): end-to-end map minus the teacher's
    g = torch.bmm(dv, p.Sigma)  # mean e xᵀ
    peak = torch.maximum(s.peak, torch.bmm(g, dv.transpose(1, 2)).view(p.E).mul_(0.5))
    g = g.mul_(s.lr)
    G2 = torch.bmm(g, W1.transpose(1, 2))  # mean e hᵀ, from the pre-update W1
    back = _feedback(W2, p.Ft, p.dfa_mask, _flags(p, None)["dfa"])
    W1 = torch.baddbmm(W1, back.transpose(1, 2), g * p.d1r if p.use_d1 else g, alpha=-1.0)
    W2 = torch.addcmul(W2, G2, p.d2r, value=-1.0) if p.use_d2 else W2.sub(G2)
    W1, W2 = _renorm(W1, W2, p.n1, p.n2, p.cfg.norm_constraint)
    return replace(s, W1=W1, W2=W2, peak=peak, step=s.step + 1)


def rule_step_fn(p: CurlProblem, s: CurlState, xb: torch.Tensor, yb: torch.Tensor) -> CurlState:
    """One update by any rule through ``rules.Context``: the rule sees this network as a bias-free
    2-layer MLP whose output also passes through phi (its output delta ŷ − y omits phi', Ninou et al. 2025),
    and its updates (descent directions) are applied as W ← W + rate·u with rate = η·B/P, then the norm
    constraint."""
    act, seeds = p.cfg.activation, p.seeds.to(xb.device)
    Wf = p.rule.perturb([s.W1, s.W2], s.rule_state, seeds, s.step)  # forward-pass weights (parameter noise)
    a1 = torch.bmm(xb, Wf[0].transpose(1, 2))
    h = _phi(a1, act)
    a2 = torch.bmm(h, Wf[1].transpose(1, 2))
    out = _phi(a2, act)
    peak = s.peak
    if p.mode != "minibatch":  # every step's error is the training error, so the peak is exact
        peak = torch.maximum(peak, (out - yb).pow(2).mean(dim=(1, 2)).mul_(0.5))
    net = MLP([s.W1, s.W2], [None, None], act)
    trace = Trace(pre=[xb, h], post=[a1, a2], z=[a1, a2], out=out, weights=Wf)
    ctx = Context(net=net, trace=trace, x=xb, y=yb, loss="mse", seeds=seeds, step=s.step)
    res = p.rule.step(s.rule_state, ctx)
    # lr holds η·(B/P)/B (the batch mean folded in; times B in moments mode); descent already averages
    rate = s.lr if p.mode == "moments" else s.lr * xb.shape[1]
    (u1, _), (u2, _) = res.updates
    W1, W2 = _renorm(s.W1 + rate * u1, s.W2 + rate * u2, p.n1, p.n2, p.cfg.norm_constraint)
    return replace(s, W1=W1, W2=W2, peak=peak, rule_state=res.state, step=s.step + 1)


def freeze(p: CurlProblem, s: CurlState, bad: torch.Tensor, epoch: int) -> CurlState:
    """Mark the ``bad`` (E,) members that are not yet diverged as diverged at ``epoch``: their weights go
    back to the initial ones and their rate to 0, so they stay finite and still from here on."""
    new = bad & ~s.diverged
    if not bool(new.any()):
        return s
    m = new[:, None, None]
    return replace(
        s,
        W1=torch.where(m, p.W10, s.W1),
        W2=torch.where(m, p.W20, s.W2),
        lr=torch.where(m, torch.zeros_like(s.lr), s.lr),
        lr_scalar=None,  # frozen members need the per-member (now zero) rate from here on
        diverged=s.diverged | new,
        diverged_at=torch.where(new, torch.full_like(s.diverged_at, float(epoch)), s.diverged_at),
    )


class Shuffles:
    """Each epoch's mini-batch rows (steps, E·B) into the stacked training sets, drawn for a block of
    epochs at once (≤ 8 MB of int64 per draw) rather than one call per epoch. Grouped (``p.group`` > 1):
    (steps, U·B), one set of rows per distinct seed, which its members read together."""

    def __init__(self, p: CurlProblem):
        cfg = p.cfg
        self.p, self.key = p, _key("shuffle")
        self.block = max(1, min(cfg.epochs, (1 << 20) // (len(p.useeds) * cfg.P)))
        self.inv = torch.arange(len(p.useeds)) if p.group > 1 else p.inv
        self.row0 = (self.inv * cfg.P)[:, None].to(p.Xu.device)
        self.queue: list[torch.Tensor] = []

    def rows(self, epoch: int) -> torch.Tensor:
        """The rows for ``epoch`` (epochs must be asked for in order)."""
        if not self.queue:
            cfg, E = self.p.cfg, len(self.inv)
            ks = range(epoch, min(epoch + self.block, cfg.epochs + 1))
            perm = seeding.permutations(self.p.useeds.cpu(), [self.key + k for k in ks], cfg.P, device="cpu")
            perm = perm.to(self.row0.device)[self.inv.to(self.row0.device)] + self.row0[:, :, None]
            # (E, K, P) -> per epoch: (steps, E·B), the rows of each step
            steps = cfg.P // cfg.B
            per_epoch = perm.view(E, len(ks), steps, cfg.B).permute(1, 2, 0, 3).reshape(len(ks), steps, E * cfg.B)
            self.queue = list(per_epoch.unbind(0))[::-1]
        return self.queue.pop()


def epoch_fn(p: CurlProblem, s: CurlState, shuffles: Shuffles | None = None, compiled: bool = False) -> CurlState:
    """One epoch: P/B mini-batch steps in this epoch's shuffled order, or one full-batch step;
    ``compiled`` runs them through ``compiled_steps_fn``. A rule the fused step does not compute runs
    through ``rule_step_fn`` (eagerly), full batch on the whole training set."""
    if not p.fused:
        return _rule_epoch(p, s, shuffles)
    if p.mode == "moments":
        return moments_step_fn(p, s)
    if p.group > 1:
        return _group_epoch(p, s, shuffles, compiled)
    if p.mode == "full":
        assert p.X_all is not None and p.Xd_all is not None and p.Y_all is not None
        if compiled:
            return compiled_steps_fn(p, s, p.X_all[None], p.Xd_all[None], p.Y_all[None])
        return step_fn(p, s, p.X_all, p.Xd_all, p.Y_all)
    assert shuffles is not None
    cfg, E, K = p.cfg, p.E, p.steps_per_epoch
    rows = shuffles.rows(s.epoch + 1)
    Xf, Yf = p.Xu.reshape(-1, cfg.M), p.Yu.reshape(-1, 1)
    # each step then copies just its B rows per member
    Ys = Yf.index_select(0, rows.view(-1)).view(K, E, cfg.B, 1)
    if compiled:
        xs = Xf.index_select(0, rows.view(-1)).view(K, E, cfg.B, cfg.M)
        return compiled_steps_fn(p, s, xs, xs * p.d1r if p.use_d1 else xs, Ys)
    for i in range(K):
        xb = Xf.index_select(0, rows[i]).view(E, cfg.B, cfg.M)
        s = step_fn(p, s, xb, xb * p.d1r if p.use_d1 else xb, Ys[i])
    return s


def _group_epoch(p: CurlProblem, s: CurlState, shuffles: Shuffles | None, compiled: bool) -> CurlState:
    """One epoch of grouped steps: each group of members sharing a seed reads its batch once."""
    if p.mode == "full":
        return group_steps_fn(p, s, p.Xu[None], p.Yu[None], compiled)
    assert shuffles is not None
    cfg, U, K = p.cfg, len(p.useeds), p.steps_per_epoch
    rows = shuffles.rows(s.epoch + 1).reshape(-1)  # (K·U·B): per step, each group's B rows
    xs = p.Xu.reshape(-1, cfg.M).index_select(0, rows).view(K, U, cfg.B, cfg.M)
    ys = p.Yu.reshape(-1, 1).index_select(0, rows).view(K, U, cfg.B, 1)
    return group_steps_fn(p, s, xs, ys, compiled)


def _rule_epoch(p: CurlProblem, s: CurlState, shuffles: Shuffles | None) -> CurlState:
    """One epoch of ``rule_step_fn`` steps (mini-batches in the shuffled order, or the full batch)."""
    if p.mode != "minibatch":
        assert p.X_all is not None and p.Y_all is not None
        return rule_step_fn(p, s, p.X_all, p.Y_all)
    assert shuffles is not None
    cfg, E = p.cfg, p.E
    rows = shuffles.rows(s.epoch + 1)
    Xf, Yf = p.Xu.reshape(-1, cfg.M), p.Yu.reshape(-1, 1)
    for i in range(p.steps_per_epoch):
        xb = Xf.index_select(0, rows[i]).view(E, cfg.B, cfg.M)
        s = rule_step_fn(p, s, xb, Yf.index_select(0, rows[i]).view(E, cfg.B, 1))
    return s


class ErrorLog:
    """Observer: train and test error of every member at the checkpoints (NaN once diverged).

    Measuring is also where divergence of W1 and of the errors is detected (errors can overflow while the
    weights are still finite), so ``measure`` returns the state with any new divergence applied.
    """

    def __init__(self, p: CurlProblem):
        self.checkpoints = p.cfg.checkpoints()
        self.index = {int(t): i for i, t in enumerate(self.checkpoints)}
        self.train = np.full((p.E, len(self.checkpoints)), np.nan)
        self.test = np.full((p.E, len(self.checkpoints)), np.nan)

    def measure(self, p: CurlProblem, s: CurlState) -> CurlState:
        """Record the errors at epoch ``s.epoch`` (a checkpoint) and return the updated state."""
        i, act = self.index[s.epoch], p.cfg.activation
        s = freeze(p, s, ~torch.isfinite(s.W1.sum(dim=(1, 2))), s.epoch)
        if p.group > 1:  # each group's k members share one training and test set: one wide product each
            U, k = len(p.useeds), p.group
            tr = _group_error(s.W1, s.W2, p.Xu, p.Yu, act, k).double().cpu().numpy()
            Xt, Yt = p.Xt.view(U, k, *p.Xt.shape[1:])[:, 0], p.Yt.view(U, k, *p.Yt.shape[1:])[:, 0]
            te = _group_error(s.W1, s.W2, Xt, Yt, act, k).double().cpu().numpy()
        else:
            X, Y = p.train_set()
            tr = _error(s.W1, s.W2, X, Y, act).double().cpu().numpy()
            te = _error(s.W1, s.W2, p.Xt, p.Yt, act).double().cpu().numpy()
        bad = ~(np.isfinite(tr) & np.isfinite(te))
        s = freeze(p, s, torch.from_numpy(bad).to(s.diverged.device), s.epoch)
        dead = s.diverged.cpu().numpy()
        tr[dead], te[dead] = np.nan, np.nan
        self.train[:, i], self.test[:, i] = tr, te
        return s

    def converged(self, threshold: float, diverged: np.ndarray, upto: int) -> bool:
        """Has every live member's training error been below ``threshold`` at a checkpoint ≤ ``upto``?"""
        i = self.index[upto]
        live = ~diverged
        return bool((np.nan_to_num(self.train[live, : i + 1], nan=np.inf) < threshold).any(axis=1).all())


class History:
    """Observer: the weights of every member over the last ``record_last`` epochs (chaos measurements)."""

    def __init__(self, cfg: CurlConfig):
        self.first = cfg.epochs - cfg.record_last + 1
        self.W1: list[torch.Tensor] = []
        self.W2: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def observe(self, s: CurlState) -> None:
        """Keep this epoch's weights if it is in the recorded tail."""
        if s.epoch >= self.first:
            self.W1.append(s.W1.clone())
            self.W2.append(s.W2.clone())
            self.epochs.append(s.epoch)

    def as_dict(self) -> dict:
        """``{"W1": (K,E,N,M), "W2": (K,E,1,N), "epochs": (K,)}``, or {} when nothing was recorded."""
        if not self.W1:
            return {}
        return dict(W1=torch.stack(self.W1), W2=torch.stack(self.W2), epochs=np.array(self.epochs))


def simulate(
    cfg: CurlConfig,
    seeds,
    k1=0,
    k2=0,
    init_scale=1.0,
    rule: str | list[str] | Transform = "gd_flip",
    eta=None,
    threads: int | None = None,
    device=None,
    compile: bool | None = None,
    group: bool = True,
) -> CurlResult:
    """Advance an ensemble (one member per entry of ``seeds``; the other arguments broadcast) together.

    Each member's teacher, data, student init, shuffles and DFA feedback are functions of its seed only,
    so a member gives the same trajectory alone or inside any batch. ``rule``: per member a label
    (the presets "gd", "gd_flip", "dfa_uniform", "dfa_uniform_flip": the paper's rules, or any registered
    rule name), or one rule object from ``plasticlab.rules`` for every member; ``k1``/``k2`` (per member)
    flip the first k columns of W1's and W2's updates (``rules.flip_columns``; ignored by "gd" and
    "dfa_uniform"). ``eta`` (per member) overrides
    ``cfg.eta``. Members whose weights go non-finite are recorded as diverged, reset to their initial
    weights and frozen; the rest go on. ``threads``: intra-op threads for the loop, restored afterwards
    (default: leave torch's setting alone; the sweep executor sets it). ``device``: where to run
    (default: ``plasticlab.devices.current()``, the CPU unless a run chose another); the data and
    initial weights are made on the CPU and moved, so every device starts from the same numbers.
    ``compile``: run the step through torch.compile (default: ``plasticlab.compiling.enabled()``).
    ``group``: members that share a seed share their data and batch order, so when every seed has the
    same number k > 1 of members (a condition × seed grid) and the rule is one the fused step computes,
    each seed's k members advance with one k-times-wider product per layer (``_group_step_tensors``); the
    results equal the ungrouped ones up to the products' summation order. ``group=False`` turns it off.
    """
    cfg.validate()
    members = _members(cfg, seeds, k1, k2, init_scale, rule, eta)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        with torch.no_grad():
            given = rule if isinstance(rule, Transform) else None
            compiled = compiling.enabled() if compile is None else bool(compile)
            return _run(cfg, members, device, compiled, given, group)
    finally:
        torch.set_num_threads(saved_threads)


def group_order(cfg: CurlConfig, members: pd.DataFrame, reorder: bool = True) -> tuple[np.ndarray | None, int]:
    """(order, k): the member order that puts the k members of each distinct seed next to each other
    (seed-major, the given order within a seed), or (None, 1) when members cannot be grouped: a seed with
    one member, seeds with unequal counts, moments mode (it reads no batches), or ``reorder`` False (a
    given rule object holds per-member values in the given order) and the members are not already
    seed-major."""
    if _mode(cfg) == "moments":
        return None, 1
    _, inv, counts = np.unique(members.seed.to_numpy(), return_inverse=True, return_counts=True)
    k = int(counts[0])
    if k < 2 or bool((counts != k).any()):
        return None, 1
    order = np.argsort(inv, kind="stable")
    if not reorder and bool((order != np.arange(len(order))).any()):
        return None, 1
    return order, k


def _run(
    cfg: CurlConfig,
    members: pd.DataFrame,
    device,
    compiled: bool = False,
    rule: Transform | None = None,
    group: bool = True,
) -> CurlResult:
    order, k = group_order(cfg, members, reorder=rule is None) if group else (None, 1)
    # each member's numbers depend on its own seed only, so running them in another order changes nothing
    p, s = init_fn(cfg, members if order is None else members.iloc[order].reset_index(drop=True), device, rule)
    if k > 1 and p.fused:
        p = replace(p, group=k)
    log, hist = ErrorLog(p), History(cfg)
    shuffles = Shuffles(p) if p.mode == "minibatch" else None
    s = log.measure(p, s)
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        s = replace(epoch_fn(p, s, shuffles, compiled), epoch=epoch)
        # A non-finite W1 reaches W2 through the error within one step, so watching the small W2 every
        # epoch (and W1 at checkpoints) catches every blow-up; a sum is non-finite iff an entry is.
        s = freeze(p, s, ~torch.isfinite(s.W2.sum(dim=(1, 2))), epoch)
        hist.observe(s)
        if epoch in log.index:
            s = log.measure(p, s)
            if cfg.stop_when_converged and log.converged(cfg.threshold, s.diverged.cpu().numpy(), epoch):
                break
    res = _result(p, s, log, hist, time.perf_counter() - t0)
    return res if order is None else _reordered(res, members, np.argsort(order))


def _reordered(res: CurlResult, members: pd.DataFrame, back: np.ndarray) -> CurlResult:
    """``res`` of members run in another order, with every per-member field back in ``members``' order."""
    idx = torch.from_numpy(back).to(res.W1.device)
    hist = dict(res.history)
    if hist:
        hist["W1"], hist["W2"] = hist["W1"][:, idx], hist["W2"][:, idx]
    return replace(
        res,
        members=members,
        train_error=res.train_error[back],
        test_error=res.test_error[back],
        peak_train_error=res.peak_train_error[back],
        epochs_to_threshold=res.epochs_to_threshold[back],
        diverged=res.diverged[back],
        diverged_at=res.diverged_at[back],
        W1=res.W1[idx],
        W2=res.W2[idx],
        history=hist,
    )


def _result(p: CurlProblem, s: CurlState, log: ErrorLog, hist: History, seconds: float) -> CurlResult:
    cps, train_err = log.checkpoints, log.train
    below = np.nan_to_num(train_err, nan=np.inf) < p.cfg.threshold
    ett = np.where(below.any(axis=1), cps[below.argmax(axis=1)], np.nan).astype(float)
    measured = np.nanmax(np.where(np.isnan(train_err), -np.inf, train_err), axis=1)
    pk = np.fmax(measured, s.peak.double().cpu().numpy())
    diverged = s.diverged.cpu().numpy()
    pk[diverged] = np.nan
    return CurlResult(
        p.cfg,
        p.members,
        cps,
        train_err,
        log.test,
        pk,
        ett,
        diverged,
        s.diverged_at.cpu().numpy(),
        s.W1,
        s.W2,
        hist.as_dict(),
        s.epoch,
        seconds,
        s.epoch * p.steps_per_epoch,
    )

"""Curl-descent student–teacher engine (SPEC Part B), ensemble-batched over a leading dim E.

Network ``y = phi(W2 phi(W1 x))`` with W1 (E, N, M), W2 (E, 1, N). Conventions (SPEC B.2):
- e = ŷ − y; the output delta omits phi' (exact gradient for a linear output only);
- the hidden error is carried back through the *true* W2 (or a fixed DFA feedback matrix), never the
  flipped one: flips act on the update, not on the signal path;
- flips are on the presynaptic (column) index: ΔW2 ← ΔW2 D2 (hidden neurons), ΔW1 ← ΔW1 D1 (inputs);
- ``lr`` multiplies the batch-*mean* gradient, so with d = +1 the step is −lr·∂(½·mean e²)/∂W.

``curl_step`` is the pure, differentiable reference (torch.func works on it); ``simulate`` runs the same
arithmetic fused and in place.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError, check_choice, check_positive

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


def flips(k: torch.Tensor | list[int] | np.ndarray, n: int, dtype=torch.float64) -> torch.Tensor:
    """(E, n) diagonals with the first k[e] entries −1 (SPEC B.2)."""
    k = torch.as_tensor(k, dtype=torch.int64).reshape(-1, 1)
    return torch.where(torch.arange(n)[None, :] < k, -1.0, 1.0).to(dtype)


# ---------------------------------------------------------------------------------------------------------
# Simulator
# ---------------------------------------------------------------------------------------------------------

RULES = ("gd", "curl", "dfa", "dfa_flip")
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
    balanced_teacher: bool = False  # rescale the teacher to ‖W1‖_F = √N, ‖W2‖ = 1 (SPEC B.4/B.5)
    threshold: float = 1e-3  # for epochs_to_threshold (train error)
    points_per_decade: int = 20  # log-spaced evaluation epochs (plus epoch 0 and the last epoch)
    record_last: int = 0  # keep all weights over the last K epochs (chaos measurements)
    stop_when_converged: bool = False  # stop once every live member is below threshold
    moment_match: bool = True  # linear + full batch: step on the data moments (XᵀX/P, YᵀX/P)
    dtype: str = "float64"

    def validate(self) -> CurlConfig:
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
        # a grid fixed per decade (not per run length) so thresholds are comparable across epoch budgets
        n = int(math.ceil(math.log10(self.epochs) * self.points_per_decade)) + 1
        ts = np.round(10.0 ** (np.arange(n) / self.points_per_decade)).astype(int)
        return np.unique(np.concatenate([[0], ts[ts < self.epochs], [self.epochs]]))


def grid(seeds, k1s=(0,), k2s=(0,), init_scales=(1.0,), rules=("curl",)) -> dict[str, list]:
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
    T1, T2, X, Y, Xt, Yt, F = _teacher_data(cfg, seeds)
    W1, W2 = _student(cfg, seeds, scale, T1, T2)
    return [t.to(dt).contiguous() for t in (W1, W2, X, Y, Xt, Yt, F)]


def _error(W1, W2, X, Y, activation) -> torch.Tensor:
    return 0.5 * (curl_forward(W1, W2, X, activation) - Y).pow(2).mean(dim=(1, 2))


def simulate(
    cfg: CurlConfig, seeds, k1=0, k2=0, init_scale=1.0, rule="curl", eta=None, threads: int | None = None
) -> CurlResult:
    """Advance an ensemble (one member per entry of ``seeds``; the other arguments broadcast) together.

    Each member's teacher, data, student init, shuffles and DFA feedback are functions of its seed only,
    so a member gives the same trajectory alone or inside any batch. ``eta`` (per member) overrides
    ``cfg.eta``. Members whose weights go non-finite are recorded as diverged, reset to their initial
    weights and frozen; the rest go on. ``threads``: intra-op threads for the loop (default: 1 for small
    steps, torch's setting for big ones; on a busy machine 1 is often faster even for big ones).
    """
    cfg.validate()
    seeds = [int(s) for s in _broadcast("seeds", seeds, len(seeds))]
    E = len(seeds)
    if E == 0:
        raise PlasticlabError("simulate needs at least one seed")
    rules = _broadcast("rule", rule, E)
    for r in rules:
        check_choice("rule", r, RULES)
    k1s = [int(k) for k in _broadcast("k1", k1, E)]
    k2s = [int(k) for k in _broadcast("k2", k2, E)]
    scales = [float(r) for r in _broadcast("init_scale", init_scale, E)]
    etas = [float(v) for v in _broadcast("eta", cfg.eta if eta is None else eta, E)]
    for k, n, name in ((k1s, cfg.M, "k1"), (k2s, cfg.N, "k2")):
        bad = [v for v in k if not 0 <= v <= n]
        if bad:
            raise PlasticlabError(f"{name}={bad[0]} out of range [0, {n}]")
    members = pd.DataFrame(dict(seed=seeds, rule=rules, k1=k1s, k2=k2s, init_scale=scales, eta=etas))
    dt = DTYPES[cfg.dtype]
    saved_threads = torch.get_num_threads()  # not `threads`: that name is the caller's argument
    # Small per-step tensors gain nothing from intra-op threads, and on a busy machine the thread pool's
    # hand-offs cost milliseconds per op; only wide layers are worth the second core.
    rows = cfg.B if not (cfg.B == cfg.P and cfg.activation == "linear" and cfg.moment_match) else 1
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    elif E * cfg.N * cfg.M * rows < 4_000_000:
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return _run(cfg, members, dt)
    finally:
        torch.set_num_threads(saved_threads)


def _run(cfg: CurlConfig, members: pd.DataFrame, dt) -> CurlResult:
    E, M, N, P, B, act = len(members), cfg.M, cfg.N, cfg.P, cfg.B, cfg.activation
    seeds_np = members.seed.to_numpy()
    seeds_t = torch.tensor(seeds_np, dtype=torch.int64)
    # Data depend on the seed only: generate them once per distinct seed, members index into them.
    useeds, inv_np = np.unique(seeds_np, return_inverse=True)
    useeds_t, inv = torch.tensor(useeds, dtype=torch.int64), torch.tensor(inv_np, dtype=torch.int64)
    T1, T2, Xu, Yu, Xtu, Ytu, Fu = _teacher_data(cfg, useeds_t)
    W1, W2 = _student(cfg, seeds_t, torch.tensor(members.init_scale.to_numpy()), T1[inv], T2[inv])
    W1, W2 = W1.to(dt).contiguous(), W2.to(dt).contiguous()
    Xu, Yu, Xt, Yt = Xu.to(dt), Yu.to(dt), Xtu[inv].to(dt), Ytu[inv].to(dt)
    F = Fu[inv].to(dt)
    flipped = members.rule.isin(["curl", "dfa_flip"]).to_numpy()
    dfa = torch.tensor(members.rule.isin(["dfa", "dfa_flip"]).to_numpy())
    W10, W20 = W1.clone(), W2.clone()
    d1 = flips(np.where(flipped, members.k1, 0), M, dt)
    d2 = flips(np.where(flipped, members.k2, 0), N, dt)
    use_d1, use_d2 = bool((d1 < 0).any()), bool((d2 < 0).any())
    d1r, d2r = d1[:, None, :], d2[:, None, :]
    n1 = torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True)
    n2 = torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True)
    # Folding 1/B and the sign into the error makes every update a single in-place baddbmm.
    lr = torch.tensor(members.eta.to_numpy(), dtype=dt).reshape(E, 1, 1) * (B / P) / B
    Ft = F.transpose(1, 2).contiguous()
    dfa_all, dfa_any = bool(dfa.all()), bool(dfa.any())
    dfa_mask = dfa.reshape(E, 1, 1)
    full = B == P
    track_peak = full  # full batch: every step's error is the training error, so the peak is exact
    steps = P // B
    Xf, Yf = Xu.reshape(-1, M), Yu.reshape(-1, 1)
    row0 = (inv * P)[:, None]
    if full:  # one batch, no shuffling: order does not change a full-batch mean
        X_all, Y_all = Xu[inv].contiguous(), Yu[inv].contiguous()
        Xd_all = X_all * d1r if use_d1 else X_all
    moments = full and act == "linear" and cfg.moment_match
    if moments:
        # Linear, one output, full batch: the update depends on the data only through Σ̂ = XᵀX/P and
        # c = YᵀX/P, so a step costs O(NM + M²) instead of O(PNM).
        # The teacher is linear too, so c = v* Σ̂: working with v − v* avoids the cancellation of
        # vΣ̂ − c, which would put a 1e-17 floor under errors that start at 1e-30 on the teacher.
        Sigma = (Xu.transpose(1, 2) @ Xu / P)[inv].to(dt).contiguous()
        vstar = (T2 @ T1)[inv].to(dt).contiguous()
        lr.mul_(B)  # the batch mean is already inside Σ̂ (in place: freezing zeroes this same tensor)

    def step_moments() -> None:
        dv = torch.bmm(W2, W1).sub_(vstar)  # (E, 1, M): end-to-end map minus the teacher's
        g = torch.bmm(dv, Sigma)  # mean e xᵀ
        if track_peak:
            torch.maximum(peak, torch.bmm(g, dv.transpose(1, 2)).view(E).mul_(0.5), out=peak)
        g *= lr
        back = Ft if dfa_all else (torch.where(dfa_mask, Ft, W2) if dfa_any else W2)
        G2 = torch.bmm(g, W1.transpose(1, 2))  # mean e hᵀ, from the pre-update W1
        W1.baddbmm_(back.transpose(1, 2), g * d1r if use_d1 else g, alpha=-1.0)
        W2.addcmul_(G2, d2r, value=-1.0) if use_d2 else W2.sub_(G2)
        if cfg.norm_constraint:
            W1.mul_(n1 / torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True))
            W2.mul_(n2 / torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True))

    lr_scalar = float(lr[0]) if bool((lr == lr[0]).all()) else None

    # Every op of a step writes into buffers allocated once: at small sizes a step is ~20 tiny ops and
    # allocating their outputs is a visible share of each.
    Bs = P if full else B
    a1 = torch.empty(E, Bs, N, dtype=dt)
    h = a1 if act == "linear" else torch.empty(E, Bs, N, dtype=dt)
    e = torch.empty(E, Bs, 1, dtype=dt)
    delta, dp, hd = (torch.empty(E, Bs, N, dtype=dt) for _ in range(3))
    nrm1, nrm2 = torch.empty(E, 1, 1, dtype=dt), torch.empty(E, 1, 1, dtype=dt)
    one = torch.ones((), dtype=dt)
    W1t, W2t = W1.transpose(1, 2), W2.transpose(1, 2)  # views: W1 and W2 are only ever updated in place

    def step(xb, xdb, yb) -> None:
        torch.bmm(xb, W1t, out=a1)
        if act == "tanh":
            torch.tanh(a1, out=h)
        elif act == "relu":
            torch.clamp_min(a1, 0.0, out=h)
        torch.bmm(h, W2t, out=e)
        if act == "tanh":
            e.tanh_()
        elif act == "relu":
            e.relu_()
        e.sub_(yb)
        if track_peak:
            torch.maximum(peak, e.pow(2).mean(dim=(1, 2)).mul_(0.5), out=peak)
        # one shared learning rate (the usual case) rides on the scalar alpha of the updates below
        if lr_scalar is None:
            e.mul_(lr)
        back = Ft if dfa_all else (torch.where(dfa_mask, Ft, W2) if dfa_any else W2)
        torch.mul(e, back, out=delta)  # (E,B,1)·(E,1,N): an outer product, cheaper broadcast than as a bmm
        if act == "tanh":
            delta.mul_(torch.addcmul(one, h, h, value=-1.0, out=dp))
        elif act == "relu":
            delta.mul_(a1 > 0)
        alpha = -1.0 if lr_scalar is None else -lr_scalar
        W2.baddbmm_(e.transpose(1, 2), torch.mul(h, d2r, out=hd) if use_d2 else h, alpha=alpha)
        W1.baddbmm_(delta.transpose(1, 2), xdb, alpha=alpha)
        if cfg.norm_constraint:
            W1.mul_(torch.div(n1, torch.linalg.vector_norm(W1, dim=(1, 2), keepdim=True, out=nrm1), out=nrm1))
            W2.mul_(torch.div(n2, torch.linalg.vector_norm(W2, dim=(1, 2), keepdim=True, out=nrm2), out=nrm2))

    cps = cfg.checkpoints()
    cp_index = {int(t): i for i, t in enumerate(cps)}
    T = len(cps)
    train_err = np.full((E, T), np.nan)
    test_err = np.full((E, T), np.nan)
    peak = torch.full((E,), -math.inf, dtype=dt)
    diverged = np.zeros(E, bool)
    diverged_at = np.full(E, np.nan)
    hist_W1, hist_W2, hist_ep = [], [], []
    first_hist = cfg.epochs - cfg.record_last + 1

    def freeze(bad: np.ndarray, epoch: int) -> None:
        new = bad & ~diverged
        if new.any():
            diverged[new] = True
            diverged_at[new] = epoch
            m = torch.from_numpy(new)
            W1[m], W2[m] = W10[m], W20[m]
            lr[m] = 0.0
            nonlocal lr_scalar
            lr_scalar = None  # frozen members need the per-member (now zero) rate from here on

    # all seeds distinct (the usual case): the members' training sets are Xu itself, no gather needed
    X_tr, Y_tr = (Xu, Yu) if len(useeds) == E else (None, None)

    def measure(i: int, epoch: int) -> None:
        freeze((~torch.isfinite(W1.sum(dim=(1, 2)))).numpy(), epoch)
        tr = (
            _error(W1, W2, Xu[inv] if X_tr is None else X_tr, Yu[inv] if Y_tr is None else Y_tr, act)
            .double()
            .numpy()
        )
        te = _error(W1, W2, Xt, Yt, act).double().numpy()
        # errors can overflow while the weights are still finite: that is divergence too
        freeze(~(np.isfinite(tr) & np.isfinite(te)), epoch)
        tr[diverged], te[diverged] = np.nan, np.nan
        train_err[:, i], test_err[:, i] = tr, te

    measure(0, 0)
    shuffle_key = _key("shuffle")
    epoch = 0
    # shuffles are drawn for a block of epochs at once (≤ 8 MB of int64 per draw), not one call per epoch
    block = max(1, min(cfg.epochs, (1 << 20) // (len(useeds) * P)))
    queue: list[torch.Tensor] = []
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        if moments:
            step_moments()
        elif full:
            step(X_all, Xd_all, Y_all)
        else:
            if not queue:
                ks = range(epoch, min(epoch + block, cfg.epochs + 1))
                perm = seeding.permutations(useeds_t, [shuffle_key + k for k in ks], P)[inv] + row0[:, :, None]
                # (E, K, P) -> per epoch: (steps, E·B), the rows of each step
                queue = list(
                    perm.view(E, len(ks), steps, B).permute(1, 2, 0, 3).reshape(len(ks), steps, E * B).unbind(0)
                )[::-1]
            rows = queue.pop()
            # each step then copies just its B rows per member
            Ys = Yf.index_select(0, rows.view(-1)).view(steps, E, B, 1)
            for s in range(steps):
                xb = Xf.index_select(0, rows[s]).view(E, B, M)
                step(xb, xb * d1r if use_d1 else xb, Ys[s])
        # A non-finite W1 reaches W2 through the error within one step, so watching the small W2 every
        # epoch (and W1 at checkpoints) catches every blow-up; a sum is non-finite iff an entry is.
        bad = ~torch.isfinite(W2.sum(dim=(1, 2)))
        if bad.any():
            freeze(bad.numpy(), epoch)
        if epoch >= first_hist:
            hist_W1.append(W1.clone())
            hist_W2.append(W2.clone())
            hist_ep.append(epoch)
        if epoch in cp_index:
            measure(cp_index[epoch], epoch)
            if cfg.stop_when_converged:
                live = ~diverged
                done = (np.nan_to_num(train_err[live, : cp_index[epoch] + 1], nan=np.inf) < cfg.threshold).any(
                    axis=1
                )
                if done.all():
                    break

    loop_seconds = time.perf_counter() - t0
    below = np.nan_to_num(train_err, nan=np.inf) < cfg.threshold
    ett = np.where(below.any(axis=1), cps[below.argmax(axis=1)], np.nan).astype(float)
    pk = np.fmax(np.nanmax(np.where(np.isnan(train_err), -np.inf, train_err), axis=1), peak.double().numpy())
    pk[diverged] = np.nan
    history = {}
    if hist_W1:
        history = dict(W1=torch.stack(hist_W1), W2=torch.stack(hist_W2), epochs=np.array(hist_ep))
    return CurlResult(
        cfg,
        members,
        cps,
        train_err,
        test_err,
        pk,
        ett,
        diverged,
        diverged_at,
        W1,
        W2,
        history,
        epoch,
        loop_seconds,
        epoch * (1 if moments else steps),
    )

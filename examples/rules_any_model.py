"""Every registered rule trains a small CNN and a residual MLP on scikit-learn's digits through RuleOptimizer,
beside torch's own SGD; then the layers HebbianProbe measures in a TransformerEncoderLayer and a ResNet block.

    .venv/bin/python examples/rules_any_model.py [--seeds 0,1,2] [--epochs 10]

Digits (1797 8x8 images, offline in scikit-learn) split 1347 / 450 by one fixed permutation; batch 32 (full
batches only), cross-entropy. Learning rates by rule family (not tuned per rule): 0.05 for rules built on an
error signal, 1e-3 for Adam and for the local rules, whose updates are not scaled by an error. A rule that
can't run on a model prints its one-line error. Rules train the models' matrices (conv, linear); torch's SGD
is given the same parameters, so the residual MLP's LayerNorms stay at their init (gain 1, shift 0) for all.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch
from torch import nn

from plasticlab.errors import PlasticlabError, PlasticlabWarning
from plasticlab.probe import HebbianProbe
from plasticlab.rules import RuleOptimizer, get, rule_names
from plasticlab.rules.layers import learnable_matrices


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1347], perm[1347:]
    return x[tr], y[tr], x[te], y[te]


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )


class ResidualMLP(nn.Module):
    """64 -> 64 with two pre-norm residual blocks, -> 10."""

    def __init__(self, d: int = 64, blocks: int = 2):
        super().__init__()
        self.inp, self.out = nn.Linear(64, d), nn.Linear(d, 10)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(blocks))
        self.fc1 = nn.ModuleList(nn.Linear(d, d) for _ in range(blocks))
        self.fc2 = nn.ModuleList(nn.Linear(d, d) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x.flatten(1)))
        for norm, f1, f2 in zip(self.norms, self.fc1, self.fc2):
            h = h + f2(torch.relu(f1(norm(h))))
        return self.out(h)


def lr_of(rule: str) -> float:
    spec = get(rule)
    return 1e-3 if spec.local or rule in ("adam", "adam_l2") else 0.05


def train(make, rule: str | None, data, seed: int, epochs: int) -> tuple[float, float]:
    """(test accuracy, mean training loss of the last epoch); rule None: torch.optim.SGD."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = make()
    if rule is None:
        mats = learnable_matrices(model)[0]
        opt: torch.optim.Optimizer = torch.optim.SGD([p for m in mats for p in (m.weight, m.bias)], lr=0.05)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlasticlabWarning)  # the untrained LayerNorm, listed in the docstring
            opt = RuleOptimizer(model, rule, lr=lr_of(rule), loss="xent", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for _ in range(epochs):
        losses = []
        perm = torch.randperm(len(xtr), generator=gen)
        for idx in perm[: len(perm) // 32 * 32].view(-1, 32):  # full batches: a 3-sample one jolts SGD
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step(y=nn.functional.one_hot(ytr[idx], 10).float()) if rule else opt.step()
            losses.append(loss.item())
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return acc, statistics.fmean(losses)


def summary(values: list[float], fmt: str = ".3f") -> str:
    """Median [min, max] of the finite values, and how many were not finite (diverged)."""
    ok = [v for v in values if math.isfinite(v)]
    bad = f" ({len(values) - len(ok)}/{len(values)} nan)" if len(ok) < len(values) else ""
    if not ok:
        return "nan" + bad
    med = statistics.median(ok)
    return (f"{med:{fmt}}" if len(ok) == 1 else f"{med:{fmt}} [{min(ok):{fmt}}, {max(ok):{fmt}}]") + bad


def table(seeds: list[int], epochs: int) -> None:
    data = digits()
    print(f"digits, {epochs} epochs, seeds {seeds}: test accuracy and last-epoch loss, median [min, max]")
    print(f"{'model':<13}{'rule':<16}{'lr':>7}  {'accuracy':<24}{'final loss':<24}{'s/run':>6}")
    for label, make in (("cnn", cnn), ("residual-mlp", ResidualMLP)):
        for rule in [None, *rule_names()]:
            t0 = time.perf_counter()
            try:
                runs = [train(make, rule, data, s, epochs) for s in seeds]
            except PlasticlabError as e:
                print(f"{label:<13}{rule:<16}{'':>7}  cannot run: {str(e)[:90]}")
                continue
            dt = (time.perf_counter() - t0) / len(seeds)
            name, lr = ("torch SGD", 0.05) if rule is None else (rule, lr_of(rule))
            acc, loss = summary([r[0] for r in runs]), summary([r[1] for r in runs], ".3g")
            print(f"{label:<13}{name:<16}{lr:>7g}  {acc:<24}{loss:<24}{dt:>6.1f}")


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock with a projection shortcut."""

    def __init__(self, cin: int = 16, cout: int = 32, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


def probe_layers() -> None:
    for label, model in (
        ("TransformerEncoderLayer(32, 4)", nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)),
        ("ResNet BasicBlock(16 -> 32)", BasicBlock()),
    ):
        probe = HebbianProbe(model)
        print(f"\nHebbianProbe on {label}:")
        for name, st in probe.layers.items():
            print(f"  {name:<20}{st.kind:<11}{tuple(st.mat.matrix().shape)}")
        for name, why in probe.skipped.items():
            print(f"  skipped {name:<20}{why}")
        probe.remove()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    table([int(s) for s in args.seeds.split(",")], args.epochs)
    probe_layers()

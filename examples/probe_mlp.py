"""A user's own model and training loop, with the HebbianProbe attached in two lines.

    .venv/bin/python examples/probe_mlp.py [out.png]

Trains a small tanh MLP on a synthetic regression task with SGD + weight decay (lr 0.1, γ 0.03: 1/(ηγ) ≈ 330
steps, so the run reaches stationarity) and plots, per layer, the Hebbian alignment of the learning signal
(−grad, decay excluded: it turns Hebbian) and of the actual update (decay included: ≈ 0 at stationarity,
where the mean update vanishes).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from plasticlab.probe import HebbianProbe


def main(out: str = "probe_mlp.png", steps: int = 1500) -> None:
    torch.set_num_threads(1)  # tiny matmuls: threads only add synchronisation
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 8))
    model = nn.Sequential(nn.Linear(32, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.03)

    probe = HebbianProbe(model, every=10)  # line 1: hooks on every nn.Linear
    probe.attach_optimizer(opt)  # line 2: measure around each opt.step()

    for _step in range(steps):  # the user's loop, unchanged
        x = torch.randn(128, 32)
        with torch.no_grad():
            y = teacher(x)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    df = probe.to_frame()
    probe.remove()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for layer, d in df.groupby("layer"):
        smooth = d.set_index("step")[["alignment_signal", "alignment_update"]].rolling(10, min_periods=1).mean()
        axes[0].plot(smooth.index, smooth.alignment_signal, label=f"layer {layer}")
        axes[1].plot(smooth.index, smooth.alignment_update, label=f"layer {layer}")
    axes[0].set_title("learning signal −∂ℓ/∂W")
    axes[1].set_title("actual SGD update (decay included)")
    for ax in axes:
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("step")
    axes[0].set_ylabel("Hebbian alignment")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    late = df[df.step >= steps // 2].groupby("layer")[["alignment_signal", "alignment_update"]].mean()
    print(late.round(3).to_string())
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])

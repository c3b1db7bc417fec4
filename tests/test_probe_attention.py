"""HebbianProbe on attention and residual conv blocks: q, k, v and out_proj of nn.MultiheadAttention are four
layers with hand-checked H, every unmeasured trainable parameter is in ``probe.skipped``, and a probed layer
whose forward is never seen is named (issue 29, item 4)."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from plasticlab.errors import PlasticlabWarning
from plasticlab.probe import HebbianProbe

torch.set_num_threads(1)


def train(model, probe, x, steps=2, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe.attach_optimizer(opt)
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        (out[0] if isinstance(out, tuple) else out).pow(2).mean().backward()
        opt.step()
    return probe.to_frame()


def test_transformer_encoder_layer_is_six_layers_and_norms_are_named_skipped():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    probe = HebbianProbe(layer)
    names = ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.out_proj", "linear1", "linear2"]
    assert list(probe.layers) == names
    assert set(probe.skipped) == {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}
    assert "vector" in probe.skipped["norm1.weight"]
    df = train(layer, probe, torch.randn(4, 5, 8))
    assert sorted(set(df.layer)) == sorted(names) and len(df) == 2 * 6
    assert (df[df.layer.str.startswith("self_attn")].kind == "attention").all()
    assert (df.batch_size == 20).all() and df.alignment_signal.between(-1, 1).all()


def test_attention_projections_match_hand_computation():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(6, 2, batch_first=True).double()
    q, k, v = (torch.randn(3, 4, 6, dtype=torch.float64) for _ in range(3))
    probe = HebbianProbe(mha)
    out, _ = mha(q, k, v)
    out.pow(2).sum().backward()
    probe.step()
    df = probe.to_frame().set_index("layer")
    W = mha.in_proj_weight.detach()
    G = -mha.in_proj_weight.grad
    with torch.no_grad():  # the attention output that enters out_proj, by hand (no dropout)
        qp, kp, vp = (F.linear(t, w, b) for t, w, b in zip((q, k, v), W.chunk(3), mha.in_proj_bias.chunk(3)))
        split = lambda t: t.reshape(3, 4, 2, 3).transpose(1, 2)
        att = torch.softmax(split(qp) @ split(kp).transpose(-1, -2) / 3**0.5, -1) @ split(vp)
        a = att.transpose(1, 2).reshape(-1, 6)
    cases = {"q": (q, W[:6], G[:6]), "k": (k, W[6:12], G[6:12]), "v": (v, W[12:], G[12:])}
    cases["out_proj"] = (a, mha.out_proj.weight.detach(), -mha.out_proj.weight.grad)
    for name, (x, w, g) in cases.items():
        x = x.reshape(-1, 6)
        H = (x @ w.T).T @ x / len(x)
        want = (g * H).sum() / (g.norm() * H.norm())
        assert df.loc[name, "alignment_signal"] == pytest.approx(want.item(), abs=1e-12), name
        assert df.loc[name, "hebbian_norm"] == pytest.approx(H.norm().item(), rel=1e-12), name


def test_named_out_proj_is_measured():
    """Issue 29.4: naming self_attn.out_proj gave an empty frame and a wrong 'not in training mode' reason."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    probe = HebbianProbe(layer, layers=["self_attn.out_proj"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = train(layer, probe, torch.randn(4, 5, 8))
    assert df.layer.tolist() == ["self_attn.out_proj"] * 2


class Functional(nn.Module):
    """Uses ``a``'s weight through F.linear: its module hook never fires."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.tanh(F.linear(x, self.a.weight, self.a.bias)))


def test_a_layer_whose_hook_never_fires_is_named():
    torch.manual_seed(0)
    model = Functional()
    probe = HebbianProbe(model)
    with pytest.warns(PlasticlabWarning, match=r"layer 'a' is probed but its forward was never seen"):
        df = train(model, probe, torch.randn(5, 4))
    assert set(df.layer) == {"b"}
    probe = HebbianProbe(Functional(), layers=["a"])
    with pytest.warns(PlasticlabWarning, match=r"the forward of 'a' never ran where a hook sees it"):
        train(probe.model, probe, torch.randn(5, 4))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with a projection shortcut."""

    def __init__(self, cin=4, cout=8, stride=2):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.downsample(x)
        return self.relu(out)


def test_resnet_block_layers_and_skipped():
    torch.manual_seed(0)
    block = BasicBlock()
    probe = HebbianProbe(block)
    assert list(probe.layers) == ["conv1", "conv2", "downsample.0"]
    assert set(probe.skipped) == {f"{b}.{w}" for b in ("bn1", "bn2", "downsample.1") for w in ("weight", "bias")}
    df = train(block, probe, torch.randn(2, 4, 6, 6))
    assert set(df.layer) == {"conv1", "conv2", "downsample.0"} and (df.kind == "conv2d").all()
    emb = nn.Sequential(nn.Embedding(5, 4), nn.Conv2d(4, 4, 1, groups=2))
    assert set(HebbianProbe(nn.Sequential(emb, nn.Linear(4, 4))).skipped) == {
        "0.0.weight",
        "0.1.weight",
        "0.1.bias",
    }

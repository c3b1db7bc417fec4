"""Device plumbing: "auto"/"cpu"/"cuda[:N]" resolution, one-line errors, and the same numbers on every device.

Tests are parametrised over the devices this machine has; the CUDA cases skip cleanly without a GPU.
"""

import pytest
import torch

import plasticlab
from plasticlab import devices, seeding
from plasticlab.errors import PlasticlabError
from plasticlab.networks.mlp import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.curl import CurlConfig, simulate
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression

DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def test_auto_resolves_to_cuda_only_when_available():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.resolve("auto").type == want and devices.resolve(None).type == want
    assert devices.resolve("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu0", "mps", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_bad_device_is_one_line_naming_it_and_the_choices(bad):
    with pytest.raises(PlasticlabError, match=bad) as e:
        devices.resolve(bad)
    assert "\n" not in str(e.value) and "cpu" in str(e.value)


def test_use_restores_the_previous_device():
    before = devices.current()
    with devices.use("cpu") as d:
        assert devices.current() == d == torch.device("cpu")
    assert devices.current() == before


@pytest.mark.parametrize("device", DEVICES)
def test_draws_are_bit_identical_on_every_device(device):
    seeds = [0, 7, 123]
    for draw in (
        lambda d: seeding.normal(seeds, 5, (4, 3), device=d),
        lambda d: seeding.uniform(seeds, 5, (9,), torch.float32, device=d),
        lambda d: seeding.randint(seeds, 5, (6,), 10, device=d),
        lambda d: seeding.permutations(seeds, [1, 2], 8, device=d),
    ):
        on = draw(device)
        assert on.device.type == device
        assert torch.equal(on.cpu(), draw("cpu"))


@pytest.mark.parametrize("device", DEVICES)
def test_curl_engine_on_device_matches_cpu(device):
    cfg = CurlConfig(M=6, N=4, P=20, B=5, epochs=8, points_per_decade=4, n_test=7)
    ref = simulate(
        cfg, [0, 1, 2], k1=[0, 1, 2], k2=1, rule=["gd_flip", "dfa_uniform", "dfa_uniform_flip"], device="cpu"
    )
    res = simulate(
        cfg, [0, 1, 2], k1=[0, 1, 2], k2=1, rule=["gd_flip", "dfa_uniform", "dfa_uniform_flip"], device=device
    )
    assert res.W1.device.type == device
    torch.testing.assert_close(res.W1.cpu(), ref.W1, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        torch.as_tensor(res.test_error), torch.as_tensor(ref.test_error), rtol=1e-10, atol=0
    )


@pytest.mark.parametrize("device", DEVICES)
def test_train_mlp_on_device_matches_cpu(device):
    def run(dev):
        seeds = [0, 1]
        data = teacher_regression(seeds, d_in=4, d_out=2, n_train=40, n_val=8, device=dev)
        net = init_mlp(seeds, [4, 5, 2], "tanh", bias=True, device=dev)
        rule = make_rule("dfa", gamma=[0.0, 0.01], sigma=0.01)
        return train_mlp(net, rule, data, seeds, steps=12, lr=0.05, batch_size=8, record_every=4)

    ref, res = run("cpu"), run(device)
    assert res.net.weights[0].device.type == device
    torch.testing.assert_close(res.net.weights[0].cpu(), ref.net.weights[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(res.alignment_late.cpu(), ref.alignment_late, rtol=0, atol=1e-10)


def test_tensors_follow_the_current_device():
    with devices.use("cpu"):
        assert init_mlp([0], [3, 2]).weights[0].device.type == "cpu"
        assert teacher_regression([0], d_in=3, d_out=1, n_train=4, n_val=2).x_train.device.type == "cpu"


def test_run_takes_a_device_and_refuses_a_bad_one(sweep_demo):
    df = plasticlab.run("sweep-demo", plugins=[sweep_demo], quick=True, device="cpu")
    assert len(df)
    with pytest.raises(PlasticlabError, match="device"):
        plasticlab.run("sweep-demo", plugins=[sweep_demo], quick=True, device="tpu")


def test_cli_device_option(tmp_path, sweep_demo):
    from typer.testing import CliRunner

    from plasticlab.cli import app

    r = CliRunner().invoke(
        app, ["run", "sweep-demo", "--plugin", sweep_demo, "--quick", "-q", "--workers", "1", "--device", "tpu"]
    )
    assert r.exit_code == 2 and "tpu" in r.output and "Traceback" not in r.output
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        app,
        [
            "run",
            "sweep-demo",
            "--plugin",
            sweep_demo,
            "--quick",
            "-q",
            "--workers",
            "1",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (out / "results.parquet").exists()

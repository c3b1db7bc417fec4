"""Classification data: scikit-learn's bundled digits, or CIFAR-10 from a local folder (nothing downloads).

The data is shared by all members (stored once with a leading dim of 1); members differ by their own
mini-batch draws and initialisations.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from plasticlab.devices import pick
from plasticlab.errors import PlasticlabError
from plasticlab.tasks.base import Dataset


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def _split(x: np.ndarray, labels: np.ndarray, n_val: int, k: int, name: str, dtype, device) -> Dataset:
    # A fixed split (same for every member), so validation losses are comparable across seeds.
    order = np.random.default_rng(0).permutation(len(x))
    x, labels = x[order], labels[order]
    y = _one_hot(labels, k)
    dev = pick(device)
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=dev)[None]
    return Dataset(t(x[n_val:]), t(y[n_val:]), t(x[:n_val]), t(y[:n_val]), "xent", name)


def digits(n_val: int = 297, dtype=torch.float64, device=None) -> Dataset:
    """scikit-learn's 8x8 digits (1797 samples, 64 features scaled to [0, 1], 10 classes), on ``device``
    (default: ``plasticlab.devices.current()``)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data / 16.0
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return _split(x, d.target, n_val, 10, "digits", dtype, device)


def find_cifar10(data_path: str | Path) -> Path | None:
    """The folder holding the CIFAR-10 python batches (``data_path`` or its cifar-10-batches-py), or None;
    checked before a run starts so a wrong path is a one-line error, not a failed chunk."""
    if not str(data_path):
        return None
    root = Path(data_path).expanduser()
    if root.is_dir() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    ok = root.is_dir() and any(root.glob("data_batch_*")) and (root / "test_batch").exists()
    return root if ok else None


def cifar10(
    data_path: str | Path, n_train: int | None = None, n_val: int = 10000, dtype=torch.float32, device=None
) -> Dataset:
    """CIFAR-10 from the standard python-pickle batches (data_batch_1..5, test_batch) in ``data_path``.

    Features are flattened to 3072 and standardised; the test batch is the validation set.
    """
    root = find_cifar10(data_path)
    if root is None:
        raise PlasticlabError(
            f"no CIFAR-10 python batches in {data_path!s}: expected data_batch_1..5 and "
            "test_batch (the 'CIFAR-10 python version' archive, extracted)"
        )

    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"

    def load(path):
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = d[b"data"] if b"data" in d else d["data"]
        labels = d[b"labels"] if b"labels" in d else d["labels"]
        return np.asarray(data, dtype=np.float64) / 255.0, np.asarray(labels, dtype=np.int64)

    parts = [load(p) for p in train_files]
    x_tr = np.concatenate([p[0] for p in parts])
    l_tr = np.concatenate([p[1] for p in parts])
    x_te, l_te = load(test_file)
    if n_train is not None:
        x_tr, l_tr = x_tr[:n_train], l_tr[:n_train]
    x_te, l_te = x_te[:n_val], l_te[:n_val]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    dev = pick(device)
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=dev)[None]
    return Dataset(
        t((x_tr - mu) / sd), t(_one_hot(l_tr, 10)), t((x_te - mu) / sd), t(_one_hot(l_te, 10)), "xent", "cifar10"
    )

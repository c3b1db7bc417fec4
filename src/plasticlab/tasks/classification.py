"""Classification data: scikit-learn's bundled digits, or CIFAR-10 from a local folder (nothing downloads).

The data is shared by all members (stored once with a leading dim of 1); members differ by their own
mini-batch draws and initialisations.
"""

from __future__ import annotations

import functools
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
    checked before a run starts so a wrong path is a one-line error, not a failed chunk. Batches that are
    there but are not CIFAR-10 (corrupt, wrong shape, dtype or labels) raise a one-line PlasticlabError."""
    root = _root(data_path)
    if root is not None:
        for path in _batch_files(root):
            _check_batch(str(path), *_stamp(path))
    return root


def _root(data_path: str | Path) -> Path | None:
    if not str(data_path):
        return None
    root = Path(data_path).expanduser()
    if root.is_dir() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    ok = root.is_dir() and any(root.glob("data_batch_*")) and (root / "test_batch").exists()
    return root if ok else None


def _batch_files(root: Path) -> list[Path]:
    return [*sorted(root.glob("data_batch_*")), root / "test_batch"]


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _check_batch(path: str, size: int, mtime_ns: int) -> None:
    # keyed by size and mtime: parameters are validated often, the files read once (and not kept)
    load_batch(Path(path))


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (pixels (n, 3072) uint8, labels (n,) int64), checked at the door:
    a file that does not unpickle, or holds other shapes, dtypes or labels, is a one-line PlasticlabError
    (junk data would otherwise crash a chunk, or run and report a meaningless accuracy)."""

    def bad(why: str) -> PlasticlabError:
        return PlasticlabError(f"CIFAR-10 batch {path} {why}; expected the 'CIFAR-10 python version' batches")

    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:
        raise bad(f"does not unpickle ({type(e).__name__})") from None
    if not isinstance(d, dict):
        raise bad(f"holds a {type(d).__name__}, not a dict with data and labels")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise bad("has no 'data' or no 'labels'")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise bad(f"has data of shape {data.shape}, not (n, 3072)")
    if data.dtype != np.uint8:
        raise bad(f"has data of dtype {data.dtype}, not uint8 pixels")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise bad(f"has labels of shape {labels.shape} and dtype {labels.dtype}, not {data.shape[0]} integers")
    if labels.min() < 0 or labels.max() > 9:
        raise bad(f"has labels in [{labels.min()}, {labels.max()}], not in 0..9")
    return data, labels.astype(np.int64)


def cifar10(
    data_path: str | Path, n_train: int | None = None, n_val: int = 10000, dtype=torch.float32, device=None
) -> Dataset:
    """CIFAR-10 from the standard python-pickle batches (data_batch_1..5, test_batch) in ``data_path``.

    Features are flattened to 3072 and standardised; the test batch is the validation set.
    """
    root = _root(data_path)  # load_batch checks each file as it reads it
    if root is None:
        raise PlasticlabError(
            f"no CIFAR-10 python batches in {data_path!s}: expected data_batch_1..5 and "
            "test_batch (the 'CIFAR-10 python version' archive, extracted)"
        )

    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"

    def load(path):
        data, labels = load_batch(path)
        return data.astype(np.float64) / 255.0, labels

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

"""On-disk state of a resumable sweep: chunk hashes, atomic files, the manifest, a per-directory lock.

Layout of an output folder::

    OUT/manifest.json          written only by the main process, always by atomic replace
    OUT/parts/<hash>.parquet   one finished chunk each, written to a temp file then renamed
    OUT/.sweep.lock            flock held while a run uses OUT (released by the OS even on SIGKILL)

A crash can therefore leave at worst a finished part that the manifest does not list yet (it is simply
recomputed and replaced) or a ``*.tmp`` file, which the next run deletes before it starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plasticlab.errors import PlasticlabError, PlasticlabWarning

# Bump when the part/manifest layout or the meaning of a chunk's rows changes: every chunk is then new.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTS = "parts"
LOCK = ".sweep.lock"
CORRUPT = "corrupt"  # damaged files are moved here, never deleted


class SweepWarning(PlasticlabWarning):
    """Something on disk was damaged and is being repaired (the CLI prints it as one line)."""


def warn(message: str) -> None:
    """One-line notice of a repair; the CLI shows it as ``warning: ...``."""
    warnings.warn(message, SweepWarning, stacklevel=2)


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays slip into specs easily; they have exact JSON equivalents.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"chunk spec value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _lenient(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): the input of chunk hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def chunk_hash(experiment: str, spec: dict[str, Any], code_version: Any = 0) -> str:
    """Identity of a chunk: same experiment, spec and versions -> same rows, so it may be reused."""
    payload = canonical_json(dict(experiment=experiment, spec=spec, format=FORMAT_VERSION, code=code_version))
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def grid_id(hashes: list[str]) -> str:
    """One short id for a grid (its chunk hashes in order): results.parquet is tagged with it."""
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:16]


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` then rename tmp over ``path``: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # durable before it becomes visible under the real name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: Path) -> str:
    """Checksum of a file's bytes, kept per part in the manifest so a damaged or swapped part is caught."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_parquet(df, path: Path) -> None:
    """``df`` to ``path`` atomically, with per-page checksums (so a part can be checked without the
    manifest). Through an open file, never a path string: pyarrow reads ``run:1/x`` as a URI."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            df.to_parquet(f, index=False, write_page_checksum=True)

    atomic_write(Path(path), write)


def read_parquet(path: Path, verify: bool = False):
    """The table in ``path`` (any name the filesystem accepts: colons, spaces, unicode); ``verify``
    checks every page's checksum while reading (files written without checksums still read)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        return pq.read_table(f, page_checksum_verification=verify).to_pandas()


def write_part(out: Path, h: str, df) -> str:
    """Write one finished chunk atomically; returns its checksum for the manifest entry."""
    path = out / PARTS / f"{h}.parquet"
    write_parquet(df, path)
    return file_sha256(path)


def move_aside(path: Path, folder: Path) -> Path:
    """Keep a damaged file for inspection instead of deleting it: ``folder/<name>.<UTC time>``."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:4]}"
    os.replace(path, dest)
    return dest


def remove_temp_files(out: Path) -> int:
    """Leftovers of a killed run; only called while holding the lock, so no live writer owns them."""
    n = 0
    for folder in (out, out / PARTS):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                n += 1
    return n


def now() -> str:
    """The current UTC time as an ISO-8601 string with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


class Manifest:
    """``{"format", "experiment", "params", "grid": [hash, ...], "chunks": {hash: entry}, "runs": [...]}``.

    ``grid`` is the current run's chunk order; ``chunks`` keeps entries of older grids too (their parts
    stay on disk and are reused if the grid comes back). An entry has ``state`` done|failed, ``index``,
    ``spec``, ``attempts`` (how many times it was computed), ``run`` (id of the run that last computed it),
    ``finished``, ``seconds``, ``worker``, ``rows`` and, when failed, ``error`` {type, message, traceback}.
    """

    def __init__(self, out: Path, data: dict[str, Any] | None = None):
        self.out = Path(out)
        self.lost: str | None = None  # set by load(repair=True) when the run folder's manifest was lost
        self.data: dict[str, Any] = data or dict(
            format=FORMAT_VERSION, experiment=None, params=None, grid=[], chunks={}, runs=[]
        )

    @classmethod
    def load(cls, out: Path | str, must_exist: bool = False, repair: bool = False) -> Manifest:
        """Read OUT/manifest.json. An unreadable one is an error, or with ``repair`` (a run holding the
        lock) is moved aside to OUT/corrupt/ and the run starts from an empty manifest with ``lost`` set
        (also when the manifest of a run folder is missing), so that it rebuilds it from OUT/parts."""
        path = Path(out) / MANIFEST
        if not path.exists():
            if must_exist and lost_manifest(Path(out)):
                raise PlasticlabError(
                    f"no {MANIFEST} in {out}, but finished chunks are in its parts/: run the same command "
                    "again to rebuild it (only missing chunks are computed)"
                )
            if must_exist:
                raise PlasticlabError(f"no {MANIFEST} in {out}: not the --out folder of `plasticlab run`")
            m = cls(Path(out))
            if repair and lost_manifest(Path(out)):
                m.lost = "was missing"
            return m
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("chunks", {}), dict):
                raise ValueError("not a manifest object")
        except (OSError, ValueError) as e:
            if not repair:
                raise PlasticlabError(
                    f"{path} is unreadable ({e}); the next `plasticlab run` on this folder moves it aside "
                    "and recomputes every chunk"
                ) from None
            dest = move_aside(path, Path(out) / CORRUPT)
            m = cls(Path(out))
            m.lost = f"was unreadable ({e}; moved to {dest})"  # the run rebuilds it from parts/
            return m
        if data.get("format") != FORMAT_VERSION:
            # An older layout: start afresh rather than misread it (old parts are simply not reused).
            return cls(Path(out))
        return cls(Path(out), data)

    def save(self) -> None:
        """Write the manifest atomically."""
        # Lenient: params may hold e.g. Paths; only chunk identity (chunk_hash) needs strict JSON.
        text = json.dumps(self.data, indent=1, default=_lenient)
        atomic_write(self.out / MANIFEST, lambda tmp: tmp.write_text(text))

    @property
    def grid(self) -> list[str]:
        """The current grid's chunk hashes, in chunk order."""
        return self.data["grid"]

    @property
    def chunks(self) -> dict[str, dict[str, Any]]:
        """Every chunk entry by hash (this grid's and earlier grids')."""
        return self.data["chunks"]

    def is_done(self, h: str) -> bool:
        """True if chunk ``h`` finished and its part was recorded."""
        e = self.chunks.get(h) or {}
        return e.get("state") == "done" and (self.out / PARTS / f"{h}.parquet").exists()

    def damage(self, h: str) -> str | None:
        """Why a done chunk's part cannot be trusted (checksum or row count differs, unreadable), or None."""
        e, path = self.chunks.get(h, {}), self.part(h)
        want = e.get("sha256")
        try:
            if want is not None:
                got = file_sha256(path)
                return None if got == want else f"checksum {got[:12]}… differs from the manifest's {want[:12]}…"
            import pyarrow.parquet as pq  # an entry from before checksums: at least the rows must read

            with open(path, "rb") as f:
                rows = pq.ParquetFile(f).metadata.num_rows
            return None if rows == e.get("rows", rows) else f"{rows} rows, the manifest says {e['rows']}"
        except Exception as exc:
            return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"

    def part(self, h: str) -> Path:
        """The part file of chunk ``h``."""
        return self.out / PARTS / f"{h}.parquet"


def verify_part(path: Path, columns: Any = ()) -> tuple[str, int]:
    """A part found without a manifest entry: read it whole (checking its page checksums) -> (sha256,
    rows), or raise ValueError saying why it cannot be trusted."""
    try:
        df = read_parquet(path, verify=True)
    except Exception as e:
        raise ValueError(f"unreadable ({type(e).__name__})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing or len(df) == 0:
        raise ValueError(f"lacks columns {missing}" if missing else "has no rows")
    return file_sha256(path), len(df)


def part_hashes(out: Path) -> set[str]:
    """The chunk hashes of the part files in OUT/parts."""
    return {p.stem for p in _part_files(out)}


def _probe_writable(path: Path, flag: str) -> None:
    """Refuse ``path`` unless a file can be made in it (or, if it does not exist yet, in its nearest
    existing parent), leaving nothing behind: permission bits lie to root, and /proc or a read-only
    mount refuse anyway, so really try."""
    target = path
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        if not target.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = target / f".write-test.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PlasticlabError(
            f"{flag} {path} is not a writable folder ({e.strerror}); choose another {flag}"
        ) from None


def _path_of(out: str | Path, flag: str) -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise PlasticlabError(f"{flag} must be a folder path (str or Path), got {type(out).__name__} {out!r}")
    if str(out).strip() == "":
        raise PlasticlabError(f"{flag} is empty; give a folder, e.g. {flag} runs/my-run")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise PlasticlabError(f"{flag} {out} is a file, not a folder; choose a folder")
    _probe_writable(path, flag)
    return path


def _part_files(out: Path) -> list[Path]:
    folder = out / PARTS
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if len(p.stem) == 24 and p.suffix == ".parquet" and _is_hex(p.stem)]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def lost_manifest(out: Path, keys: Any = None) -> bool:
    """Whether ``out`` is a run folder whose manifest.json is gone: finished parts named by their chunk
    hash in OUT/parts, or a config.json with (only) the experiment's parameter keys."""
    if (out / MANIFEST).exists() or not out.is_dir():
        return False
    if _part_files(out):
        return True
    try:
        config = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config) and (keys is None or set(config) <= set(keys))


def check_out(out: str | Path, experiment: str, keys: Any = None) -> Path:
    """``--out`` must be a writable folder that is new, empty, or a run of the same experiment (also one
    whose manifest was lost: see :func:`lost_manifest`; ``keys``: the experiment's parameter names).
    Creates nothing: the run makes the folder only once every check has passed."""
    path = _path_of(out, "--out")
    if (
        path.is_dir()
        and any(p.name != LOCK for p in path.iterdir())
        and not (path / MANIFEST).exists()
        and not lost_manifest(path, keys)
    ):
        raise PlasticlabError(
            f"--out {out} is a folder with other files and no plasticlab run in it; "
            "choose an empty or new folder (nothing was changed)"
        )
    if (path / MANIFEST).exists():
        try:
            owner = json.loads((path / MANIFEST).read_text()).get("experiment")
        except (OSError, ValueError, AttributeError):
            owner = None  # unreadable: the run rebuilds it (its chunk hashes name the experiment)
        if owner and owner != experiment:
            raise PlasticlabError(
                f"--out {out} holds a run of {owner}, not {experiment}; choose another --out (nothing was changed)"
            )
    return path


def check_collection_out(out: str | Path) -> Path:
    """``reproduce --out``: a writable folder (new, or one holding experiments' run folders), never
    a single run's folder, whose files it would mix with its own. Creates nothing."""
    path = _path_of(out, "--out")
    if (path / MANIFEST).exists() or lost_manifest(path):
        raise PlasticlabError(
            f"--out {out} is the folder of one `plasticlab run`; reproduce writes one folder per experiment "
            "under --out: choose another (nothing was changed)"
        )
    return path


class DirLock:
    """Exclusive use of an output folder by one run; a second concurrent run gets a clear error."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> DirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PlasticlabError(
                f"cannot create {self.path.parent} ({e.strerror}); choose another --out"
            ) from None
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise PlasticlabError(
                f"another run is using {self.path.parent} (pid {holder(self.path)}); "
                "wait for it or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def holder(lock_path: Path) -> str:
    """Who holds a run folder's lock (its recorded owner), or '?'."""
    try:
        return lock_path.read_text().strip() or "?"
    except OSError:
        return "?"


def is_locked(out: Path) -> bool:
    """Whether a live process holds the run folder's lock."""
    path = Path(out) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

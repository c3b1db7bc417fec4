"""What runs in a worker process (local pool or Dask): look the experiment up by name, run one chunk.

Experiments are never pickled: a worker only needs ``plasticlab`` importable and the (name, spec) pair.
Errors are caught here and returned as plain data, because arbitrary exception objects do not always
pickle and a traceback is most useful as text in the manifest anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pandas as pd

from plasticlab.study.context import RunContext


def usable_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch intra-op threads per worker so that N workers together do not oversubscribe the cores."""
    return max(1, usable_cores() // max(1, workers))


def set_threads(n: int | None) -> None:
    """Set torch's intra-op thread count (when n is given)."""
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


@contextlib.contextmanager
def threads_restored() -> Iterator[None]:
    """Whatever runs inside may set torch's intra-op threads; the caller's setting is back afterwards."""
    import torch

    saved = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def _exit_when_gone(pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # PermissionError: the pid now belongs to another user
            os._exit(1)


def init_worker(threads: int | None, main_pid: int | None = None) -> None:
    """Pool worker start-up: thread count, ignore Ctrl-C (the main process decides), die with the main."""
    set_threads(threads)
    # Ctrl-C in a terminal reaches the whole process group; the main process then cancels the pool
    # itself. A worker that also raised KeyboardInterrupt would only print a second traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main_pid:
        # A SIGKILLed main process cannot shut its pool down, and pool workers never see EOF on their
        # task queue (they hold its write end themselves), so without this they would linger forever.
        threading.Thread(target=_exit_when_gone, args=(main_pid,), daemon=True).start()


def _dask_cancel_checker(cancel_key: str):
    from distributed import Event

    event = Event(cancel_key)
    return event.is_set


def run_task(name: str, spec: dict[str, Any], ctx: RunContext, cancel_key: str | None = None) -> dict[str, Any]:
    """-> {"ok": True, "df": DataFrame, ...} or {"ok": False, "error": {type, message, traceback}, ...}.

    ``ctx`` says where and how (device, compile flag, threads, the plugins to import first); ``spec`` is the
    chunk's plain dict, made typed again by the experiment. ``cancel_key``: name of a Dask Event the main
    process sets when the run is interrupted; the chunk's loops poll it through :func:`plasticlab.cancel.check`.
    """
    from plasticlab import cancel, compiling, devices

    cancel.set_checker(_dask_cancel_checker(cancel_key) if cancel_key else None)
    # the module-level defaults follow the context too, for library code a chunk calls without passing them
    with devices.use(ctx.device), compiling.use(ctx.compile):
        return _run_task(name, spec, ctx)


def _run_task(name: str, spec: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from plasticlab.allocator import keep_freed_memory
    from plasticlab.study.registry import get, load_plugins

    keep_freed_memory()  # large per-step tensors reuse freed blocks instead of fresh zeroed pages
    set_threads(ctx.threads)
    where = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        load_plugins(ctx.plugins)  # a user's rules and experiments, by name, in this process too
        exp = get(name)  # first call in a process imports the experiment modules
        typed = exp.spec_of(spec) if hasattr(exp, "spec_of") else spec
        t0 = time.perf_counter()
        df = exp.run_chunk(typed, ctx) if _takes_context(exp) else exp.run_chunk(typed)  # type: ignore[call-arg]
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{name}.run_chunk must return a pandas DataFrame, got {type(df).__name__}")
        return dict(ok=True, df=df, seconds=time.perf_counter() - t0, worker=where)
    except Exception as e:
        err = dict(type=type(e).__name__, message=str(e), traceback=traceback.format_exc())
        return dict(ok=False, error=err, seconds=time.perf_counter() - t0, worker=where)


def _takes_context(exp: Any) -> bool:
    """True for ``run_chunk(spec, ctx)``; False for an experiment still on ``run_chunk(spec)``."""
    import inspect

    return len(inspect.signature(exp.run_chunk).parameters) >= 2

"""Executors: each yields ``(i, result)`` for ``specs[i]`` in completion order (result from worker.run_task).

They only compute; the caller writes parts and the manifest as results arrive. Closing the generator
(normal end, Ctrl-C, an error in the caller) shuts the workers down.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import suppress
from pathlib import Path
from typing import Any

from plasticlab import compiling, devices
from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.study.context import RunContext
from plasticlab.sweeps.worker import init_worker, run_task, threads_per_worker, threads_restored, usable_cores

EXECUTORS = ("local", "dask")
CONNECT_TIMEOUT = "15s"  # how long an unreachable Dask scheduler is tried before the run is refused
Result = tuple[int, dict[str, Any]]


def _lost(e: BaseException, what: str) -> dict[str, Any]:
    """A chunk whose worker died (OOM kill, segfault): a failure to retry, like a chunk that raised."""
    return dict(
        ok=False,
        seconds=float("nan"),
        worker="?",
        error=dict(
            type=type(e).__name__, message=f"{what}: {e}", traceback="".join(traceback.format_exception(e))
        ),
    )


def default_workers(executor: str) -> int:
    """Worker count when none is given: 1 (in-process) locally, all usable cores on Dask."""
    return 1 if executor == "local" else usable_cores()


# Chunks run in-process with one intra-op thread: every engine here steps small tensors, where the
# thread pool's hand-offs cost more than they save (and one thread is what pool workers get on a
# machine with as many workers as cores).
SERIAL_THREADS = 1


def run_serial(name: str, specs: list[dict], ctx: RunContext) -> Generator[Result, None, None]:
    """Chunks one after another in this process; the caller's torch thread setting is left as it was."""
    for i, spec in enumerate(specs):
        with threads_restored():
            res = run_task(name, spec, ctx.with_(threads=SERIAL_THREADS))
        yield i, res


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: children are forked from a clean server (never from a parent whose torch/OpenMP thread
    # pools may already be running, which can deadlock after fork) but still start fast, since the heavy
    # imports are done once in the server.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pandas", "pyarrow", "plasticlab.sweeps._preload"])
    return ctx


_GUARD = re.compile(r"""__name__\s*[!=]=\s*['"]__main__['"]|['"]__main__['"]\s*[!=]=\s*__name__""")


def check_main_guard(workers: int) -> None:
    """Worker processes re-import the main script before they take a chunk; a script that calls
    ``plasticlab.run`` at its top level (no ``if __name__ == "__main__":``) would start the run again in
    every worker, each dying with a BrokenProcessPool. Say so in one line instead of failing every chunk."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return  # an interactive session, a notebook, `python -c`, a console script: nothing is re-run
    try:
        source = Path(path).read_text(errors="replace")
    except OSError:
        return
    if not _GUARD.search(source):
        raise PlasticlabError(
            f"{Path(path).name} calls plasticlab.run with workers={workers} but has no "
            '`if __name__ == "__main__":` guard: worker processes re-import it and would start the run '
            "again; put the call under the guard, or use workers=1"
        )


def run_pool(name: str, specs: list[dict], workers: int, ctx: RunContext) -> Generator[Result, None, None]:
    """Chunks in ``workers`` forkserver processes. If the caller stops early (Ctrl-C, SIGTERM, an error),
    running chunks are cancelled by terminating their workers: waiting for them could take hours."""
    threads = threads_per_worker(workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(specs)),
        mp_context=_pool_context(),
        initializer=init_worker,
        initargs=(threads, os.getpid()),
    )
    complete = False
    try:
        task_ctx = ctx.with_(threads=threads)
        futures = {pool.submit(run_task, name, spec, task_ctx): i for i, spec in enumerate(specs)}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as e:
                res = _lost(e, "worker process died")
            yield futures[fut], res
        complete = True
    finally:
        if complete:
            pool.shutdown(wait=True)
        else:
            stop_pool(pool)


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = 2.0) -> None:
    """Cancel queued chunks, terminate the workers (SIGTERM, then SIGKILL after ``grace_s``), reap them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``; an unreachable one is a one-line user error
    (raised before the run makes its folder)."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        raise PlasticlabError(f"cannot reach Dask scheduler {scheduler!r}: {e}") from None


def run_dask(
    name: str, specs: list[dict], workers: int, scheduler: str | None, ctx: RunContext, client=None
) -> Generator[Result, None, None]:
    """Chunks as Dask tasks. If the caller stops early, a cancel event tells running chunks to stop at
    their next check (see plasticlab.cancel), queued ones are cancelled and a LocalCluster is closed.
    ``client``: one already connected to ``scheduler`` (the caller closes it)."""
    from distributed import Client, Event
    from distributed import as_completed as dask_completed

    cluster = None
    own_client = client is None
    if scheduler:
        client = client or connect(scheduler)
        threads = None  # remote workers know their own cores; leave torch's default
    else:
        cluster = _local_cluster(workers)
        client = Client(cluster)
        threads = threads_per_worker(workers)
    tag = uuid.uuid4().hex[:8]
    task_ctx = ctx.with_(threads=threads)
    cancel_key = f"plasticlab-cancel-{tag}"
    futures: dict = {}
    complete = False
    try:
        futures = {
            client.submit(
                run_task,
                name,
                spec,
                task_ctx,
                cancel_key,
                pure=False,
                key=f"{name}-{i}-{tag}",
            ): i
            for i, spec in enumerate(specs)
        }
        for fut in dask_completed(list(futures)):
            try:
                res = fut.result()
            except Exception as e:
                res = _lost(e, "dask task lost")
            yield futures[fut], res
        complete = True
    finally:
        if not complete:
            with suppress(Exception):
                Event(cancel_key, client=client).set()
        with suppress(Exception):
            client.cancel(list(futures))
        if own_client:
            client.close(timeout=5)
        if cluster is not None:
            cluster.close(timeout=5)


def _local_cluster(workers: int):
    import dask
    from distributed import LocalCluster

    # Loopback only (scheduler, workers, nannies and the HTTP status server, on a random port so two
    # runs never collide on 8787). Workers fork from a forkserver (dask preloaded) rather than
    # spawning a fresh interpreter each: faster start.
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )


def check_options(executor: str, workers: int | None, scheduler: str | None) -> int:
    """Validate the executor options (one-line errors, before any work); returns the worker count."""
    check_choice("executor", executor, EXECUTORS)
    if workers is None:
        workers = default_workers(executor)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PlasticlabError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler and executor != "dask":
        raise PlasticlabError("--scheduler needs --executor dask")
    return workers


def run(
    name: str,
    specs: list[dict],
    executor: str,
    workers: int | None,
    scheduler: str | None,
    client=None,
    ctx: RunContext | None = None,
) -> Generator[Result, None, None]:
    """Dispatch chunks to the chosen executor; yields (index, result) as chunks finish. ``client``: a
    Dask client already connected to ``scheduler`` (see :func:`connect`); ``ctx``: where and how every
    chunk runs (default: the current device and compile setting)."""
    workers = check_options(executor, workers, scheduler)
    ctx = ctx or RunContext(device=str(devices.current()), compile=compiling.enabled())
    if not specs:
        return run_serial(name, [], ctx)
    if executor == "dask":
        return run_dask(name, specs, workers, scheduler, ctx, client)
    if workers == 1 or len(specs) == 1:  # a pool for one chunk only adds start-up time
        return run_serial(name, specs, ctx)
    workers = min(workers, len(specs))
    check_main_guard(workers)
    return run_pool(name, specs, workers, ctx)

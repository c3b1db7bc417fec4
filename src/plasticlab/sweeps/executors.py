"""Executors: each yields ``(i, result)`` for ``specs[i]`` in completion order (result from worker.run_task).

They only compute; the caller writes parts and the manifest as results arrive. Closing the generator
(normal end, Ctrl-C, an error in the caller) shuts the workers down.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
import uuid
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from plasticlab import compiling, devices
from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.sweeps.worker import init_worker, run_task, threads_per_worker, threads_restored, usable_cores

EXECUTORS = ("local", "dask")
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


def run_serial(name: str, specs: list[dict]) -> Generator[Result, None, None]:
    """Chunks one after another in this process; the caller's torch thread setting is left as it was."""
    for i, spec in enumerate(specs):
        with threads_restored():
            res = run_task(name, spec, SERIAL_THREADS)
        yield i, res


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: children are forked from a clean server (never from a parent whose torch/OpenMP thread
    # pools may already be running, which can deadlock after fork) but still start fast, since the heavy
    # imports are done once in the server.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pandas", "pyarrow", "plasticlab.sweeps._preload"])
    return ctx


def run_pool(name: str, specs: list[dict], workers: int) -> Generator[Result, None, None]:
    """Run chunks in a pool of worker processes, yielding results as they complete."""
    threads = threads_per_worker(workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(specs)),
        mp_context=_pool_context(),
        initializer=init_worker,
        initargs=(threads, os.getpid()),
    )
    try:
        dev = str(devices.current())  # the run's device, for the worker processes
        comp = compiling.enabled()
        futures = {pool.submit(run_task, name, spec, threads, dev, comp): i for i, spec in enumerate(specs)}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as e:
                res = _lost(e, "worker process died")
            yield futures[fut], res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(name: str, specs: list[dict], workers: int, scheduler: str | None) -> Generator[Result, None, None]:
    """Run chunks on a Dask cluster (the given scheduler, or a loopback LocalCluster)."""
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as e:
            raise PlasticlabError(f"cannot reach Dask scheduler {scheduler!r}: {e}") from None
        threads = None  # remote workers know their own cores; leave torch's default
    else:
        import dask

        # Loopback only (scheduler, workers, nannies and the HTTP status server, on a random port so two
        # runs never collide on 8787). Workers fork from a forkserver (dask preloaded) rather than
        # spawning a fresh interpreter each: faster start.
        with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
        client = Client(cluster)
        threads = threads_per_worker(workers)
    tag = uuid.uuid4().hex[:8]
    dev = str(devices.current())
    futures: dict = {}
    try:
        futures = {
            client.submit(
                run_task, name, spec, threads, dev, compiling.enabled(), pure=False, key=f"{name}-{i}-{tag}"
            ): i
            for i, spec in enumerate(specs)
        }
        for fut in dask_completed(list(futures)):
            try:
                res = fut.result()
            except Exception as e:
                res = _lost(e, "dask task lost")
            yield futures[fut], res
    finally:
        client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()


def run(
    name: str, specs: list[dict], executor: str, workers: int | None, scheduler: str | None
) -> Generator[Result, None, None]:
    """Dispatch chunks to the chosen executor; yields (index, result) as chunks finish."""
    check_choice("executor", executor, EXECUTORS)
    if workers is None:
        workers = default_workers(executor)
    if workers < 1:
        raise PlasticlabError(f"workers must be >= 1, got {workers}")
    if scheduler and executor != "dask":
        raise PlasticlabError("--scheduler needs --executor dask")
    if not specs:
        return run_serial(name, [])
    if executor == "dask":
        return run_dask(name, specs, workers, scheduler)
    if workers == 1 or len(specs) == 1:  # a pool for one chunk only adds start-up time
        return run_serial(name, specs)
    workers = min(workers, len(specs))
    return run_pool(name, specs, workers)

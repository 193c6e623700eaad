"""Independent points of a sweep, run in parallel: in local worker processes, or on a Dask
cluster (``dask.distributed``) that the user already has or that oasa starts on this
machine.

A point is a pure function of its inputs (a quantization at one P, an FPGA build of one
array), so where it runs changes nothing but the time: the caller keeps its cache and
writes each result as it arrives (:func:`run_points` yields them in completion order).
Large inputs every point needs (the float model and the data set) are handed over once:
to each local process as it starts, or scattered to every Dask worker, never with each
point. A point that raises twice, or that Dask gives up on twice because its workers died
(:data:`oasa.points.on_dask.RESUBMIT_KILLED`), comes back as a :class:`Failure` instead of
stopping the sweep; the caller records it and a re-run tries it again.

Every worker runs one point at a time on one core: BLAS and torch are pinned to one
thread whatever the environment says, so J workers use J cores instead of fighting over
them, and a point's figures do not depend on the machine's thread settings.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from oasa.errors import InputError

__all__ = [
    "THREAD_VARS",
    "Failure",
    "Where",
    "parse_cluster",
    "pin_threads",
    "run_points",
    "where_from_options",
]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Where:
    """Where a sweep's points run: ``jobs`` local processes, a local Dask cluster of
    ``cluster`` worker processes, or the Dask scheduler at ``scheduler``."""

    jobs: int = 1
    cluster: int | None = None
    scheduler: str | None = None

    @property
    def dask(self) -> bool:
        return self.cluster is not None or self.scheduler is not None

    def describe(self) -> str:
        if self.cluster is not None:
            return f"a local Dask cluster of {self.cluster} workers"
        if self.scheduler is not None:
            return f"the Dask scheduler at {self.scheduler}"
        return f"{self.jobs} job{'s' if self.jobs != 1 else ''}"


@dataclass(frozen=True)
class Failure:
    """A point that did not finish: the error it raised, or why its worker was lost."""

    error: str


def parse_cluster(text: str) -> int:
    """Worker processes of ``--cluster local:N``."""
    match = re.fullmatch(r"local:(\d+)", text.strip())
    if not match or not 1 <= int(match.group(1)) <= 1024:
        raise InputError(
            f"--cluster {text!r}: give local:N, a Dask cluster of N worker processes on this "
            "machine (1 to 1024), e.g. local:4; for a cluster you already run, --scheduler "
            "ADDRESS"
        )
    return int(match.group(1))


def where_from_options(
    jobs: int | None, cluster: str | None, scheduler: str | None, *, default_jobs: int
) -> Where:
    """:class:`Where` from the command-line options, refusing a mix that says two things."""
    if cluster is not None and scheduler is not None:
        raise InputError("--cluster and --scheduler both given: choose one")
    if jobs is not None and (cluster is not None or scheduler is not None):
        option = "--cluster" if cluster is not None else "--scheduler"
        raise InputError(
            f"--jobs and {option} both given: --jobs sets local processes, {option} runs the "
            "points on Dask workers instead; drop one"
        )
    if cluster is not None:
        return Where(cluster=parse_cluster(cluster))
    if scheduler is not None:
        if not scheduler.strip():
            raise InputError("--scheduler needs an address, e.g. tcp://10.0.0.5:8786")
        return Where(scheduler=scheduler.strip())
    return Where(jobs=jobs if jobs is not None else default_jobs)


def pin_threads() -> None:
    """One BLAS and one torch thread in this process, whatever the environment said: set
    for libraries not loaded yet, and limited in those already loaded."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _local_setup(setup: Callable | None, args: tuple) -> None:
    pin_threads()
    if setup is not None:
        setup(*args)


def _inline_points(
    fn: Callable, items: Sequence[tuple], setup: Callable | None, setup_args: tuple
) -> Iterator[tuple[int, Any]]:
    """One job: the points run in this process, one after the other."""
    _local_setup(setup, setup_args)
    for i, item in enumerate(items):
        try:
            result = fn(*item)
        except Exception as e:
            result = Failure(describe_error(e))
        yield i, result


def _local_points(
    fn: Callable, items: Sequence[tuple], jobs: int, setup: Callable | None, setup_args: tuple
) -> Iterator[tuple[int, Any]]:
    import multiprocessing

    if jobs <= 1:
        yield from _inline_points(fn, items, setup, setup_args)
        return

    # Fresh ("spawn") processes read the one-thread settings as they start.
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    os.environ.update(dict.fromkeys(THREAD_VARS, "1"))
    pool = ProcessPoolExecutor(
        max_workers=max(1, jobs),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_local_setup,
        initargs=(setup, setup_args),
    )
    try:
        pending = {pool.submit(fn, *item): i for i, item in enumerate(items)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                exc = fut.exception()
                yield i, (fut.result() if exc is None else Failure(describe_error(exc)))
    except BaseException:
        # Stop the workers at once (a running point may take minutes); the caller has
        # saved every finished point.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.terminate()
        raise
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    pool.shutdown()


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def run_points(
    fn: Callable,
    items: Sequence[tuple],
    *,
    where: Where,
    setup: Callable | None = None,
    setup_args: tuple = (),
    version: Callable[[], str] | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, fn(*items[i]))`` for every point as it finishes, or ``(i, Failure)``.

    ``setup(*setup_args)`` runs once in every worker process before its first point (it
    loads what all points share; ``setup_args`` go to each worker once: pickled to a local
    process as it starts, scattered to all Dask workers). With one local job the points run
    in this process, in order. ``version`` (on Dask): a function
    whose value must be the same on every worker as here, e.g. the hash of the code the
    points' results depend on. Use it as ``with contextlib.closing(run_points(...))`` so that
    an interrupted loop stops the workers; results already yielded are the caller's.
    """
    if where.dask:
        from oasa.points.on_dask import dask_points

        yield from dask_points(fn, items, where, setup, setup_args, version, log)
    else:
        yield from _local_points(fn, items, where.jobs, setup, setup_args)

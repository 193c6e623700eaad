"""The Dask side of :mod:`oasa.points`: a client for ``--cluster local:N`` or
``--scheduler ADDRESS``, the workers' setup, and the points as futures.

What every point shares (the float model and the data) travels inside a worker plugin:
the scheduler keeps it and hands it to each worker once, including a worker that the nanny
starts again after one died mid-point, so nothing is sent with each point and nothing is
lost with a worker (data scattered to workers would be). Imported only when a sweep runs
on Dask: ``distributed`` is the optional ``cluster`` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from oasa.errors import InputError
from oasa.points import THREAD_VARS, Failure, Where, describe_error, pin_threads

try:
    import distributed
except ImportError:  # the cluster extra is not installed
    distributed = None

__all__ = ["check_code_version", "dask_client", "dask_points"]

#: Dask retries a point that raised once (``retries``) and reschedules a point whose worker
#: died once (the scheduler's ``allowed-failures``); a second failure is the point's.
RETRIES = 1
ALLOWED_FAILURES = 1
#: Times a point that Dask gave up on as KilledWorker is submitted again. The scheduler
#: charges a worker's death to every point it held, running or waiting, so a point can run
#: out of ``allowed-failures`` on the deaths of others (two workers that die together: the
#: first one's point rescheduled onto the second). A point that kills every worker it
#: runs on still ends as a failure, after 2 x (1 + ALLOWED_FAILURES) deaths.
RESUBMIT_KILLED = 1
#: How long to try to reach a ``--scheduler`` before saying it cannot be reached.
CONNECT_TIMEOUT = "10s"


def _require_dask():
    if distributed is None:
        raise InputError(
            "--cluster and --scheduler run points on Dask, which is not installed: "
            "pip install -e '.[cluster]'"
        )
    return distributed


class PointSetup(distributed.WorkerPlugin if distributed else object):
    """Runs on every worker before its first point, and on every worker that joins later:
    one thread for BLAS and torch, then ``setup(*args)``."""

    def __init__(self, name: str, setup: Callable | None, args: tuple):
        self.name = name
        self.setup_fn = setup
        self.args = args

    def setup(self, worker) -> None:
        pin_threads()
        if self.setup_fn is not None:
            self.setup_fn(*self.args)


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


@contextlib.contextmanager
def dask_client(where: Where, *, log: Callable[[str], None] = print):
    """A ``distributed.Client`` for ``where``: a ``LocalCluster`` of single-threaded worker
    processes started (and stopped) here, or a connection to a running scheduler. On the
    clusters oasa starts, a worker that dies mid-point costs the point one try (the
    scheduler's allowed-failures); a scheduler of your own keeps its own setting."""
    dd = _require_dask()
    import dask

    # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in each worker, which turns off glibc's
    # dynamic mmap threshold: every large numpy temporary is then mapped and faulted in
    # afresh, and the golden model ran 30 to 60 % slower on such workers than in a local
    # process. The workers oasa starts keep glibc's default.
    settings = {
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }
    with dask.config.set(settings):
        cluster = None
        if where.cluster is not None:
            cluster = dd.LocalCluster(
                n_workers=where.cluster,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0" if _has_bokeh() else None,
                env=dict.fromkeys(THREAD_VARS, "1"),
            )
        try:
            try:
                client = dd.Client(cluster or where.scheduler, timeout=CONNECT_TIMEOUT)
            except OSError as e:
                raise InputError(
                    f"cannot reach the Dask scheduler at {where.scheduler}: {e}; start one "
                    "(dask scheduler) or check the address"
                ) from None
            with client:
                if cluster is None or _has_bokeh():
                    with contextlib.suppress(Exception):
                        if client.dashboard_link:
                            log(f"Dask dashboard: {client.dashboard_link}")
                yield client
        finally:
            if cluster is not None:
                cluster.close()


def check_code_version(client, version: Callable[[], str]) -> None:
    """Refuse workers whose source differs from this client's: their points would be
    computed by other code and filed under this code's cache keys."""
    mine = version()
    theirs = client.run(version)
    if not theirs:
        raise InputError("the Dask scheduler has no workers: start some (dask worker ADDRESS)")
    wrong = sorted(w for w, v in theirs.items() if v != mine)
    if wrong:
        raise InputError(
            f"{len(wrong)} Dask worker(s) run other oasa code than this client ({wrong[0]}: "
            f"{theirs[wrong[0]]}, here {mine}): install this checkout on the workers"
        )


def dask_points(
    fn: Callable,
    items: Sequence[tuple],
    where: Where,
    setup: Callable | None,
    setup_args: tuple,
    version: Callable[[], str] | None,
    log: Callable[[str], None],
) -> Iterator[tuple[int, Any]]:
    """:func:`oasa.points.run_points` on Dask."""
    dd = _require_dask()
    with dask_client(where, log=log) as client:
        if version is not None:
            check_code_version(client, version)
        token = uuid.uuid4().hex[:12]
        plugin = PointSetup(f"oasa-setup-{token}", setup, setup_args)
        client.register_plugin(plugin)

        def submit(i: int, attempt: int):
            key = f"oasa-point-{token}-{i}" + (f"-again{attempt}" if attempt else "")
            return client.submit(fn, *items[i], key=key, retries=RETRIES, pure=False)

        futures = [submit(i, 0) for i in range(len(items))]
        index = {f.key: (i, 0) for i, f in enumerate(futures)}
        try:
            running = dd.as_completed(futures)
            for fut in running:
                i, attempt = index[fut.key]
                if fut.status == "finished":
                    yield i, fut.result()
                    fut.release()
                    continue
                exc = fut.exception()
                fut.release()
                if isinstance(exc, distributed.KilledWorker) and attempt < RESUBMIT_KILLED:
                    again = submit(i, attempt + 1)
                    index[again.key] = (i, attempt + 1)
                    futures.append(again)
                    running.add(again)
                    log(f"point {i + 1}: its workers died; submitted again")
                    continue
                yield i, Failure(describe_error(exc) if exc else f"the point was {fut.status}")
        finally:
            client.cancel(futures)
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(plugin.name)

"""Sweeps on a Dask cluster (``--cluster local:N``): the same rows as a local run, a worker
that dies mid-point replaced without loss, failures recorded and retried by the next run,
and workers pinned to one thread and checked to run the client's code."""

from __future__ import annotations

import contextlib
import os
from functools import partial

import pytest
import sweep_faults

from oasa.errors import InputError
from oasa.points import Failure, Where, run_points
from oasa.quant import sweep
from oasa.quant.workload import load_workload

pytest.importorskip("distributed", reason="the cluster extra (pip install -e '.[cluster]')")

POINTS = sweep.plan(["exact", "rtn"], [12, 16], ["wrap", "saturate"])


@pytest.fixture(scope="module")
def digits():
    return load_workload(None, None, need_train=True)


@pytest.fixture(scope="module")
def local_rows(digits, tmp_path_factory):
    """The reference: the points on two local processes."""
    out = tmp_path_factory.mktemp("local")
    rows, computed = sweep.run_sweep(POINTS, out, where=Where(jobs=2), workload=digits)
    assert computed == len(POINTS)
    return rows


def _values(rows):
    """Every value of every row but the seconds it took."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_a_dask_run_equals_a_local_run_and_survives_a_dying_worker(digits, local_rows, tmp_path):
    """On a local Dask cluster of two workers, the P = 12 points' first try kills its worker
    process; the scheduler reschedules them (allowed-failures 1), the sweep completes, and
    every row equals the local run's. A second run computes nothing."""
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "dask"
    rows, computed = sweep.run_sweep(
        POINTS, out, where=Where(cluster=2), workload=digits,
        evaluate=partial(sweep_faults.dies_once, str(markers)),
    )  # fmt: skip
    assert sorted(p.name for p in markers.iterdir()) == ["exact-12", "rtn-12"]  # both died
    assert computed == len(POINTS)
    assert _values(rows) == _values(local_rows)
    assert all(r["status"] == "ok" for r in rows)
    again, computed = sweep.run_sweep(POINTS, out, where=Where(cluster=1), workload=digits)
    assert computed == 0 and again == rows


def test_a_point_dask_gives_up_on_is_submitted_once_more(digits, local_rows, tmp_path):
    """One worker, and the P = 12 point ends it twice: Dask gives up on that point
    (allowed-failures 1: KilledWorker), and on any other point the dead worker held. oasa
    submits each such point once more, and the sweep still equals the local run."""
    markers = tmp_path / "markers"
    markers.mkdir()
    points = [p for p in POINTS if p.task.method == "exact"]
    rows, computed = sweep.run_sweep(
        points, tmp_path / "dask", where=Where(cluster=1), workload=digits,
        evaluate=partial(sweep_faults.dies, 2, str(markers)),
    )  # fmt: skip
    assert (markers / "exact-12").read_text() == "2"  # two deaths: past allowed-failures
    assert computed == len(points) and _values(rows) == _values(local_rows[:4])


def test_a_failing_point_is_recorded_and_computed_by_the_next_run(digits, local_rows, tmp_path):
    """A point that keeps raising is written with status "failed" and its error, the other
    points finish; a re-run computes only the failed ones and then equals the local run."""
    points = [p for p in POINTS if p.task.method == "exact"]
    rows, computed = sweep.run_sweep(
        points, tmp_path, where=Where(jobs=1), workload=digits, evaluate=sweep_faults.always_fails
    )
    failed = [r for r in rows if r["status"] == "failed"]
    assert computed == len(points) and len(failed) == 2
    assert all(r["acc_bits"] == 12 and "injected fault at P = 12" in r["error"] for r in failed)
    rows, computed = sweep.run_sweep(points, tmp_path, where=Where(jobs=1), workload=digits)
    assert computed == 2 and _values(rows) == _values(local_rows[:4])


def test_workers_run_one_thread_and_the_clients_code():
    """Every worker is pinned to one BLAS thread whatever the environment said, and keeps
    glibc's malloc defaults; workers whose code version differs from the client's are
    refused before any point runs."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "2"  # the workers must not inherit it
    try:
        with contextlib.closing(
            run_points(sweep_faults.worker_state, [()] * 4, where=Where(cluster=2))
        ) as results:
            states = [state for _, state in results]
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    assert not any(isinstance(s, Failure) for s in states)
    assert {s["env"]["OMP_NUM_THREADS"] for s in states} == {"1"}
    # Dask's default MALLOC_TRIM_THRESHOLD_ slows numpy temporaries by a third: not set.
    assert {s["env"]["MALLOC_TRIM_THRESHOLD_"] for s in states} == {None}
    assert {n for s in states for n in s["blas_threads"]} <= {1}
    here = os.getpid()
    with pytest.raises(InputError, match="run other oasa code than this client"):
        list(run_points(sweep_faults.worker_state, [()], where=Where(cluster=1),
                        version=partial(_pid_version, here)))  # fmt: skip


def _pid_version(client_pid: int) -> str:
    return "client" if os.getpid() == client_pid else "edited on the worker"


def test_an_unreachable_scheduler_is_one_clear_error(monkeypatch):
    import oasa.points.on_dask

    monkeypatch.setattr(oasa.points.on_dask, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(
        InputError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1"
    ):
        list(
            run_points(sweep_faults.worker_state, [()], where=Where(scheduler="tcp://127.0.0.1:1"))
        )


def test_fpga_sweep_on_dask_returns_records_and_keeps_builds_on_the_workers(tmp_path):
    """``oasa fpga sweep --cluster``: the records come back and are cached as on a local
    run; the build folders stay on the workers (none in the output folder)."""
    from oasa.fpga.sweep import SweepPoint, load_results
    from oasa.fpga.sweep import run_sweep as fpga_sweep

    points = [SweepPoint("icebreaker", r, c, 16) for r, c in ((2, 2), (3, 3), (4, 3))]
    local = fpga_sweep(points, tmp_path / "local", build=sweep_faults.fake_fpga_build)
    assert all(str(tmp_path / "local" / "builds") in r["error"] for r in local)
    out = tmp_path / "dask"
    recs = fpga_sweep(points, out, where=Where(cluster=2), build=sweep_faults.fake_fpga_build)
    assert [r["key"] for r in recs] == [p.key for p in points]
    assert {r["error"] for r in recs} == {"built in None"} and not (out / "builds").exists()
    assert load_results(out) == {r["key"]: r for r in recs}


def test_explore_synthesizes_on_dask_as_it_does_locally(tmp_path):
    """``oasa explore --cluster``: the arrays not in the synthesis cache are synthesized on
    the workers, cached on the client, and give the LUTs a local synthesis gives."""
    from oasa.config import ArrayConfig
    from oasa.fpga import explore

    cfgs = [ArrayConfig(rows=2, cols=2, acc_bits=12, dataflow=d) for d in ("os", "ws")]
    on_dask = explore.array_costs(cfgs, "ecp5", tmp_path / "dask", where=Where(cluster=2))
    assert len(list((tmp_path / "dask").iterdir())) == 2
    assert on_dask == explore.array_costs(cfgs, "ecp5", tmp_path / "local")
    assert on_dask[0] != on_dask[1] and all(luts > 0 for luts, _ in on_dask)


def test_ctrl_c_on_dask_keeps_the_finished_points(digits, tmp_path):
    """Ctrl-C while points run on Dask: the cluster is stopped, every point that arrived is
    in the cache, and the next run computes only the rest."""

    def interrupt(done, total):
        raise KeyboardInterrupt

    points = [p for p in POINTS if p.task.method == "exact"]
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(points, tmp_path, where=Where(cluster=1), workload=digits,
                        progress=interrupt)  # fmt: skip
    saved = [r for r in sweep.load_cache(tmp_path).values() if sweep.finished(r)]
    assert len(saved) == 2  # the first task's two modes
    _, computed = sweep.run_sweep(points, tmp_path, where=Where(jobs=1), workload=digits)
    assert computed == len(points) - len(saved)

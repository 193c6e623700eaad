"""Stand-ins for the sweeps' Dask tests, importable by the worker processes (which unpickle
these functions by name): a point that kills its own worker process on its first try, one
that always raises, and an FPGA build that only reports where it ran."""

from __future__ import annotations

import os
from pathlib import Path

from oasa.quant import sweep


def dies(times: int, marker_dir: str, task: sweep.Task, modes: tuple[str, ...]) -> list[dict]:
    """Evaluate ``task``, but the first ``times`` tries of the P = 12 task end their worker
    process (no exception: the process is gone); a marker file counts the deaths, so that
    a later try computes it."""
    marker = Path(marker_dir) / f"{task.method}-{task.acc_bits}"
    died = int(marker.read_text()) if marker.exists() else 0
    if task.acc_bits == 12 and died < times:
        marker.write_text(str(died + 1))
        os._exit(1)
    return sweep.evaluate_task(task, modes)


def dies_once(marker_dir: str, task: sweep.Task, modes: tuple[str, ...]) -> list[dict]:
    """:func:`dies` once."""
    return dies(1, marker_dir, task, modes)


def always_fails(task: sweep.Task, modes: tuple[str, ...]) -> list[dict]:
    """Evaluate ``task``, but the P = 12 task always raises."""
    if task.acc_bits == 12:
        raise RuntimeError("injected fault at P = 12")
    return sweep.evaluate_task(task, modes)


def worker_state() -> dict:
    """What a worker process runs with: its pid, the thread settings, sys.path."""

    from threadpoolctl import threadpool_info

    return {
        "pid": os.getpid(),
        "env": {
            v: os.environ.get(v)
            for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
        },
        "blas_threads": sorted({p["num_threads"] for p in threadpool_info()}),
    }


def fake_fpga_build(point, build_dir, seed: int) -> dict:
    """An FPGA point's record without the tools: what the board build would return, with
    the folder the build was given (None on a Dask worker: it keeps its own)."""
    return {
        "key": point.key, "board": point.board, "rows": point.rows, "cols": point.cols,
        "acc_bits": point.acc_bits, "multiplier": point.multiplier, "fits": False,
        "error": f"built in {build_dir}",
    }  # fmt: skip

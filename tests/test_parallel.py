"""Worker processes of :func:`shortcutgates.parallel.ordered_map`: results in task order, and workers
that a SIGTERM always stops (the CLI's SIGTERM handler is not inherited)."""

from __future__ import annotations

import os
import signal

import pytest

from shortcutgates.parallel import ordered_map


def _square(x: int) -> int:
    return x * x


def _sigterm_disposition(_: int) -> tuple[int, bool, bool]:
    """(pid, SIGTERM handler is the default, SIGTERM is unblocked) in the process that runs the task."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    return os.getpid(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.SIGTERM not in blocked


class _Handled(Exception):
    pass


def _raise(signum, frame):
    raise _Handled


def test_results_come_in_task_order():
    assert list(ordered_map(_square, range(20), 2, chunksize=3)) == [x * x for x in range(20)]


def test_workers_die_on_sigterm_whatever_the_caller_installed():
    """A worker that inherited a raising SIGTERM handler could lose a SIGTERM sent before CPython's
    after-fork reset and leave ``Pool.terminate`` joining it forever (a CI hang, 3 of 150 runs)."""
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        seen = list(ordered_map(_sigterm_disposition, range(8), 2))
        assert signal.getsignal(signal.SIGTERM) is _raise  # the caller's handler is left as it was
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # and unblocked
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert {pid for pid, _, _ in seen} - {os.getpid()}  # the tasks ran in workers
    assert all(default and unblocked for _, default, unblocked in seen)


def test_a_failing_task_stops_the_pool_and_raises():
    with pytest.raises(ZeroDivisionError):
        list(ordered_map(_reciprocal, [1, 2, 0, 4], 2))


def _reciprocal(x: int) -> float:
    return 1 / x


def _started(x: int) -> tuple[int, float]:
    import time

    return x, time.monotonic()


def test_costliest_tasks_start_first_and_results_keep_task_order():
    """With ``cost`` the workers take the costliest items first (longest-processing-time order) and the
    results still come back in item order."""
    got = list(ordered_map(_started, range(12), 2, cost=lambda x: x))
    assert [x for x, _ in got] == list(range(12))
    started = sorted(got, key=lambda r: r[1])
    assert {x for x, _ in started[:2]} <= {11, 10, 9}  # the first tasks handed out are the costliest
    assert list(ordered_map(_square, range(7), 2, cost=lambda x: -x)) == [x * x for x in range(7)]


def _pool_threads(_: int) -> int:
    from shortcutgates.parallel import pool_threads

    return pool_threads()


def test_a_worker_process_runs_its_own_thread_pools_on_one_thread():
    """The workers fill the cores: inside one, ``pool_threads`` is 1 (the caller keeps its own)."""
    from shortcutgates.parallel import THREADS, pool_threads

    assert list(ordered_map(_pool_threads, range(4), 2)) == [1, 1, 1, 1]
    assert pool_threads() == THREADS and pool_threads(8) == 8

"""Worker processes for work made of independent, seeded tasks (simulated LRGs, calibration seeds).

Each task carries its own seed (``default_rng([seed, 1, index])`` per LRG, ``(cell, seed)`` per
calibration case), so its result does not depend on which process ran it; :func:`ordered_map`
returns results in task order, so what the caller writes is the same bytes for any ``workers``.
Workers are forked (``spawn`` where the platform cannot fork): a forked worker inherits what the
caller loaded and never re-imports the caller's ``__main__`` (under ``spawn``/``forkserver`` a
script without an ``if __name__ == "__main__":`` guard would start workers from every worker).
Each worker runs one BLAS/OpenMP thread. The tasks here use numpy, scipy and scikit-learn only (no
torch, no OpenMP parallel region runs before the fork).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


THREADS = min(4, available_cores())
"""Threads of :func:`thread_map`: the cores this process may use, at most 4."""
_WORKER_PROCESS = False
"""True in a worker of :func:`ordered_map`: the workers already fill the cores, so its own thread pools
run one thread (:func:`pool_threads`)."""


def pool_threads(most: int | None = None) -> int:
    """Threads this process's own thread pools may use: ``most`` (default :data:`THREADS`), or 1 in a
    worker process of :func:`ordered_map`. Results never depend on it (each item is computed on its own)."""
    return 1 if _WORKER_PROCESS else (THREADS if most is None else most)


def thread_map(fn: Callable, items: Iterable, threads: int | None = None) -> list:
    """``[fn(x) for x in items]``, on up to ``threads`` (default :func:`pool_threads`) threads.

    For numpy / BLAS work, which releases the GIL. Each item is computed on its own and the results
    come back in order, so they do not depend on the number of threads.
    """
    items = list(items)
    threads = pool_threads() if threads is None else max(1, int(threads))
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def parse_workers(text: str) -> int:
    """``--workers N``: an integer >= 1 (argparse type)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 (got {text!r})")
    return value


def _die_with_parent(parent: int) -> None:
    """On Linux, have the kernel kill this worker when the process that started it dies, so a killed
    ``simulate``/``calibrate`` leaves no orphan worker (waiting for tasks forever, holding the caller's
    output pipes open). Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _default_sigterm() -> None:
    """A worker dies on SIGTERM (the default), whatever handler the caller installed (the CLI turns
    SIGTERM into an exception; a worker that inherits it can miss a SIGTERM sent before CPython's
    after-fork reset of its signal flags and wait for tasks forever). SIGTERM is blocked from before
    the fork to here (:func:`_sigterm_blocked`), so one sent meanwhile stays pending and kills now."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def _sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in this thread while the pool forks its workers and starts its threads (they
    inherit the mask); a SIGTERM that arrives meanwhile is delivered when the block ends."""
    import signal

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _one_thread(parent, initializer, initargs) -> None:
    global _WORKER_PROCESS
    _WORKER_PROCESS = True
    _default_sigterm()
    _die_with_parent(parent)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    if initializer is not None:
        initializer(*initargs)


def ordered_map(
    fn: Callable,
    items: Iterable,
    workers: int,
    *,
    initializer: Callable | None = None,
    initargs: tuple = (),
    chunksize: int = 1,
    cost: Callable | None = None,
) -> Iterator:
    """``fn(item)`` for every item, in item order, over ``workers`` processes (1: in this process).

    ``fn`` and ``initializer`` must be importable module-level functions (pickled by name). With
    ``workers == 1`` nothing is started and ``initializer`` is not called (the caller's state is used).
    ``cost(item)``: an estimate of an item's run time; the workers then take the costliest items first
    (longest-processing-time order, so no long task is left for one worker at the end) and the results
    still come back in item order (each held until those before it are in).
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    if cost is not None:
        order = sorted(range(len(items)), key=lambda i: -cost(items[i]))  # stable: ties keep item order
        held: dict[int, object] = {}
        at = 0
        for i, result in zip(
            order,
            ordered_map(
                fn, [items[i] for i in order], workers, initializer=initializer, initargs=initargs, chunksize=chunksize
            ),
        ):
            held[i] = result
            while at in held:
                yield held.pop(at)
                at += 1
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.get_context(method)
    with _sigterm_blocked():
        pool = context.Pool(
            min(workers, len(items)), initializer=_one_thread, initargs=(os.getpid(), initializer, initargs)
        )
    try:
        yield from pool.imap(fn, items, chunksize=chunksize)
    except BaseException:  # the caller stopped early, or a task failed: stop the workers now
        pool.terminate()
        raise
    pool.close()  # every result is in: the workers leave on the end-of-tasks sentinel, no signal
    pool.join()

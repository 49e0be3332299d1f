"""Which cores a test worker computes on.

Under pytest-xdist with a worker a core or more, each worker runs on a core of its own,
with the processes it starts (:func:`pin_worker`): the code sizes its thread pools to
the cores it may use, and two workers each running a pool of two threads on two cores
spend their time waiting for each other's threads. A test whose processes mostly wait on
each other (a Ray cluster: its daemons, actors and tasks) runs on every core instead
(:func:`all_cores`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_ALL = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin_worker() -> None:
    """This xdist worker (``gwN``) on core N (modulo the cores), when the workers are at
    least as many as the cores; else nothing."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if worker and workers >= len(_ALL) > 1:
        os.sched_setaffinity(0, {_ALL[int(worker.removeprefix("gw")) % len(_ALL)]})


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """The block (and the processes it starts) may run on every core of the machine."""
    if not _ALL:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _ALL)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)

"""A device that only streams through a StreamingPredictor does not pay for the pool.

``import edgeseq.runtime`` leaves out :class:`StreamPool` (loaded on first access,
PEP 562) and the pool's ``submit`` front: :mod:`concurrent.futures`, :mod:`logging` and
:mod:`threading` cost a device about 1.3 MB of memory. A fresh interpreter loads a model,
steps it and checks ``sys.modules``; then it uses the pool and checks they did load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from _models import zoo

import edgeseq.runtime as rt
from edgeseq.runtime._gate import Gate

REPO = Path(__file__).resolve().parents[1]

# modules a predictor-only process must not import (edgeseq's own, and the stdlib's)
LAZY = [
    "edgeseq.runtime.pool",
    "edgeseq.runtime._front",
    "edgeseq.runtime._batcher",
    "concurrent.futures",
    "logging",
    "threading",
]

SCRIPT = """
import json, sys
import numpy as np
import onnxruntime

lazy = json.loads(sys.argv[2])
before = sorted(m for m in lazy if m in sys.modules)  # numpy's and onnxruntime's doing
import edgeseq.runtime as rt

p = rt.StreamingPredictor(sys.argv[1])
xs = np.sin(np.arange(15, dtype=np.float32)).reshape(5, 3)  # numpy.random loads threading
ys = [p.step(x) for x in xs] + [p.step(xs)]
p.restore(p.snapshot())  # in memory: Snapshot.to_bytes is a zip, and zipfile loads threading
p.reset()
predictor_only = sorted(m for m in lazy if m in sys.modules)

with rt.StreamPool(sys.argv[1], max_streams=2) as pool:
    a = pool.open()
    stepped = pool.step({a: xs[0]})[a]
    pool.reset(a)
    submitted = pool.submit(a, xs[0]).result(timeout=60)
print(json.dumps({
    "before": before,
    "predictor_only": predictor_only,
    "after_pool": sorted(m for m in lazy if m in sys.modules),
    "same": bool(np.array_equal(np.ravel(stepped), np.ravel(submitted))),
    "finite": bool(np.isfinite(np.concatenate([np.ravel(y) for y in ys])).all()),
}))
"""


def _run(model: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), json.dumps(LAZY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_predictor_only_process_does_not_import_the_pool_front() -> None:
    report = _run(zoo.get("lstm"))
    if report["before"]:  # numpy or onnxruntime imported them: edgeseq cannot add them
        print(f"already imported by numpy/onnxruntime: {report['before']}")
    added = sorted(set(report["predictor_only"]) - set(report["before"]))
    assert not added, f"import edgeseq.runtime + load + step imported {added} eagerly"
    # the pool and its submit still load them on use, and submit still works
    assert set(report["after_pool"]) == set(LAZY)
    assert report["same"], "submit and step disagree on the same frame"
    assert report["finite"]


def test_every_public_name_imports_from_the_front_door() -> None:
    for name in rt.__all__:
        assert getattr(rt, name) is not None, name
        assert name in dir(rt), name
    from edgeseq.runtime import StreamPool
    from edgeseq.runtime.pool import StreamPool as direct

    assert StreamPool is direct
    try:
        rt.NoSuchName  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown attribute did not raise AttributeError")


def test_the_gate_makes_its_condition_when_first_contended() -> None:
    gate = Gate()
    assert gate._cond is None  # one thread: no condition, no threading import needed
    inside, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with gate:
            inside.set()
            release.wait(30)
            order.append("holder leaves")

    def waiter() -> None:
        with gate:
            order.append("waiter enters")

    first = threading.Thread(target=holder)
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=waiter)
    second.start()
    for _ in range(3000):  # bounded: until the waiter is parked on the condition
        if gate.waiting:
            break
        threading.Event().wait(0.01)
    assert gate.waiting == 1 and gate._cond is not None
    release.set()
    first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert order == ["holder leaves", "waiter enters"]
    assert gate.free == [True] and gate.waiting == 0

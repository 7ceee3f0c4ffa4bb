"""Tests of ``analysis/engine/numba_overrides.py``: the 0-d ``Alloc`` override is used for 0-d values
only, gives numpy's results for every shape and dtype, and leaves every other ``Alloc`` (and its
errors) to PyTensor."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import models  # noqa: F401  (compile caches before pytensor)
import pytensor
import pytensor.tensor as pt
from analysis.engine.numba_overrides import install_numba_overrides, overrides_installed
from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key
from pytensor.tensor.basic import Alloc

install_numba_overrides()
OUR_KEY_PREFIX = "rajak-alloc-0d"


def _alloc_fn(val, shape):
    out = pt.alloc(val, *shape)
    fn = pytensor.function([val, *[s for s in shape if isinstance(s, pt.TensorVariable)]], out, mode="NUMBA")
    allocs = [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, Alloc)]
    return fn, allocs


def test_install_is_idempotent():
    install_numba_overrides()
    install_numba_overrides()
    assert overrides_installed()


@pytest.mark.parametrize("dtype", ["float64", "int64", "bool"])
@pytest.mark.parametrize("sizes", [(), (3,), (2, 4), (0,), (3, 0, 2)])
def test_0d_value_fills_like_numpy(dtype, sizes):
    val = pt.tensor("v", dtype=dtype, shape=())
    shape = [pt.lscalar(f"n{i}") for i in range(len(sizes))]
    fn, allocs = _alloc_fn(val, shape)
    value = np.asarray(7, dtype=dtype) if dtype != "bool" else np.asarray(True)
    if sizes:
        assert len(allocs) == 1
        _, key = numba_funcify_and_cache_key(allocs[0].op, node=allocs[0])
        from hashlib import sha256

        assert key == sha256(f"{OUR_KEY_PREFIX} 1 {len(sizes)} {dtype}".encode()).hexdigest()
    got = fn(value, *sizes)
    expected = np.full(sizes, value, dtype=dtype)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_other_allocs_keep_pytensor_implementation_and_errors():
    from hashlib import sha256

    v = pt.dvector("v")  # shape (None,): broadcast into the trailing dim, checked at run time
    n = pt.lscalar("n")
    out = pt.alloc(v, 2, n)
    fn = pytensor.function([v, n], out, mode="NUMBA")
    node = next(nd for nd in fn.maker.fgraph.toposort() if isinstance(nd.op, Alloc))
    _, key = numba_funcify_and_cache_key(node.op, node=node)
    assert not any(key == sha256(f"{OUR_KEY_PREFIX} 1 {k} float64".encode()).hexdigest() for k in range(4))
    np.testing.assert_array_equal(fn(np.array([1.0, 2.0, 3.0]), 3), np.tile([1.0, 2.0, 3.0], (2, 1)))
    with pytest.raises(ValueError, match="could not broadcast|[Rr]untime broadcasting"):
        fn(np.array([1.0, 2.0]), 3)


def test_gradient_of_a_sum_uses_it_and_is_right():
    x = pt.dvector("x")
    g = pytensor.grad(pt.sum(x**2) + pt.sum(x), x)
    fn = pytensor.function([x], g, mode="NUMBA")
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(fn(xv), 2 * xv + 1)


# ---------------------------------------------------------------------------------------------
# locked cache saves
# ---------------------------------------------------------------------------------------------


def _race(tmp_path, save):
    """Two savers adding different keys to one empty index, interleaved as numba's race allows.

    A reads the index, then waits; B reads it too and writes the index, then waits; A writes
    its index and data; B writes its data. Unlocked, both pick data file 1 and the index sends
    A's key to B's data. Each wait times out, so a lock that serialises the savers (B cannot
    start until A is done) just runs them one after the other.
    """
    from numba.core.caching import IndexDataCacheFile

    cache = IndexDataCacheFile(str(tmp_path), "race_fn", source_stamp=0)
    a_read, b_indexed = threading.Event(), threading.Event()
    who = threading.local()
    load_index, save_data = IndexDataCacheFile._load_index, IndexDataCacheFile._save_data

    def slow_load_index(self):
        out = load_index(self)
        if who.name == "A":
            a_read.set()
            b_indexed.wait(1.0)
        return out

    def slow_save_data(self, name, data):
        if who.name == "B":
            b_indexed.set()
            time.sleep(0.3)
        save_data(self, name, data)

    def run(name, key, data):
        who.name = name
        if name == "B":
            a_read.wait(1.0)
        save(cache, key, data)

    IndexDataCacheFile._load_index, IndexDataCacheFile._save_data = slow_load_index, slow_save_data
    try:
        threads = [threading.Thread(target=run, args=("A", "key-a", b"data-a")),
                   threading.Thread(target=run, args=("B", "key-b", b"data-b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        IndexDataCacheFile._load_index, IndexDataCacheFile._save_data = load_index, save_data
    return {k: cache.load(k) for k in ("key-a", "key-b")}


def test_unlocked_numba_cache_save_can_mix_entries(tmp_path):
    from numba.core.caching import IndexDataCacheFile

    save = getattr(IndexDataCacheFile.save, "__wrapped__", IndexDataCacheFile.save)
    got = _race(tmp_path, save)
    assert got["key-a"] == b"data-b"  # numba's own save: A's key now loads B's data


def test_locked_numba_cache_save_keeps_entries_apart(tmp_path):
    from numba.core.caching import IndexDataCacheFile

    assert getattr(IndexDataCacheFile.save, "__wrapped__", None) is not None  # installed
    got = _race(tmp_path, IndexDataCacheFile.save)
    assert got == {"key-a": b"data-a", "key-b": b"data-b"}
    assert (tmp_path / ".rajak-cache-save.lock").exists()


def _cache_file(tmp_path):
    from numba.core.caching import IndexDataCacheFile

    return IndexDataCacheFile(str(tmp_path), "lock_fn", source_stamp=0)


def _plain_save():
    from numba.core.caching import IndexDataCacheFile

    return getattr(IndexDataCacheFile.save, "__wrapped__", IndexDataCacheFile.save)


def test_lock_held_elsewhere_times_out_and_saves_unlocked(tmp_path):
    import fcntl

    from analysis.engine.numba_overrides import locked_cache_save

    save = locked_cache_save(_plain_save(), timeout_s=0.3)
    cache = _cache_file(tmp_path)
    holder = os.open(tmp_path / ".rajak-cache-save.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a stopped process holding the lock
    try:
        t0 = time.monotonic()
        save(cache, "k", b"d")
        waited = time.monotonic() - t0
    finally:
        os.close(holder)
    assert 0.25 <= waited < 3.0
    assert cache.load("k") == b"d"


def test_file_system_without_flock_saves_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    from analysis.engine.numba_overrides import locked_cache_save

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    save = locked_cache_save(_plain_save())
    cache = _cache_file(tmp_path)
    save(cache, "k", b"d")
    assert cache.load("k") == b"d"


def test_nested_save_in_one_thread_does_not_deadlock(tmp_path):
    from analysis.engine.numba_overrides import locked_cache_save

    plain = _plain_save()
    from numba.core.caching import IndexDataCacheFile

    inner_cache = IndexDataCacheFile(str(tmp_path), "lock_fn_inner", source_stamp=0)  # same lock file

    def save_that_saves_again(self, key, data):
        plain(self, key, data)
        if key == "outer":
            wrapped(inner_cache, "inner", b"i")  # a nested save, same thread

    wrapped = locked_cache_save(save_that_saves_again, timeout_s=60.0)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (wrapped(_cache_file(tmp_path), "outer", b"o"), done.set()))
    worker.start()
    worker.join(10.0)
    assert done.is_set()
    assert inner_cache.load("inner") == b"i"

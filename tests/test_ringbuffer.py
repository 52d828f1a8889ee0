"""Ring buffer: absolute indexing, wrap-around, holes, bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ringbuffer import RingBuffer


def test_write_read_wraps_and_keeps_indices():
    rb = RingBuffer(fs=10.0, capacity_s=2.0)  # 20 samples
    x = np.arange(55, dtype=np.float32)
    for a in range(0, 55, 7):
        rb.write(a, x[a : a + 7])
    assert rb.end == 55
    assert rb.oldest == 35
    np.testing.assert_array_equal(rb.read(35, 55)[:, 0], x[35:55])
    start, last = rb.latest(1.0)
    assert start == 45
    np.testing.assert_array_equal(last[:, 0], x[45:55])
    with pytest.raises(ValueError, match="not in the buffer"):
        rb.read(10, 20)
    with pytest.raises(ValueError, match="not in the buffer"):
        rb.read(50, 60)


def test_missing_samples_become_marked_holes_not_shifts():
    rb = RingBuffer(fs=100.0, capacity_s=5.0)
    rb.write(0, np.ones(100))
    rb.write(150, 2 * np.ones(100))  # 50 samples never arrived
    assert rb.holes == [(100, 150)]
    assert rb.samples_missing == 50
    seg = rb.read(90, 160)[:, 0]
    assert np.all(seg[:10] == 1)
    assert np.all(np.isnan(seg[10:60]))
    assert np.all(seg[60:] == 2)


def test_nan_runs_are_holes_and_old_holes_expire():
    rb = RingBuffer(fs=10.0, capacity_s=1.0)
    x = np.zeros(8)
    x[2:4] = np.nan
    x[6] = np.nan
    rb.write(0, x)
    assert rb.holes == [(2, 4), (6, 7)]
    rb.write(8, np.zeros(20))
    assert rb.holes == []


def test_overlap_and_bad_shapes_raise():
    rb = RingBuffer(fs=10.0, capacity_s=1.0, n_channels=2)
    rb.write(5, np.zeros((3, 2)))
    assert rb.first == 5
    with pytest.raises(ValueError, match="overlaps"):
        rb.write(6, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        rb.write(8, np.zeros(3))
    with pytest.raises(Exception):
        RingBuffer(fs=0.0)
    with pytest.raises(Exception):
        RingBuffer(fs=360.0, capacity_s=0.1)


def test_huge_gap_bounded_memory():
    rb = RingBuffer(fs=360.0, capacity_s=30.0)
    rb.write(0, np.ones(10))
    rb.write(10_000_000, np.ones(10))
    assert rb.end == 10_000_010
    assert rb._data.shape[0] == rb.capacity
    assert np.isnan(rb.read(rb.end - 20, rb.end - 10)).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(5, 60))
def test_any_chunking_reads_back_the_tail(sizes, cap):
    fs = 10.0
    rb = RingBuffer(fs=fs, capacity_s=float(cap) / fs if cap >= 10 else 1.0)
    total = sum(sizes)
    x = np.random.default_rng(0).normal(size=total).astype(np.float32)
    a = 0
    for n in sizes:
        rb.write(a, x[a : a + n])
        a += n
    lo = rb.oldest
    np.testing.assert_array_equal(rb.read(lo, total)[:, 0], x[lo:total])

"""Replaying records over ZeroMQ: exactness, losslessness, pacing, loops, the CLI."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import wfdb

from replay.errors import ConfigError
from replay.publisher import Publisher, replay
from replay.receiver import BadMessage, Receiver, receive_stream
from replay.wfdb_source import load_record
from replay.wire import AnnotationBatch, Control, Gap, SampleChunk

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- helpers


def _consume(rx, events, timeout_s, slow=None, batch_max=1000):
    """Poll ``rx`` into ``events`` until an end-of-stream control or ``timeout_s``.

    ``slow(first)`` is called after each non-empty batch (at most ``batch_max``
    messages), ``first`` true the first time.
    """
    deadline = time.monotonic() + timeout_s
    first = True
    while time.monotonic() < deadline:
        batch = rx.poll(0.1, max_messages=batch_max)
        for ev in batch:
            events.append((time.monotonic(), ev))
            if isinstance(ev, Control) and ev.eos:
                return
        if batch and slow is not None:
            slow(first)
            first = False


def run_replay(endpoint, record, *, lossless=True, sndhwm=10_000, rcvhwm=100_000,
               slow=None, batch_max=1000, timeout_s=60.0, **kwargs):
    """Replay ``record`` to a Receiver polled in another thread.

    Returns (PublishStats, list of (arrival time, event), Receiver stats).
    """
    events: list = []
    stream = kwargs.get("stream") or record.name
    with Publisher(endpoint, lossless=lossless, sndhwm=sndhwm) as pub:
        rx = Receiver(endpoint, rcvhwm=rcvhwm)
        try:
            th = threading.Thread(target=_consume, args=(rx, events, timeout_s, slow, batch_max),
                                  daemon=True)
            assert pub.wait_for_subscribers(stream, 1, timeout_s=10), "subscriber never arrived"
            th.start()
            stats = replay(record, pub, **kwargs)
            th.join(timeout_s + 5)
            assert not th.is_alive(), "receiver thread did not finish"
        finally:
            rx.close()
    return stats, events, rx.stats


def _of(events, cls):
    return [ev for _, ev in events if isinstance(ev, cls)]


def _assemble(chunks):
    """Concatenate chunks checked to be contiguous from stream index 0."""
    pos = 0
    for c in chunks:
        assert c.start == pos, f"chunk starts at {c.start}, expected {pos}"
        pos = c.stop
    return np.concatenate([c.data for c in chunks]) if chunks else np.zeros((0, 0))


@pytest.fixture(scope="module")
def rec100(mitdb):
    return load_record("100", mitdb)


@pytest.fixture
def cli_env(mitdb):
    env = dict(os.environ)
    env["ECG_DATA_DIR"] = str(mitdb)
    env.pop("PYTHONWARNINGS", None)
    return env


CLI = [sys.executable, "-m", "replay.cli"]


def run_cli(args, env, timeout=60):
    return subprocess.run(
        CLI + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _ids(obj) -> str:
    return str(obj)


# --------------------------------------------------------------------------- whole record


def test_whole_record_is_sample_exact(mitdb, rec100, ipc_endpoint):
    box = {}
    with Publisher(ipc_endpoint, lossless=True) as pub:
        rx = Receiver(ipc_endpoint, streams=["100"])
        try:
            th = threading.Thread(
                target=lambda: box.setdefault("r", receive_stream(rx, idle_timeout_s=10)),
                daemon=True,
            )
            th.start()
            assert pub.wait_for_subscribers("100", 1, timeout_s=10)
            stats = replay(rec100, pub, speed=math.inf)
            th.join(60)
            assert not th.is_alive()
        finally:
            rx.close()
    got = box["r"]
    ref = wfdb.rdrecord(str(mitdb / "100"))
    ann = wfdb.rdann(str(mitdb / "100"), "atr")

    assert got.eos
    assert got.stream == "100"
    assert got.fs == 360.0
    assert got.channels == ("MLII", "V5")
    assert got.signal.shape == ref.p_signal.shape == (650000, 2)
    assert not np.isnan(got.signal).any()
    assert np.abs(got.signal - ref.p_signal).max() <= 1e-4
    s = got.stats
    assert s.missing_messages == 0 and s.missing_samples == 0 and s.gaps == 0
    assert s.bad_messages == 0
    assert s.samples == 650000
    assert s.sample_messages == stats.sample_messages == math.ceil(650000 / 36)
    assert "100" in s.ended
    np.testing.assert_array_equal(got.ann_sample, ann.sample)
    assert got.ann_symbol == list(ann.symbol)
    assert got.ann_aux == [a.rstrip("\x00") for a in ann.aux_note]
    assert len(got.ann_symbol) == 2274
    assert stats.samples == 650000
    assert stats.max_lag_s == 0.0 and stats.final_drift_s == 0.0
    assert stats.x_realtime > 20  # far faster than real time


def test_lossless_with_slow_receiver_loses_nothing(rec100, ipc_endpoint):
    rec = load_record(rec100.path, duration_s=300)  # 5 min, 1200 messages of 0.25 s
    sleeps = []

    def slow(first):
        sleeps.append(1)
        time.sleep(0.003)

    stats, events, rxs = run_replay(
        ipc_endpoint, rec, lossless=True, sndhwm=5, rcvhwm=5, slow=slow, batch_max=4,
        speed=math.inf, chunk_s=0.25,
    )
    chunks = _of(events, SampleChunk)
    assert not _of(events, Gap) and not _of(events, BadMessage)
    assert rxs.missing_messages == 0 and rxs.bad_messages == 0
    assert _of(events, Control)[-1].eos
    data = _assemble(chunks)
    np.testing.assert_array_equal(data, rec.signal)
    assert len(chunks) == stats.sample_messages == 1200
    ann = _of(events, AnnotationBatch)
    np.testing.assert_array_equal(np.concatenate([a.sample for a in ann]), rec.annotations.sample)
    # the receiver really was the bottleneck: the publisher had to wait for it
    assert len(sleeps) >= 1200 / 4 * 0.9
    assert stats.elapsed_s >= 0.5 * len(sleeps) * 0.003


def test_same_slow_receiver_loses_messages_without_lossless_mode(rec100, ipc_endpoint):
    """Contrast to the lossless test: without back-pressure the slow receiver misses data."""
    rec = load_record(rec100.path, duration_s=300)
    stats, events, rxs = run_replay(
        ipc_endpoint, rec, lossless=False, sndhwm=5, rcvhwm=5, batch_max=4,
        slow=lambda first: time.sleep(0.003), speed=math.inf, chunk_s=0.25, timeout_s=2,
    )
    assert stats.sample_messages == 1200
    assert len(_of(events, SampleChunk)) < 1200
    assert stats.elapsed_s < 1.0  # the publisher never waited


def test_lossy_stalled_receiver_reports_gaps(rec100, ipc_endpoint):
    rec = load_record(rec100.path, duration_s=300)

    def stall(first):
        if first:
            time.sleep(1.5)  # ~500 kB arrive meanwhile: more than the HWMs and socket buffers

    # 100x real time in 0.5 s chunks: ~400 messages/s, which the receiver easily
    # keeps up with once the stall is over, so the tail and the 'end' get through
    stats, events, rxs = run_replay(
        ipc_endpoint, rec, lossless=False, sndhwm=10, rcvhwm=10, slow=stall,
        speed=100, chunk_s=0.5, timeout_s=15,
    )
    gaps = _of(events, Gap)
    chunks = _of(events, SampleChunk)
    assert gaps, "a stalled lossy subscriber must see gaps"
    assert rxs.missing_messages > 0
    assert rxs.gaps == len(gaps)
    assert rxs.missing_messages == sum(g.missing_messages for g in gaps)
    ecg_gaps = [g for g in gaps if g.kind == "ecg"]
    assert ecg_gaps
    # the end of the stream got through, so every lost sample message is counted
    assert _of(events, Control)[-1].eos
    assert len(chunks) + sum(g.missing_messages for g in ecg_gaps) == stats.sample_messages
    assert sum(g.missing_samples for g in ecg_gaps) == rec.signal.shape[0] - sum(c.n for c in chunks)
    for g in ecg_gaps:
        assert g.missing_samples == 180 * g.missing_messages  # 0.5 s chunks at 360 Hz
    # what did arrive is exact, in place
    for c in chunks:
        np.testing.assert_array_equal(c.data, rec.signal[c.start : c.stop])


# --------------------------------------------------------------------------- pacing


@pytest.mark.parametrize("speed,expected", [(1.0, 3.0), (4.0, 0.75)], ids=_ids)
def test_real_time_pacing(rec100, ipc_endpoint, speed, expected):
    rec = load_record(rec100.path, start_s=100, duration_s=3)
    t_start = time.monotonic()
    stats, events, rxs = run_replay(ipc_endpoint, rec, lossless=False, speed=speed, chunk_s=0.1)
    wall = time.monotonic() - t_start
    assert expected - 0.01 <= stats.elapsed_s <= expected + 0.15
    assert stats.final_drift_s <= 0.1
    assert wall >= expected
    assert stats.signal_s == pytest.approx(3.0)
    assert speed * expected / (expected + 0.15) <= stats.x_realtime <= speed * 1.01
    chunks = _of(events, SampleChunk)
    assert len(chunks) == 30 and rxs.missing_messages == 0
    np.testing.assert_array_equal(_assemble(chunks), rec.signal)
    # each chunk leaves when its last sample is due: send times follow the schedule
    t = np.array([c.header["t"] for c in chunks])
    due = (np.arange(30) + 1) * 0.1 / speed
    lateness = (t - t[0]) - (due - due[0])
    assert lateness.min() >= -0.1
    assert np.median(np.abs(lateness)) <= 0.05
    assert lateness.max() <= 0.25
    # and arrive paced, not in one burst
    arrivals = np.array([a for a, ev in events if isinstance(ev, SampleChunk)])
    assert arrivals[-1] - arrivals[0] >= 0.9 * (due[-1] - due[0])


# --------------------------------------------------------------------------- loop, chunks


def test_loop_gives_a_continuous_stream(rec100, ipc_endpoint):
    rec = load_record(rec100.path, duration_s=2)  # 720 samples, annotations 18, 77, 370, 662
    stats, events, rxs = run_replay(
        ipc_endpoint, rec, speed=math.inf, loop=True, max_loops=2, chunk_s=0.1
    )
    chunks = _of(events, SampleChunk)
    assert len(chunks) == 40
    np.testing.assert_array_equal(_assemble(chunks), np.vstack([rec.signal, rec.signal]))
    assert [c.seq for c in chunks] == list(range(40))
    assert rxs.missing_messages == 0 and rxs.gaps == 0 and rxs.bad_messages == 0
    ann = _of(events, AnnotationBatch)
    a = rec.annotations.sample
    np.testing.assert_array_equal(np.concatenate([b.sample for b in ann]), np.concatenate([a, a + 720]))
    assert sum((b.symbol for b in ann), ()) == tuple(rec.annotations.symbol) * 2
    ctl = _of(events, Control)
    assert [c.event for c in ctl] == ["start", "end"]
    assert ctl[0].header["loop"] is True and ctl[0].header["n_samples"] == 720
    assert ctl[1].header["samples"] == 1440 and ctl[1].header["interrupted"] is False
    assert stats.samples == 1440


@pytest.mark.parametrize("chunk_s,per_msg", [(0.001, 1), (0.05, 18), (1.0, 360), (7.0, 2520), (10.0, 3600)],
                         ids=_ids)
def test_chunk_sizes(rec100, ipc_endpoint, chunk_s, per_msg):
    rec = load_record(rec100.path, start_s=10, duration_s=20)  # 7200 samples
    stats, events, rxs = run_replay(ipc_endpoint, rec, speed=math.inf, chunk_s=chunk_s)
    chunks = _of(events, SampleChunk)
    sizes = [c.n for c in chunks]
    n_msgs = math.ceil(7200 / per_msg)
    assert len(chunks) == n_msgs == stats.sample_messages
    assert sizes[:-1] == [per_msg] * (n_msgs - 1)
    assert sizes[-1] == 7200 - per_msg * (n_msgs - 1)
    np.testing.assert_array_equal(_assemble(chunks), rec.signal)
    assert rxs.missing_messages == 0
    # each annotation arrives right after the chunk holding it
    order = [ev for _, ev in events if isinstance(ev, (SampleChunk, AnnotationBatch))]
    for i, ev in enumerate(order):
        if isinstance(ev, AnnotationBatch):
            prev = order[i - 1]
            assert isinstance(prev, SampleChunk)
            assert ((ev.sample >= prev.start) & (ev.sample < prev.stop)).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"speed": 0}, {"speed": -1}, {"speed": math.nan}, {"speed": -math.inf},
     {"chunk_s": 0}, {"chunk_s": 0.0005}, {"chunk_s": 11}, {"stream": "bad name"}],
    ids=_ids,
)
def test_replay_rejects_bad_arguments(rec100, ipc_endpoint, kwargs):
    rec = load_record(rec100.path, duration_s=1)
    with Publisher(ipc_endpoint) as pub:
        with pytest.raises((ConfigError, ValueError)):
            replay(rec, pub, **kwargs)
        assert pub.stats.messages == 0


def test_stop_event_ends_replay_with_eos(rec100, ipc_endpoint):
    rec = load_record(rec100.path, duration_s=60)
    stop = threading.Event()

    def stop_soon(first):
        if first:
            threading.Timer(0.5, stop.set).start()

    t0 = time.monotonic()
    stats, events, rxs = run_replay(
        ipc_endpoint, rec, lossless=False, speed=1, stop=stop, slow=stop_soon
    )
    assert time.monotonic() - t0 < 5
    end = _of(events, Control)[-1]
    assert end.eos and end.header["interrupted"] is True
    assert end.header["samples"] == stats.samples == sum(c.n for c in _of(events, SampleChunk))
    assert 0 < stats.samples < rec.signal.shape[0]


# --------------------------------------------------------------------------- the CLI


def test_cli_help_and_version(cli_env):
    r = run_cli(["--help"], cli_env)
    assert r.returncode == 0
    assert "ecg-replay" in r.stdout and "--speed" in r.stdout and "--wait-subscribers" in r.stdout
    r = run_cli(["--version"], cli_env)
    assert r.returncode == 0
    assert r.stdout.startswith("ecg-replay ")
    from replay import __version__

    assert __version__ in r.stdout


def test_cli_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "ecg-replay")
    if not os.path.exists(script):
        pytest.skip("ecg-replay script not installed beside the interpreter")
    r = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("ecg-replay ")


def test_cli_replays_a_window_exactly(mitdb, cli_env, ipc_endpoint):
    rx = Receiver(ipc_endpoint)
    box = {}
    th = threading.Thread(
        target=lambda: box.setdefault("r", receive_stream(rx, idle_timeout_s=20)), daemon=True
    )
    th.start()
    try:
        r = run_cli(
            ["100", "--endpoint", ipc_endpoint, "--speed", "max", "--wait-subscribers", "1",
             "--wait-timeout", "20", "--start", "60", "--duration", "30", "--channel", "V5",
             "--stream", "s100", "--chunk", "0.25", "--stats"],
            cli_env,
        )
        th.join(30)
        assert not th.is_alive()
    finally:
        rx.close()
    assert r.returncode == 0, r.stderr
    assert "messages" in r.stdout and "real time" in r.stdout
    got = box["r"]
    assert got.eos and got.stream == "s100" and got.channels == ("V5",)
    ref = wfdb.rdrecord(str(mitdb / "100"), sampfrom=21600, sampto=32400, channels=[1]).p_signal
    assert got.signal.shape == ref.shape == (10800, 1)
    assert np.abs(got.signal - ref).max() <= 1e-4
    assert got.stats.missing_messages == 0 and got.stats.bad_messages == 0
    ann = wfdb.rdann(str(mitdb / "100"), "atr")
    keep = np.flatnonzero((ann.sample >= 21600) & (ann.sample < 32400))
    assert len(keep) > 30
    np.testing.assert_array_equal(got.ann_sample, ann.sample[keep] - 21600)
    assert got.ann_symbol == [ann.symbol[i] for i in keep]


def test_cli_sigterm_ends_cleanly_with_eos(cli_env, ipc_endpoint):
    rx = Receiver(ipc_endpoint)
    proc = subprocess.Popen(
        CLI + ["100", "--endpoint", ipc_endpoint, "--speed", "1", "--wait-subscribers", "1",
               "--wait-timeout", "30"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        events = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(isinstance(e, SampleChunk) for e in events):
            events += rx.poll(0.1)
            assert proc.poll() is None, proc.communicate()
        assert any(isinstance(e, SampleChunk) for e in events), "no samples from ecg-replay"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(
            isinstance(e, Control) and e.eos for e in events
        ):
            events += rx.poll(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        rx.close()
    assert proc.returncode == 0, err
    assert took < 2.5
    assert "Traceback" not in err
    ends = [e for e in events if isinstance(e, Control) and e.eos]
    assert len(ends) == 1
    assert ends[0].stream == "100" and ends[0].header["interrupted"] is True
    received = sum(e.n for e in events if isinstance(e, SampleChunk))
    assert ends[0].header["samples"] == received  # nothing lost at real time
    assert 0 < received < 650000


STOP_WHILE_LOCKED = """
import os, signal, threading
from replay import _cli
stop = threading.Event()
_cli.install_stop_handlers(stop)
with stop._cond:  # where the main thread is inside stop.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # bytecodes, so Python runs the handler here
        pass
print("set" if stop.wait(5) else "not set")
"""


def test_stop_signal_inside_stop_wait_does_not_deadlock():
    # a SIGTERM handled while the main thread held the event's lock hung
    # ecg-replay (Event.set waited for a lock its own thread held)
    r = subprocess.run([sys.executable, "-c", STOP_WHILE_LOCKED], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "set"


def _one_error_line(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith("ecg-replay: error: ")
    assert errors[0] == lines[-1]
    for n in needles:
        assert n.lower() in errors[0].lower(), errors[0]
    return lines


# refusal tests: ecg-replay must reject every-interface endpoints without --bind (nothing binds)
EVERY_INTERFACE = ("0.0.0.0", "*")

BAD_ARGS = [
    (["--speed", "0"], ["speed"], True),
    (["--speed", "abc"], ["speed", "abc"], True),
    (["--speed", "-2"], ["speed"], True),
    (["--chunk", "0"], ["seconds"], True),
    (["--wait-subscribers", "x"], ["wait-subscribers"], True),
    (["--wait-subscribers", "-1"], ["wait-subscribers", "-1"], False),
    (["--endpoint", f"tcp://{EVERY_INTERFACE[0]}:5555"], [EVERY_INTERFACE[0], "--bind"], False),
    (["--endpoint", f"tcp://{EVERY_INTERFACE[1]}:5555"], ["--bind"], False),
    (["--endpoint", "udp://127.0.0.1:5555"], ["udp"], False),
    (["--endpoint", "tcp://127.0.0.1:99999"], ["port"], False),
    (["--channel", "V9"], ["V9"], False),
    (["--start", "5000"], ["5000"], False),
]


@pytest.mark.parametrize("extra,needles,is_usage", BAD_ARGS, ids=[" ".join(a[0]) for a in BAD_ARGS])
def test_cli_bad_arguments(cli_env, extra, needles, is_usage):
    r = run_cli(["100"] + extra, cli_env)
    lines = _one_error_line(r, *needles)
    if not is_usage:
        assert len(lines) == 1, r.stderr  # project errors: exactly one line
    assert r.stdout == ""


@pytest.mark.parametrize("record", ["nosuch", "bogus:1", "zmq:tcp://127.0.0.1:5555"])
def test_cli_bad_record(cli_env, tmp_path, record):
    r = run_cli([record, "--data-dir", tmp_path], cli_env)
    lines = _one_error_line(r, record.split(":")[0])
    assert len(lines) == 1


def test_cli_no_subscriber_times_out(cli_env, ipc_endpoint):
    t0 = time.monotonic()
    r = run_cli(["100", "--endpoint", ipc_endpoint, "--wait-subscribers", "1",
                 "--wait-timeout", "0.5", "--speed", "max"], cli_env)
    assert time.monotonic() - t0 < 20
    lines = _one_error_line(r, "subscriber", "0.5")
    assert any("waiting for 1 subscriber" in ln for ln in lines[:-1])


def test_cli_simulator(cli_env, ipc_endpoint):
    rx = Receiver(ipc_endpoint)
    events = []
    th = threading.Thread(target=_consume, args=(rx, events, 60), daemon=True)
    th.start()
    try:
        r = run_cli(["sim:72", "--endpoint", ipc_endpoint, "--speed", "max", "--duration", "10",
                     "--wait-subscribers", "1", "--wait-timeout", "60"], cli_env, timeout=90)
        th.join(20)
        assert not th.is_alive()
    finally:
        rx.close()
    assert r.returncode == 0, r.stderr
    ctl = _of(events, Control)
    assert ctl[0].event == "start" and ctl[0].stream == "sim72"
    assert ctl[0].header["record"] == "sim72" and ctl[0].header["fs"] == 360.0
    assert ctl[-1].eos
    chunks = _of(events, SampleChunk)
    assert {c.stream for c in chunks} == {"sim72"}
    data = _assemble(chunks)
    assert data.shape == (3600, len(chunks[0].channels))
    assert np.isfinite(data).all() and data.std() > 0.05  # an ECG, not silence
    ann = _of(events, AnnotationBatch)
    symbols = [s for b in ann for s in b.symbol]
    samples = np.concatenate([b.sample for b in ann])
    assert set(symbols) == {"N"}
    assert 10 <= len(symbols) <= 14  # 72 bpm for 10 s
    assert (np.diff(samples) > 0).all() and samples[0] >= 0 and samples[-1] < 3600
    rr = np.diff(samples) / 360.0
    assert np.median(rr) == pytest.approx(60 / 72, rel=0.1)


def test_subscriber_count_ignores_other_streams_with_a_common_prefix(ipc_endpoint):
    from replay.publisher import Publisher
    from replay.receiver import Receiver

    with Publisher(ipc_endpoint) as pub, Receiver(ipc_endpoint, ["10"]):
        deadline = time.monotonic() + 5
        while pub.subscriber_count("10") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pub.subscriber_count("10") == 1
        assert pub.subscriber_count("100") == 0
        with Receiver(ipc_endpoint):  # every stream
            assert pub.wait_for_subscribers("100", 1, timeout_s=5)
            assert pub.subscriber_count("10") == 2

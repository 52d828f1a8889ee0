"""StreamMonitor: beats, holes, lead-off and status events on synthetic streams."""

import numpy as np
import pytest

from monitor.pipeline import StreamMonitor, resolve_channel
from replay.errors import ConfigError
from replay.sim import simulate_record
from replay.wire import Control, Gap, SampleChunk
from trainer.ec57 import match_beats


@pytest.fixture(scope="module")
def sim():
    return simulate_record("sim:72,duration=60,seed=3,noise=0.02")


def chunk(start, data, fs=360.0, channels=("SIM",)):
    data = np.asarray(data, np.float32).reshape(len(data), -1)
    return SampleChunk("s", start, start, fs, tuple(channels), data, bool(np.isnan(data).any()))


def run(mon, x, size, start=0):
    events = []
    for a in range(0, len(x), size):
        events += mon.handle(chunk(start + a, x[a : a + size]))
    return events


def beats_of(events):
    return [e for e in events if e["type"] == "beat"]


def test_beats_match_reference_and_schema(sim):
    mon = StreamMonitor("s", sim.fs, sim.channels)
    events = run(mon, sim.signal[:, 0], 36)
    assert events[0]["type"] == "status" and events[0]["status"] == "connected"
    beats = beats_of(events)
    m = match_beats(sim.annotations.sample, np.array([b["sample"] for b in beats]), sim.fs)
    assert m.tp >= 0.99 * len(sim.annotations.sample)
    assert len(m.test_unmatched) <= 1
    for b in beats:
        assert set(b) >= {"type", "stream", "sample", "time", "rr", "hr", "label", "latency"}
        assert b["time"] == pytest.approx(b["sample"] / sim.fs, abs=1e-4)
        assert b["label"] == "?"
    hr = [b["hr"] for b in beats if b["hr"] is not None]
    assert np.median(hr) == pytest.approx(72, abs=4)
    assert beats[0]["rr"] is None and beats[5]["rr"] == pytest.approx(60 / 72, rel=0.15)


@pytest.mark.parametrize("size", [7, 360, 21600])
def test_same_beats_whatever_the_chunking(sim, size):
    ref = StreamMonitor("s", sim.fs, sim.channels)
    run(ref, sim.signal[:, 0], 36)
    mon = StreamMonitor("s", sim.fs, sim.channels)
    run(mon, sim.signal[:, 0], size)
    assert mon.beats == ref.beats


def test_gap_is_a_hole_not_a_shift(sim):
    fs = sim.fs
    x = sim.signal[:, 0]
    mon = StreamMonitor("s", fs, sim.channels)
    a, b = int(20 * fs), int(23 * fs)  # 3 s never arrive
    events = run(mon, x[:a], 36)
    events += mon.handle(Gap("s", "ecg", 83, b - a, a))
    events += run(mon, x[b:], 36, start=b)
    gaps = [e for e in events if e["type"] == "gap"]
    assert len(gaps) == 1 and gaps[0]["missing_samples"] == b - a and gaps[0]["sample"] == a
    beats = np.array([e["sample"] for e in beats_of(events)])
    assert not np.any((beats > a) & (beats < b)), "no beat inside the hole"
    ref = sim.annotations.sample
    after = ref[(ref > b + 2 * fs)]
    m = match_beats(after, beats[beats > b + 2 * fs], fs)
    assert m.tp == len(after), "beats after the hole sit where they belong (not shifted)"
    first_after = [e for e in beats_of(events) if e["sample"] > b][0]
    assert first_after["rr"] is None, "no RR interval across a hole"
    assert first_after["sample"] - b < 2 * fs + fs, "recovers within ~2 s"


def test_nan_from_source_reports_lead_off_then_lead_on(sim):
    fs = sim.fs
    x = sim.signal[:, 0].copy()
    a, b = int(20 * fs), int(25 * fs)
    x[a:b] = np.nan
    mon = StreamMonitor("s", fs, sim.channels)
    events = run(mon, x, 36)
    status = [(e["status"], e["sample"]) for e in events if e["type"] == "status"]
    names = [s for s, _ in status]
    assert "lead-off" in names and "lead-on" in names
    off = dict(status)["lead-off"]
    assert abs(off - a) < fs
    beats = np.array([e["sample"] for e in beats_of(events)])
    assert not np.any((beats >= a) & (beats < b))


def test_flat_line_reports_lead_off_and_no_beats(sim):
    fs = sim.fs
    x = sim.signal[:, 0].copy()
    a, b = int(20 * fs), int(30 * fs)
    x[a:b] = 0.0
    mon = StreamMonitor("s", fs, sim.channels)
    events = run(mon, x, 36)
    off = [e for e in events if e.get("status") == "lead-off"]
    assert off and off[0]["reason"].startswith("flat")
    beats = np.array([e["sample"] for e in beats_of(events)])
    assert not np.any((beats > a + 0.3 * fs) & (beats < b))
    assert np.any(beats > b + 2 * fs)


def test_end_is_reported_once(sim):
    mon = StreamMonitor("s", sim.fs, sim.channels)
    run(mon, sim.signal[:3600, 0], 360)
    ev = mon.handle(Control("s", 1, "end", True, {"interrupted": False}))
    assert ev[0]["status"] == "end" and ev[0]["beats"] == len(mon.beats)
    assert mon.handle(Control("s", 2, "end", True, {})) == []


def test_format_change_mid_stream_is_an_error(sim):
    mon = StreamMonitor("s", sim.fs, sim.channels)
    mon.handle(chunk(0, sim.signal[:360, 0]))
    with pytest.raises(ConfigError, match="changed format"):
        mon.handle(chunk(360, sim.signal[360:720, 0], fs=250.0))


def test_resolve_channel():
    assert resolve_channel(None, ["MLII", "V5"], "r") == 0
    assert resolve_channel("V5", ["MLII", "V5"], "r") == 1
    assert resolve_channel("mlii", ["MLII", "V5"], "r") == 0
    assert resolve_channel("1", ["MLII", "V5"], "r") == 1
    assert resolve_channel(-1, ["MLII", "V5"], "r") == 1
    with pytest.raises(ConfigError, match="no channel 'V1'; it has MLII, V5"):
        resolve_channel("V1", ["MLII", "V5"], "r")
    with pytest.raises(ConfigError, match="out of range"):
        resolve_channel(2, ["MLII", "V5"], "r")

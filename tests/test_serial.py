"""Serial sensors: parsers, a pseudo-terminal AD8232 emulator, reconnects, the bridge CLI.

The emulator streams MIT-BIH record 100 as AD8232-style ASCII
(``round(mV * gain + baseline)``, one line per sample) on a pseudo-terminal
at the record's own rate; :class:`replay.serial_source.SerialSource` reads
it, publishes over ipc, and a :class:`replay.receiver.Receiver` gets it
back, as a monitor on another machine would.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import tty

import numpy as np
import pytest

from replay.errors import ConfigError, SourceError
from replay.receiver import Receiver
from replay.serial_source import (
    AsciiParser,
    BinaryParser,
    SerialOptions,
    SerialSource,
    binary_frame_bytes,
    encode_binary_frames,
    fletcher16,
    start_serial_publisher,
    stream_name_for_port,
)
from replay.wire import Control, Gap, SampleChunk

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals (POSIX)")

GAIN = 341.0
BASELINE = 512.0
FS = 360.0


# --------------------------------------------------------------------------- emulator


class PtyDevice:
    """A serial device on a pseudo-terminal, reachable at ``path`` (a symlink).

    ``unplug()`` closes the terminal and removes the link (the device node
    disappears, as /dev/ttyUSB0 does); ``replug()`` makes a new terminal and
    points the link at it.
    """

    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "ttyECG")
        self.master: int | None = None
        self.slave: int | None = None
        self.lock = threading.Lock()
        self.replug()

    def replug(self) -> None:
        with self.lock:
            m, s = os.openpty()
            tty.setraw(s)
            tmp = self.path + ".new"
            os.symlink(os.ttyname(s), tmp)
            os.replace(tmp, self.path)
            self.master, self.slave = m, s

    def unplug(self) -> None:
        with self.lock:
            os.unlink(self.path)
            for fd in (self.master, self.slave):
                if fd is not None:
                    os.close(fd)
            self.master = self.slave = None

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.master is not None:
                os.write(self.master, data)

    def close(self) -> None:
        if self.master is not None:
            self.unplug()


def play(device: PtyDevice, lines: list[bytes], fs: float, actions=None, burst_s: float = 0.01) -> threading.Thread:
    """Write ``lines[k]`` at time k / fs (bursts every ``burst_s``) from a thread.

    ``actions`` maps a sample index to a callable run when the stream gets
    there (unplug, replug); the device's clock runs on while it is unplugged.
    """
    actions = dict(actions or {})

    def body() -> None:
        t0 = time.monotonic()
        k = 0
        while k < len(lines):
            now = time.monotonic()
            upto = min(len(lines), int((now - t0) * fs) + 1)
            for idx in sorted(a for a in actions if k <= a < upto):
                device.write(b"".join(lines[k:idx]))
                k = idx
                actions.pop(idx)()
            device.write(b"".join(lines[k:upto]))
            k = upto
            time.sleep(burst_s)

    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th


def ascii_lines(adc: np.ndarray) -> list[bytes]:
    return [b"%d\n" % v for v in adc.tolist()]


def collect(rx: Receiver, until, timeout_s: float) -> list:
    """Poll ``rx`` until ``until()`` is true (then drain 0.3 s) or ``timeout_s`` passes."""
    events = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events.extend(rx.poll(0.05, 100_000))
        if until():
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                events.extend(rx.poll(0.05, 100_000))
            break
    return events


def assemble(events) -> tuple[int, np.ndarray]:
    """(first index, signal with NaN in holes) of the sample chunks in ``events``."""
    chunks = [e for e in events if isinstance(e, SampleChunk)]
    assert chunks, "no samples received"
    first = chunks[0].start
    n = chunks[-1].stop - first
    out = np.full((n, chunks[0].data.shape[1]), np.nan, np.float32)
    for c in chunks:
        out[c.start - first : c.stop - first] = c.data
    return first, out


@pytest.fixture
def device(tmp_path):
    dev = PtyDevice(tmp_path)
    yield dev
    dev.close()


@pytest.fixture(scope="module")
def record100(mitdb):
    from replay.wfdb_source import load_record

    return load_record(str(mitdb / "100"), duration_s=40.0)


def _start(device, ipc_endpoint, options, statuses, **kw):
    stop = threading.Event()
    th = start_serial_publisher(device.path, options, ipc_endpoint, stop=stop,
                                on_status=statuses.append, stream="ecg1", **kw)
    rx = Receiver(ipc_endpoint)
    return stop, th, rx


def _finish(stop, th, rx) -> list:
    """Stop the source; return what arrived meanwhile (the end message)."""
    stop.set()
    th.join(5.0)
    assert not th.is_alive()
    assert th.error is None, th.error
    events = collect(rx, lambda: True, 2.0)
    rx.close()
    return events


# --------------------------------------------------------------------------- parsers


def test_ascii_parser_counts_and_skips_bad_input():
    p = AsciiParser(gain_adc_per_mv=GAIN, baseline_adc=BASELINE)
    data = b"7\n" + b"512\r\n853\n\n!\nhello\n\xff\xfe12\n99999\n-5\n171\n"
    samples, c = p.feed(data)
    assert samples.dtype == np.float32 and samples.shape == (4, 1)
    np.testing.assert_allclose(samples[[0, 1, 3], 0], [0.0, 1.0, -1.0], atol=1e-6)
    assert np.isnan(samples[2, 0])
    assert (c.sync_dropped, c.lead_off, c.garbage, c.out_of_range, c.samples) == (1, 1, 2, 2, 4)
    # a run of bytes without newline longer than a line is garbage, then it resynchronises
    samples, c = p.feed(os.urandom(300).replace(b"\n", b"x") + b"\n600\n")
    assert c.garbage == 3 and samples.shape[0] <= 1


def test_ascii_parser_multichannel_partial_and_marker_fields():
    p = AsciiParser(n_channels=2, gain_adc_per_mv=100.0, baseline_adc=0.0)
    samples, c = p.feed(b"\n100,200\n300\n!,400\n1 2 3\n50;60\n")
    np.testing.assert_allclose(samples[0], [1.0, 2.0])
    assert np.isnan(samples[1, 0]) and samples[1, 1] == pytest.approx(4.0)
    np.testing.assert_allclose(samples[2], [0.5, 0.6])
    assert (c.partial, c.garbage, c.lead_off) == (1, 1, 1)


@pytest.mark.parametrize("step", [1, 3, 7, 64, 10_000])
def test_ascii_parser_is_chunk_invariant(step):
    rng = np.random.default_rng(0)
    adc = rng.integers(0, 1024, 500)
    data = b"\n" + b"".join(ascii_lines(adc))
    p = AsciiParser(gain_adc_per_mv=GAIN, baseline_adc=BASELINE)
    parts = [p.feed(data[i : i + step])[0] for i in range(0, len(data), step)]
    got = np.concatenate(parts)[:, 0]
    np.testing.assert_allclose(got * GAIN + BASELINE, adc, atol=1e-3)


def test_ascii_parser_rejects_bad_settings():
    with pytest.raises(ConfigError, match="lead_off_marker"):
        AsciiParser(lead_off_marker="1")
    with pytest.raises(ConfigError, match="gain_adc_per_mv"):
        AsciiParser(gain_adc_per_mv=0)
    with pytest.raises(ConfigError, match="fs_hz"):
        SerialOptions(fs_hz=0)
    with pytest.raises(ConfigError, match="Did you mean 'binary'"):
        SerialOptions(fs_hz=250, fmt="binry")


def test_fletcher16_known_values():
    # reference values of Fletcher-16 (Wikipedia): "abcde" -> 0xC8F0, "abcdef" -> 0x2057
    assert int(fletcher16(np.frombuffer(b"abcde", np.uint8))[0]) == 0xC8F0
    assert int(fletcher16(np.frombuffer(b"abcdef", np.uint8))[0]) == 0x2057


@pytest.mark.parametrize("step", [1, 5, 12, 1000])
def test_binary_round_trip_counts_checksum_errors_and_fills_losses(step):
    n = 400
    adc = np.stack([np.arange(n) % 1000 + 100, 2000 - np.arange(n) % 500], axis=1)
    lead_off = np.zeros(n, bool)
    lead_off[50:53] = True
    size = binary_frame_bytes(2)
    raw = bytearray(encode_binary_frames(adc, counter_start=2**32 - 100, lead_off=lead_off))
    corrupt = [10, 200, 201]
    for k in corrupt:
        raw[k * size + 9] ^= 0x40  # a bit flip in a sample: the checksum catches it
    dropped = 300
    raw = raw[: dropped * size] + raw[(dropped + 1) * size :]
    raw = b"\x00junk\xa5" + bytes(raw)  # garbage before the first frame
    p = BinaryParser(n_channels=2, gain_adc_per_mv=1.0, baseline_adc=0.0)
    out = np.concatenate([p.feed(raw[i : i + step])[0] for i in range(0, len(raw), step)])
    c = p.counters
    assert out.shape == (n, 2)
    assert c.checksum_errors == len(corrupt)
    assert c.missing == len(corrupt) + 1
    assert c.lead_off == 3 and c.garbage >= 1 and c.counter_resets == 0
    bad = np.zeros(n, bool)
    bad[corrupt + [dropped]] = True
    bad |= lead_off
    assert np.isnan(out[bad]).all()
    np.testing.assert_array_equal(out[~bad], adc[~bad])


def test_stream_name_for_port():
    assert stream_name_for_port("/dev/ttyUSB0") == "ttyUSB0"
    assert stream_name_for_port("COM3") == "COM3"
    assert stream_name_for_port("loop://") == "loop"
    assert stream_name_for_port("/dev/serial/by-id/usb-Arduino_LLC-if00") == "usb-Arduino_LLC-if00"


# --------------------------------------------------------------------------- over a pseudo-terminal


def test_record_100_over_pty_matches_and_detects_beats(device, ipc_endpoint, record100):
    """30 s of record 100 as AD8232 ASCII at 360 Hz: samples within ADC quantisation, EC57 Se/+P >= 99 %."""
    from monitor.pipeline import StreamMonitor
    from trainer.ec57 import match_beats, select_beats

    n = int(30.5 * FS)
    mv = record100.signal[:n, 0]
    adc = np.round(mv * GAIN + BASELINE).astype(int)
    statuses = []
    opts = SerialOptions(fs_hz=FS, gain_adc_per_mv=GAIN, baseline_adc=BASELINE, rate_window_s=5.0)
    stop, th, rx = _start(device, ipc_endpoint, opts, statuses)
    writer = play(device, ascii_lines(adc), FS)
    events = collect(rx, lambda: not writer.is_alive(), 60.0)
    _finish(stop, th, rx)

    first, x = assemble(events)
    assert first == 0
    # the line the port opened on is dropped (it may be cut); find where the stream starts
    offset = next(k for k in range(5) if np.allclose(x[:50, 0], mv[k : k + 50], atol=0.51 / GAIN + 1e-6))
    m = min(x.shape[0], n - offset)
    assert m > n - 10
    assert not np.isnan(x).any()
    np.testing.assert_allclose(x[:m, 0], mv[offset : offset + m], atol=0.5 / GAIN + 1e-6)
    st = th.source.stats
    assert st.rate_warnings == 0 and abs(st.measured_fs_hz / FS - 1) < 0.02
    assert st.parser.errors == 0 and st.hole_samples == 0

    mon = StreamMonitor("ecg1", FS, ("ECG",))
    for ev in events:
        if isinstance(ev, (SampleChunk, Gap)):
            mon.handle(ev)
    ann = record100.annotations
    ref = select_beats(ann.symbol, ann.sample) - offset
    ref = ref[(ref >= 0) & (ref < m - int(1.0 * FS))]  # beats still within the detector's delay left out
    test = np.asarray(mon.beats)
    test = test[test < m - int(1.0 * FS)]
    res = match_beats(ref, test, FS)
    se = res.tp / len(ref)
    ppv = res.tp / len(test)
    assert len(ref) >= 35
    assert se >= 0.99 and ppv >= 0.99, (se, ppv)


def test_lead_off_garbage_and_partial_lines(device, ipc_endpoint, record100, caplog):
    """'!' lines become NaN (timing kept) and a lead-off status; garbage lines are skipped."""
    from monitor.pipeline import StreamMonitor

    n = int(3 * FS)
    mv = record100.signal[:n, 0]
    adc = np.round(mv * GAIN + BASELINE).astype(int)
    lines = ascii_lines(adc)
    off = slice(int(1.2 * FS), int(2.0 * FS))
    for k in range(off.start, off.stop):
        lines[k] = b"!\n"
    lines[100] = b"hello\n" + lines[100]
    lines[200] = b"99999\n" + lines[200]
    lines[300] = b"\x00\xff\n" + lines[300]
    statuses = []
    opts = SerialOptions(fs_hz=FS, gain_adc_per_mv=GAIN, baseline_adc=BASELINE)
    stop, th, rx = _start(device, ipc_endpoint, opts, statuses)
    writer = play(device, lines, FS)
    events = collect(rx, lambda: not writer.is_alive(), 20.0)
    _finish(stop, th, rx)

    _, x = assemble(events)
    offset = next(k for k in range(5) if np.allclose(x[:50, 0], mv[k : k + 50], atol=0.51 / GAIN + 1e-6))
    nan = np.flatnonzero(np.isnan(x[:, 0])) + offset
    np.testing.assert_array_equal(nan, np.arange(off.start, off.stop))
    c = th.source.stats.parser
    assert (c.garbage, c.out_of_range, c.lead_off) == (2, 1, off.stop - off.start)
    kinds = [(s.status, s.sample + offset) for s in statuses if s.status.startswith("lead")]
    assert kinds == [("lead-off", off.start), ("lead-on", off.stop)]
    # the status also travels on the wire, in the next ecg message's header
    wire_events = [e for ev in events if isinstance(ev, SampleChunk) for e in ev.header.get("source_events", [])]
    assert [e["status"] for e in wire_events if e["status"].startswith("lead")] == ["lead-off", "lead-on"]

    mon = StreamMonitor("ecg1", FS, ("ECG",))
    out = []
    for ev in events:
        if isinstance(ev, SampleChunk):
            out.extend(mon.handle(ev))
    lead = [e for e in out if e["type"] == "status" and e["status"] in ("lead-off", "lead-on")]
    assert lead and lead[0]["status"] == "lead-off" and lead[0]["reason"] == "no valid samples (NaN)"
    assert abs(lead[0]["sample"] + offset - off.start) <= int(0.2 * FS)
    # the detector holds during lead-off: no beat (and no faked asystole) inside it
    beats = np.asarray(mon.beats) + offset
    assert not ((beats > off.start) & (beats < off.stop)).any()


def test_unplug_and_replug_reconnects_with_a_marked_hole(device, ipc_endpoint):
    n = int(3.2 * FS)
    adc = 100 + np.arange(n) % 3000  # a ramp: every sample says which one it is
    statuses = []
    opts = SerialOptions(fs_hz=FS, gain_adc_per_mv=1.0, baseline_adc=0.0,
                         reconnect_min_s=0.05, reconnect_max_s=0.2)
    stop, th, rx = _start(device, ipc_endpoint, opts, statuses)
    unplug_at, replug_at = int(1.0 * FS), int(1.8 * FS)
    writer = play(device, ascii_lines(adc), FS, {unplug_at: device.unplug, replug_at: device.replug})
    events = collect(rx, lambda: not writer.is_alive(), 20.0)
    _finish(stop, th, rx)

    names = [s.status for s in statuses]
    assert names[:3] == ["connected", "disconnected", "reconnected"], names
    _, x = assemble(events)
    got = x[:, 0]
    valid = ~np.isnan(got)
    true_index = got[valid].astype(int) - 100  # which device sample each received one is
    pos = np.flatnonzero(valid)
    offset = true_index[0] - pos[0]
    err = (pos + offset) - true_index
    # before the loss indices are exact; after it the hole keeps them within 0.1 s of the truth
    before = true_index < unplug_at
    assert (err[before] == 0).all()
    after = true_index >= replug_at
    assert after.sum() > 0.9 * (n - replug_at) - 0.3 * FS
    assert np.abs(err[after]).max() <= int(0.1 * FS), np.abs(err[after]).max()
    gaps = [g for g in events if isinstance(g, Gap)]
    assert len(gaps) == 1 and gaps[0].missing_messages == 0
    assert gaps[0].missing_samples == pytest.approx((replug_at - unplug_at), abs=0.3 * FS)
    st = th.source.stats
    assert st.disconnects >= 1 and st.reconnects == 1 and st.hole_samples == gaps[0].missing_samples


def test_binary_format_over_pty(device, ipc_endpoint):
    n = int(1.5 * FS)
    adc = (np.arange(n) % 2000) - 1000
    size = binary_frame_bytes(1)
    raw = bytearray(encode_binary_frames(adc, counter_start=7))
    for k in (100, 101, 300):
        raw[k * size + 8] ^= 0x01
    frames = [bytes(raw[k * size : (k + 1) * size]) for k in range(n)]
    statuses = []
    opts = SerialOptions(fs_hz=FS, fmt="binary", gain_adc_per_mv=1.0, baseline_adc=0.0, baud=921600)
    stop, th, rx = _start(device, ipc_endpoint, opts, statuses)
    writer = play(device, frames, FS)
    events = collect(rx, lambda: not writer.is_alive(), 20.0)
    events += _finish(stop, th, rx)
    _, x = assemble(events)
    c = th.source.stats.parser
    assert c.checksum_errors == 3 and c.missing == 3
    assert [s.status for s in statuses] == ["connected"]  # lost frames are not lead-off
    assert x.shape[0] == n
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(x[:, 0])), [100, 101, 300])
    ok = ~np.isnan(x[:, 0])
    np.testing.assert_array_equal(x[ok, 0], adc[ok])
    end = [e for e in events if isinstance(e, Control) and e.eos]
    assert end and end[0].header["parse_errors"]["checksum_errors"] == 3


def test_rate_check_warns_when_declared_fs_is_off(device, ipc_endpoint, caplog):
    n = int(2.0 * FS)
    adc = 100 + np.arange(n) % 1000
    statuses = []
    opts = SerialOptions(fs_hz=400.0, gain_adc_per_mv=1.0, baseline_adc=0.0, rate_window_s=0.8)
    with caplog.at_level(logging.WARNING, logger="replay.serial_source"):
        stop, th, rx = _start(device, ipc_endpoint, opts, statuses)
        writer = play(device, ascii_lines(adc), FS)
        collect(rx, lambda: not writer.is_alive(), 20.0)
        _finish(stop, th, rx)
    src = th.source
    assert src.stats.rate_warnings >= 1 and src.rate_mismatch
    assert src.measured_fs_hz == pytest.approx(FS, rel=0.02)
    assert "rate-mismatch" in [s.status for s in statuses]
    assert any("off the declared 400 Hz" in r.getMessage() for r in caplog.records)


def test_missing_port_is_one_clear_error(tmp_path, ipc_endpoint):
    port = str(tmp_path / "ttyNOPE")
    with pytest.raises(SourceError, match="cannot open serial port .*ttyNOPE: no such device"):
        start_serial_publisher(port, SerialOptions(fs_hz=250.0), ipc_endpoint)
    r = subprocess.run(
        [sys.executable, "-m", "replay.cli", f"serial:{port}", "--fs", "250"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("ecg-replay: error: cannot open serial port") and "ttyNOPE" in lines[0]
    r = subprocess.run(
        [sys.executable, "-m", "replay.cli", f"serial:{port}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 2 and "--fs" in r.stderr


def test_loop_url_source_reads_what_is_written():
    """pyserial URLs work too (loop:// echoes what is written to it)."""
    src = SerialSource("loop://", SerialOptions(fs_hz=100.0, gain_adc_per_mv=1.0, baseline_adc=0.0))
    src.open()
    try:
        src._serial.write(b"\n10\n20\n!\n30\n")
        time.sleep(0.05)
        rows, counters = src._parser.feed(src._read())
    finally:
        src.close()
    assert src.stream == "loop"
    np.testing.assert_array_equal(rows[[0, 1, 3], 0], [10, 20, 30])
    assert np.isnan(rows[2, 0]) and counters.lead_off == 1

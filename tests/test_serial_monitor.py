"""The monitor on a serial sensor (pseudo-terminal emulator): beats, lead-off, unplug."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import wfdb

from monitor.events import EventWriter
from monitor.runner import MonitorRunner, RunnerConfig
from replay.serial_source import SerialOptions
from test_serial import BASELINE, GAIN, PtyDevice, ascii_lines, play


@pytest.fixture
def device(tmp_path):
    dev = PtyDevice(tmp_path)
    yield dev
    dev.close()


def test_monitor_on_serial_sensor_with_lead_off_and_unplug(device, mitdb):
    fs = 360.0
    n = int(9 * fs)
    x = wfdb.rdrecord(str(mitdb / "100"), channels=[0], sampto=n).p_signal[:, 0]
    lines = ascii_lines(np.round(x * GAIN + BASELINE).astype(int))
    lead_off = slice(int(2.0 * fs), int(3.0 * fs))
    lines[lead_off] = [b"!\n"] * (lead_off.stop - lead_off.start)
    events = []
    opts = SerialOptions(fs_hz=fs, reconnect_min_s=0.05, reconnect_max_s=0.2)
    runner = MonitorRunner(
        RunnerConfig(sources=[f"serial:{device.path}"], serial=opts, no_data_s=0.5),
        EventWriter(None, events.extend),
    )
    th = threading.Thread(target=runner.run, daemon=True)
    th.start()
    time.sleep(0.5)
    unplug, replug = int(5.0 * fs), int(6.0 * fs)
    writer = play(device, lines, fs, {unplug: device.unplug, replug: device.replug})
    writer.join(20)
    time.sleep(0.8)
    runner.stop_event.set()
    th.join(10)
    assert not th.is_alive()
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert "connected" in statuses
    assert "lead-off" in statuses and "lead-on" in statuses
    assert "disconnected" in statuses and "reconnected" in statuses
    assert any(e["type"] == "gap" for e in events)
    beats = [e["sample"] for e in events if e["type"] == "beat"]
    assert len(beats) >= 5
    off = [e for e in events if e.get("status") == "lead-off"][0]["sample"]
    assert not any(off <= b < off + 0.9 * fs for b in beats)
    alarms = [e["code"] for e in events if e["type"] == "alarm" and e["state"] == "on"]
    assert "asystole" not in alarms, "a lead-off or an unplugged sensor never fakes asystole"
    assert "leads_off" in alarms


def test_serial_options_need_a_serial_source_and_missing_port_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "--source", "sim:72", "--headless", "--fs", "250"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "only apply to serial" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "--source", f"serial:{tmp_path}/nope",
                        "--headless", "--fs", "250"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope" in lines[0]
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "--source", "serial:/dev/ttyX", "--headless"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--fs" in r.stderr

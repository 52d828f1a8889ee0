"""CURVE security: ``ecg-keys``, key files, encrypted and authorised streams on loopback."""

from __future__ import annotations

import shutil
import socket
import stat
import time

import numpy as np
import pytest
import zmq

from replay import keys
from replay.errors import ConfigError
from replay.publisher import Publisher, check_endpoint
from replay.receiver import Receiver
from replay.wire import SampleChunk

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture
def keydir(tmp_path):
    d = tmp_path / "keys"
    for name in ("server", "monitor1", "intruder"):
        assert keys.main([name, "--dir", str(d)]) == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(d / "monitor1.key", allowed)
    return d, allowed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ecg_keys_writes_zmq_certificates(tmp_path, capsys):
    assert keys.main(["server", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    public, secret = tmp_path / "server.key", tmp_path / "server.key_secret"
    assert str(public) in out and str(secret) in out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    import zmq.auth

    pub, sec = zmq.auth.load_certificate(secret)
    assert zmq.auth.load_certificate(public) == (pub, None)
    assert zmq.curve_public(sec) == pub
    # never overwrite a key silently: one error line, exit 2
    assert keys.main(["server", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert keys.main(["server", "--dir", str(tmp_path), "--force"]) == 0
    assert zmq.auth.load_certificate(secret)[0] != pub


def test_key_loading_errors_are_clear(tmp_path):
    pub, sec = keys.create_keypair(tmp_path, "a")
    with pytest.raises(ConfigError, match="holds no secret key"):
        keys.load_secret_key(pub)
    with pytest.raises(ConfigError, match="does not exist"):
        keys.load_secret_key(tmp_path / "nope.key_secret")
    sec.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        keys.load_secret_key(sec)
    with pytest.raises(ConfigError, match="key name"):
        keys.create_keypair(tmp_path, "../evil")


def _roundtrip(endpoint, pub, receivers, n=5) -> list[int]:
    """Send ``n`` messages once the first receiver subscribed; return how many each got."""
    assert pub.wait_for_subscribers("s1", 1, 5.0)
    time.sleep(0.2)
    for i in range(n):
        pub.send_samples("s1", i * 10, 100.0, ["I"], np.full((10, 1), i, np.float32))
    counts = [0] * len(receivers)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for k, rx in enumerate(receivers):
            counts[k] += sum(isinstance(e, SampleChunk) for e in rx.poll(0.02))
    return counts


def test_curve_round_trip_and_unknown_client_refused(keydir):
    d, allowed = keydir
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with Publisher(endpoint, curve_server_key=d / "server.key_secret", curve_allow=allowed) as pub:
        good = Receiver(endpoint, curve_client_key=d / "monitor1.key_secret",
                        curve_server_public=d / "server.key")
        intruder = Receiver(endpoint, curve_client_key=d / "intruder.key_secret",
                            curve_server_public=d / "server.key")
        plain = Receiver(endpoint)
        try:
            counts = _roundtrip(endpoint, pub, [good, intruder, plain])
        finally:
            for rx in (good, intruder, plain):
                rx.close()
    assert counts == [5, 0, 0]


def test_curve_without_allow_list_accepts_any_keyed_client(keydir):
    d, _ = keydir
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with Publisher(endpoint, curve_server_key=d / "server.key_secret") as pub:
        rx = Receiver(endpoint, curve_client_key=d / "intruder.key_secret",
                      curve_server_public=d / "server.key")
        wrong_server = Receiver(endpoint, curve_client_key=d / "intruder.key_secret",
                                curve_server_public=d / "monitor1.key")
        try:
            counts = _roundtrip(endpoint, pub, [rx, wrong_server])
        finally:
            rx.close()
            wrong_server.close()
    assert counts == [5, 0]


def test_curve_arguments_checked():
    with pytest.raises(ConfigError, match="go together"):
        Receiver("tcp://127.0.0.1:5555", curve_client_key="x.key_secret")
    with pytest.raises(ConfigError, match="needs curve_server_key"):
        Publisher("tcp://127.0.0.1:*", curve_allow="somewhere")


@pytest.mark.parametrize("endpoint", ["tcp://192.168.1.10:5555", "tcp://example.org:5555", "tcp://eth0:5555"])
def test_non_loopback_bind_needs_bind_flag(endpoint):
    with pytest.raises(ConfigError, match="not a loopback address.*--bind"):
        check_endpoint(endpoint)
    assert check_endpoint(endpoint, allow_wildcard=True) == endpoint
    assert check_endpoint(endpoint, allow_remote=True) == endpoint


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555",
                                      "tcp://127.0.0.2:*", "ipc:///tmp/x"])
def test_loopback_bind_allowed(endpoint):
    assert check_endpoint(endpoint) == endpoint


def test_ecg_replay_curve_flags_checked(capsys):
    from replay.cli import main

    assert main(["100", "--curve-allow", "somewhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--curve-server-key" in err[0]
    assert main(["100", "--endpoint", "tcp://10.1.2.3:5555"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bind" in err[0]

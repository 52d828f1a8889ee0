"""A minimal sensor that speaks the ECG wire protocol (docs/protocol.md) over ZeroMQ.

It uses only ``json``, ``struct``, ``time`` and ``zmq`` (pyzmq), so it runs on a Raspberry
Pi or any small Linux board without this project installed. Replace ``read_adc()`` with your
ADC; samples are sent in mV as little-endian float32, 0.1 s per message.

    python sensor_client.py --endpoint tcp://127.0.0.1:5555 --stream patch1 --fs 250
    ecg-monitor --source zmq:tcp://127.0.0.1:5555 --headless

With CURVE (keys from ``ecg-keys``): ``--curve-server-key server.key_secret``; the monitor then
needs ``--curve-client-key ... --curve-server-public server.key``.

MicroPython has no ZeroMQ binding: there, send the serial formats of docs/protocol.md ("Serial
sensors") over UART/USB and bridge them with ``ecg-replay serial:PORT``; the message layout
below (``struct.pack(f"<{n}f", ...)`` for the payload, one JSON header) is the same with
``ujson``/``ustruct`` should you write a ZMTP sender yourself.
"""

import argparse
import json
import math
import struct
import time

import zmq

VERSION = 1  # protocol version ("v")


def read_adc(k, fs):
    """One sample in mV (here a synthetic 72 bpm spike train; replace with your ADC)."""
    phase = (k / fs) % (60.0 / 72)
    return 1.2 * math.exp(-(((phase - 0.1) / 0.012) ** 2)) - 0.1


def load_curve_secret(path):
    """(public, secret) Z85 keys from a zmq.auth / ecg-keys ``.key_secret`` file."""
    keys = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            for name in (b"public-key", b"secret-key"):
                if line.startswith(name):
                    keys[name] = line.split(b"=", 1)[1].strip(b" \t'\"")
    return keys[b"public-key"], keys[b"secret-key"]


def main():
    p = argparse.ArgumentParser(description="Send ECG in the wire protocol")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    p.add_argument("--stream", default="patch1")
    p.add_argument("--fs", type=float, default=250.0, help="sampling rate, Hz")
    p.add_argument("--channel", default="ECG", help="lead name")
    p.add_argument("--duration", type=float, default=None, help="seconds to send (default: forever)")
    p.add_argument("--curve-server-key", default=None, help="server secret key file (encrypt)")
    args = p.parse_args()

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 1000)
    if args.curve_server_key:
        public, secret = load_curve_secret(args.curve_server_key)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    sock.bind(args.endpoint)
    stream, fs = args.stream, args.fs
    n = max(1, round(0.1 * fs))  # samples per message
    seq = {"ecg": 0, "ctl": 0}

    def send(kind, header, payload=b""):
        header.update({"v": VERSION, "stream": stream, "seq": seq[kind]})
        seq[kind] += 1
        sock.send_multipart([f"{kind}.{stream}".encode(), json.dumps(header).encode(), payload])

    time.sleep(0.5)  # let subscribers connect (PUB drops what is sent before they do)
    send("ctl", {"event": "start", "fs": fs, "channels": [args.channel], "units": "mV"})
    t0, start = time.monotonic(), 0
    try:
        while args.duration is None or start < args.duration * fs:
            samples = [read_adc(start + i, fs) for i in range(n)]  # NaN for lead-off
            header = {"start": start, "n": n, "fs": fs, "channels": [args.channel],
                      "units": "mV", "dtype": "<f4", "t": time.time()}
            send("ecg", header, struct.pack(f"<{n}f", *samples))
            start += n
            delay = t0 + start / fs - time.monotonic()  # pace by the clock: no drift
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        pass
    send("ctl", {"event": "end", "eos": True, "samples": start})
    sock.close()


if __name__ == "__main__":
    main()

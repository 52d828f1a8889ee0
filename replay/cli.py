"""``ecg-replay``: stream a WFDB record (or the simulator) over ZeroMQ."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading

from . import _cli
from .errors import ConfigError, SourceError
from .keys import add_curve_server_arguments, curve_server_kwargs
from .publisher import DEFAULT_ENDPOINT, Publisher, check_endpoint, replay
from .serial_source import (
    SerialSource,
    add_serial_arguments,
    given_serial_arguments,
    serial_options_from_args,
)
from .sources import load_source_record, parse_source

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ecg-replay``."""
    p = argparse.ArgumentParser(
        prog="ecg-replay",
        description=(
            "Replay an ECG record over ZeroMQ in the wire protocol (docs/protocol.md). "
            "RECORD is a MIT-BIH record name looked up in the data directory (100), a path to "
            "a WFDB record (/data/mitdb/100 or /data/mitdb/100.hea), a simulated ECG (sim:72), "
            "or a serial sensor (serial:/dev/ttyUSB0) bridged into the protocol."
        ),
        epilog=(
            "Examples: ecg-replay 100 --speed max --wait-subscribers 1; "
            "ecg-replay serial:/dev/ttyUSB0 --fs 250 --baud 115200 --endpoint tcp://127.0.0.1:5555"
        ),
    )
    p.add_argument("record", metavar="RECORD",
                   help="record name, WFDB path, sim:BPM[,key=value...] or serial:PORT")
    p.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"ZeroMQ endpoint to bind (default {DEFAULT_ENDPOINT}; ipc:///tmp/ecg works too)",
    )
    p.add_argument(
        "--speed",
        type=_cli.parse_speed,
        default=1.0,
        help="1 = real time, N = N times real time, max = as fast as subscribers take it, lossless",
    )
    p.add_argument(
        "--chunk", type=_cli.positive_seconds, default=0.1, metavar="SECONDS",
        help="seconds of signal per message (default 0.1)",
    )
    p.add_argument("--start", type=_cli.non_negative_seconds, default=0.0, metavar="S",
                   help="start this many seconds into the record")
    p.add_argument("--duration", type=_cli.positive_seconds, default=None, metavar="S",
                   help="replay only this many seconds")
    p.add_argument("--loop", action="store_true", help="start again at the end of the record")
    p.add_argument("--no-annotations", action="store_true",
                   help="do not send the record's reference annotations")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="wait until N subscribers listen before sending (no slow-joiner loss)")
    p.add_argument("--wait-timeout", type=_cli.positive_seconds, default=None, metavar="S",
                   help="give up waiting for subscribers after S seconds (default: wait forever)")
    p.add_argument("--channel", action="append", default=None, metavar="NAME|INDEX",
                   help="send only this channel (repeat for several; default: all)")
    p.add_argument("--stream", default=None, help="stream name (default: the record name)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory of WFDB records (default: $ECG_DATA_DIR, else the user cache)")
    p.add_argument("--bind", action="store_true",
                   help="allow binding every interface (tcp://*:PORT); ECG is health data")
    p.add_argument("--stats", action="store_true",
                   help="print messages/s, MB/s and x real time when done")
    add_serial_arguments(p)
    add_curve_server_arguments(p)
    _cli.add_common_arguments(p)
    return p


def _wait_subscribers(args: argparse.Namespace, pub: Publisher, stream: str, stop: threading.Event) -> bool:
    """Honour ``--wait-subscribers``: False if stopped (Ctrl-C) while waiting; an error on timeout."""
    if not args.wait_subscribers:
        return True
    print(f"ecg-replay: waiting for {args.wait_subscribers} subscriber(s) on {pub.last_endpoint}", file=sys.stderr)
    if pub.wait_for_subscribers(stream, args.wait_subscribers, args.wait_timeout, stop):
        return True
    if stop.is_set():
        return False
    raise SourceError(f"no {args.wait_subscribers} subscriber(s) on {pub.last_endpoint} within {args.wait_timeout} s")


def _run_serial(args: argparse.Namespace, port: str) -> int:
    """Bridge a serial sensor into the wire protocol until Ctrl-C (or --duration)."""
    for flag, bad in (("--start", args.start), ("--loop", args.loop), ("--channel", args.channel)):
        if bad:
            raise ConfigError(f"{flag} applies to records, not to serial: sources")
    options = serial_options_from_args(args, chunk_s=args.chunk)
    curve = curve_server_kwargs(args)
    check_endpoint(args.endpoint, allow_wildcard=args.bind, allow_remote=args.bind or bool(curve))
    stop = threading.Event()
    _cli.install_stop_handlers(stop)
    if args.bind:
        logger.warning("binding %s: the stream is reachable from other machines", args.endpoint)
    source = SerialSource(port, options, stream=args.stream)
    source.open()
    try:
        with Publisher(args.endpoint, allow_wildcard=args.bind, **curve) as pub:
            if not _wait_subscribers(args, pub, source.stream, stop):
                return 0
            print(
                f"ecg-replay: serial {port} ({options.describe()}) on {pub.last_endpoint} "
                f"as stream {source.stream!r}{' (CURVE)' if curve else ''}; Ctrl-C to stop",
                file=sys.stderr,
            )
            stats = source.run(pub, stop, duration_s=args.duration)
    finally:
        source.close()
    if args.stats:
        c = stats.parser
        print(
            f"samples {stats.samples}  messages {stats.messages}  reconnects {stats.reconnects}  "
            f"hole {stats.hole_samples} samples  rate "
            + (f"{stats.measured_fs_hz:.1f} Hz" if stats.measured_fs_hz else "not measured")
            + f"  lead-off {c.lead_off}  garbage {c.garbage}  partial {c.partial}  "
            f"out-of-range {c.out_of_range}  checksum errors {c.checksum_errors}  missing {c.missing}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.wait_subscribers < 0:
        raise ConfigError(f"--wait-subscribers must be >= 0, got {args.wait_subscribers}")
    spec = parse_source(args.record)
    if spec.kind == "serial":
        return _run_serial(args, spec.argument)
    if spec.kind not in ("replay", "sim"):
        raise ConfigError(
            f"ecg-replay plays records, the simulator or serial sensors, not {spec.kind}: sources"
        )
    given = given_serial_arguments(args)
    if given:
        raise ConfigError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to serial: sources only")
    curve = curve_server_kwargs(args)
    # refuse a bad endpoint before loading anything
    check_endpoint(args.endpoint, allow_wildcard=args.bind, allow_remote=args.bind or bool(curve))
    channels = None
    if args.channel:
        channels = [int(c) if c.isdigit() else c for c in args.channel]
    record = load_source_record(
        spec,
        args.data_dir,
        channels=channels,
        start_s=args.start,
        duration_s=args.duration,
        annotations=not args.no_annotations,
    )
    stop = threading.Event()
    _cli.install_stop_handlers(stop)
    if args.bind:
        logger.warning("binding %s: the stream is reachable from other machines", args.endpoint)
    with Publisher(args.endpoint, lossless=math.isinf(args.speed), allow_wildcard=args.bind, **curve) as pub:
        stream = args.stream or record.name
        if not _wait_subscribers(args, pub, stream, stop):
            return 0
        print(
            f"ecg-replay: {record.name} ({record.signal.shape[0] / record.fs:.1f} s, "
            f"{record.fs:g} Hz, {', '.join(record.channels)}) on {pub.last_endpoint} "
            f"as stream {stream!r}",
            file=sys.stderr,
        )
        stats = replay(
            record,
            pub,
            stream=stream,
            speed=args.speed,
            chunk_s=args.chunk,
            loop=args.loop,
            annotations=not args.no_annotations,
            stop=stop,
        )
    if args.stats:
        el = max(stats.elapsed_s, 1e-9)
        print(
            f"messages {stats.messages}  {stats.messages / el:,.0f} msg/s  "
            f"{stats.bytes / el / 1e6:.1f} MB/s  {stats.signal_s:.1f} s of signal in "
            f"{stats.elapsed_s:.3f} s = {stats.x_realtime:,.0f}x real time"
            + (f"  drift {stats.final_drift_s * 1000:.1f} ms" if math.isfinite(args.speed) else "")
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-replay``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)
    return _cli.run_main("ecg-replay", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())

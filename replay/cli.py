"""``ecg-replay``: stream a WFDB record (or the simulator) over ZeroMQ."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading

from . import _cli
from .errors import ConfigError, SourceError
from .publisher import DEFAULT_ENDPOINT, Publisher, replay
from .sources import load_source_record, parse_source

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ecg-replay``."""
    p = argparse.ArgumentParser(
        prog="ecg-replay",
        description=(
            "Replay an ECG record over ZeroMQ in the wire protocol (docs/protocol.md). "
            "RECORD is a MIT-BIH record name looked up in the data directory (100), a path to "
            "a WFDB record (/data/mitdb/100 or /data/mitdb/100.hea) or a simulated ECG (sim:72)."
        ),
        epilog="Example: ecg-replay 100 --speed max --wait-subscribers 1",
    )
    p.add_argument("record", metavar="RECORD", help="record name, WFDB path, or sim:BPM[,key=value...]")
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
    _cli.add_common_arguments(p)
    return p


def _run(args: argparse.Namespace) -> int:
    if args.wait_subscribers < 0:
        raise ConfigError(f"--wait-subscribers must be >= 0, got {args.wait_subscribers}")
    spec = parse_source(args.record)
    if spec.kind not in ("replay", "sim"):
        raise ConfigError(f"ecg-replay plays records or the simulator, not {spec.kind}: sources")
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
    with Publisher(args.endpoint, lossless=math.isinf(args.speed), allow_wildcard=args.bind) as pub:
        stream = args.stream or record.name
        if args.wait_subscribers:
            print(
                f"ecg-replay: waiting for {args.wait_subscribers} subscriber(s) on {pub.last_endpoint}",
                file=sys.stderr,
            )
            if not pub.wait_for_subscribers(stream, args.wait_subscribers, args.wait_timeout, stop):
                if stop.is_set():
                    return 0
                raise SourceError(
                    f"no {args.wait_subscribers} subscriber(s) on {pub.last_endpoint} "
                    f"within {args.wait_timeout} s"
                )
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

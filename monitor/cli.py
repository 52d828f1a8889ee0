"""``ecg-monitor``: watch ECG streams live, headless (JSON lines) or in a window."""

from __future__ import annotations

import argparse
import logging
import sys

from replay import _cli
from replay.errors import ConfigError
from replay.keys import add_curve_client_arguments, curve_client_kwargs
from replay.serial_source import add_serial_arguments, given_serial_arguments, serial_options_from_args
from replay.sources import parse_source

from .alarms import AlarmConfig
from .events import EventWriter, open_events
from .runner import MonitorRunner, RunnerConfig

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ecg-monitor``."""
    p = argparse.ArgumentParser(
        prog="ecg-monitor",
        description=(
            "Real-time ECG arrhythmia monitor. Receives ECG over ZeroMQ (docs/protocol.md), "
            "filters it causally, detects R-peaks online, classifies every beat and raises "
            "alarms; shows them in a window, or with --headless writes one JSON event per line "
            "(docs/events.md)."
        ),
        epilog=(
            "Sources: replay:RECORD (a MIT-BIH name or WFDB path), sim:BPM[,key=value...] "
            "(simulated ECG), zmq:ENDPOINT (any publisher speaking the protocol), "
            "serial:PORT (an AD8232-style sensor; needs --fs). "
            "Example: ecg-monitor --source replay:100 --headless --speed max"
        ),
    )
    p.add_argument("--source", action="append", default=None, metavar="SOURCE",
                   help="what to monitor; repeat for several streams (default: replay:100)")
    p.add_argument("--headless", action="store_true",
                   help="no window: write events as JSON lines (to --events, default stdout)")
    p.add_argument("--speed", type=_cli.parse_speed, default=1.0,
                   help="replay speed: 1 = real time, N = N times, max = as fast as possible")
    p.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="window mode: play --duration seconds (at --speed), save the window as a PNG, exit")
    p.add_argument("--events", default=None, metavar="FILE|-",
                   help="write events to FILE ('-' = stdout; default stdout when headless)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory of WFDB records (default: $ECG_DATA_DIR, else the user cache)")
    p.add_argument("--channel", default=None, metavar="NAME|INDEX",
                   help="lead to monitor (default: the first, MLII on MIT-BIH)")
    p.add_argument("--start", type=_cli.non_negative_seconds, default=0.0, metavar="S",
                   help="start replayed records this many seconds in")
    p.add_argument("--duration", type=_cli.positive_seconds, default=None, metavar="S",
                   help="monitor only this many seconds of signal per stream")
    p.add_argument("--chunk", type=_cli.positive_seconds, default=None, metavar="SECONDS",
                   help="seconds of signal per message for replayed sources (default 0.1; 1 with --speed max)")
    p.add_argument("--notch", type=float, default=None, choices=(50.0, 60.0), metavar="HZ",
                   help="notch out mains interference at 50 or 60 Hz")
    p.add_argument("--no-data-timeout", type=_cli.positive_seconds, default=5.0, metavar="S",
                   help="report no-data after S seconds of silence (default 5)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="beat classifier weights (default: the shipped assets/model.pt)")
    p.add_argument("--no-classify", action="store_true",
                   help="do not classify beats (label '?'); saves the model's CPU time")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads for classification (default 1, so many streams share the cores)")
    p.add_argument("--alarm-config", default=None, metavar="TOML",
                   help="alarm limits file (docs/alarms.md); default: bedside defaults")
    p.add_argument("--alarm", action="append", default=[], metavar="KEY=VALUE",
                   help="override one alarm limit, e.g. --alarm hr_high=130 (repeatable)")
    p.add_argument("--record-to", default=None, metavar="DIR",
                   help="record each stream as a WFDB record in DIR, with the beat labels and alarms "
                        "as annotations (.ecgm), written as it arrives (docs/recording.md)")
    p.add_argument("--idle-exit", type=_cli.positive_seconds, default=None, metavar="S",
                   help="stop after S seconds without any message (default: keep waiting)")
    add_serial_arguments(p)
    add_curve_client_arguments(p)
    _cli.add_common_arguments(p)
    return p


def _run(args: argparse.Namespace) -> int:
    sources = args.source or ["replay:100"]
    channel: str | int | None = args.channel
    if isinstance(channel, str) and channel.lstrip("-").isdigit():
        channel = int(channel)
    serial = None
    if any(parse_source(src).kind == "serial" for src in sources):
        serial = serial_options_from_args(args, chunk_s=args.chunk or 0.1)
    elif given_serial_arguments(args):
        raise ConfigError(
            f"{', '.join(given_serial_arguments(args))} only apply to serial: sources"
        )
    alarm_config = (
        AlarmConfig.from_toml(args.alarm_config) if args.alarm_config else AlarmConfig()
    ).with_overrides(args.alarm)
    config = RunnerConfig(
        sources=sources,
        speed=args.speed,
        data_dir=args.data_dir,
        channel=channel,
        start_s=args.start,
        duration_s=args.duration,
        chunk_s=args.chunk,
        no_data_s=args.no_data_timeout,
        idle_exit_s=args.idle_exit,
        notch_hz=args.notch,
        alarm_config=alarm_config,
        serial=serial,
        curve=curve_client_kwargs(args),
        weights=args.weights,
        classify=not args.no_classify,
        threads=args.threads,
        record_to=args.record_to,
    )
    if not args.headless:
        from .gui.app import run_window

        return run_window(config, args)
    fp, close = open_events(args.events, default_stdout=True)
    try:
        writer = EventWriter(fp)
        runner = MonitorRunner(config, writer)
        _cli.install_stop_handlers(runner.stop_event)
        summary = runner.run()
        writer.write(summary.event())
    finally:
        if close:
            fp.close()
    print(
        f"ecg-monitor: {summary.streams} stream(s), {summary.beats} beats, {summary.alarms} alarms, "
        f"{summary.gaps} gaps "
        f"({summary.missing_samples} samples missed), {summary.bad_messages} bad messages, "
        f"{summary.signal_s:.1f} s of signal in {summary.runtime_s:.2f} s "
        f"({summary.x_realtime:,.0f}x real time)",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-monitor``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)
    return _cli.run_main("ecg-monitor", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())

"""``ecg-bench streams``: how many real-time streams one monitor process sustains.

A load-generator process replays N MIT-BIH records at real time (0.1 s
messages, one XPUB socket, like N bedside sensors behind one gateway); one
monitor process (:class:`~monitor.runner.MonitorRunner` with a ``zmq:``
source, classification on, torch single-threaded) receives them all. A
configuration passes when, after a warm-up, the beat latency p99 is at most
``--max-p99`` seconds (1 s) and no message is lost. N grows until a
configuration fails; the largest passing N is the result.

Latency is the beat event's ``latency`` field: from the arrival at the
monitor of the message holding the R peak to the writing of the event, so it
includes the detector's decision delay and the wait for the beat window.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import resource
import threading
import time

import numpy as np

from replay import _cli

logger = logging.getLogger(__name__)

DEFAULT_RECORDS = "100,101,103,105,106,108,109,111,112,113,114,115,116,117,118,119,121,122,123,124"


def _generator(endpoint: str, names: list[str], data_dir: str | None, n_streams: int, seconds: float,
               chunk_s: float, ready, go, result) -> None:
    """Child process: replay ``n_streams`` streams at real time for ``seconds``."""
    from replay import wire
    from replay.publisher import Publisher
    from replay.wfdb_source import load_record

    records = [load_record(n, data_dir, annotations=False, duration_s=seconds + 5) for n in names]
    streams = []
    for i in range(n_streams):
        rec = records[i % len(records)]
        name = f"bed{i:03d}"
        streams.append((name, rec, wire.SampleEncoder(name, rec.fs, rec.channels)))
    with Publisher(endpoint, sndhwm=100_000) as pub:
        ready.set()
        if not pub.wait_for_subscribers(streams[0][0], 1, 60):
            result.put({"error": "monitor did not subscribe"})
            return
        go.wait(60)
        t0 = time.monotonic()
        k = 0
        lag_max = 0.0
        sent = 0
        sock = pub._sock
        while True:
            due = t0 + (k + 1) * chunk_s
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                lag_max = max(lag_max, now - due)
            if (k + 1) * chunk_s > seconds:
                break
            for name, rec, enc in streams:
                n = int(round(chunk_s * rec.fs))
                a = k * n
                sock.send_multipart(enc.encode(k, a, rec.signal[a : a + n], time.time()))
                sent += 1
            k += 1
        for name, _, _ in streams:
            pub.send_control(name, wire.EVENT_END)
        result.put({"sent": sent, "lag_max": lag_max})


def run_streams(n_streams: int, seconds: float, warmup_s: float, names: list[str], data_dir: str | None,
                chunk_s: float = 0.1, weights: str | None = None) -> dict:
    """Run one configuration; return latency percentiles, losses and CPU use."""
    from monitor.events import EventWriter
    from monitor.runner import MonitorRunner, RunnerConfig

    endpoint = f"ipc:///tmp/ecg-bench-streams-{os.getpid()}-{n_streams}"
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_generator,
                        args=(endpoint, names, data_dir, n_streams, seconds, chunk_s, ready, go, result))
    child.start()
    if not ready.wait(120):
        child.kill()
        raise RuntimeError("load generator did not start")
    lat: list[tuple[float, float]] = []
    relabel_lat: list[tuple[float, float]] = []

    def sink(events):
        for e in events:
            if e.get("type") == "beat":
                lat.append((e["time"], e["latency"]))
            elif e.get("type") == "relabel":
                relabel_lat.append((e["time"], e["latency"]))

    runner = MonitorRunner(
        RunnerConfig(sources=[f"zmq:{endpoint}"], threads=1, weights=weights, idle_exit_s=30.0),
        EventWriter(None, sink),
    )
    th = threading.Thread(target=runner.run, daemon=True)
    cpu0 = time.process_time()
    th.start()
    go.set()
    th.join(seconds + 120)
    cpu = time.process_time() - cpu0
    gen = result.get(timeout=30)
    child.join(10)
    runner.stop_event.set()
    th.join(10)
    stats = runner.receiver.stats
    arr = np.array([x for t, x in lat if t >= warmup_s]) if lat else np.zeros(0)
    rel = np.array([x for t, x in relabel_lat if t >= warmup_s]) if relabel_lat else np.zeros(0)
    return {
        "streams": n_streams,
        "monitored": len(runner.monitors),
        "beats": int(arr.size),
        "p50": float(np.percentile(arr, 50)) if arr.size else math.nan,
        "p99": float(np.percentile(arr, 99)) if arr.size else math.nan,
        "max": float(arr.max()) if arr.size else math.nan,
        "relabels": int(rel.size),
        "relabel_p99": float(np.percentile(rel, 99)) if rel.size else math.nan,
        "missing_messages": int(stats.missing_messages),
        "bad_messages": int(stats.bad_messages),
        "cpu_percent": 100.0 * cpu / seconds,
        "generator_lag_max": gen.get("lag_max", math.nan),
    }


def main_streams(args: argparse.Namespace) -> int:
    """``ecg-bench streams``: print one line per configuration and the largest passing N."""
    names = args.records.split(",")
    counts = [int(c) for c in args.counts.split(",")]
    print(f"real-time streams in one monitor process ({os.cpu_count()} cores), {args.seconds:g} s each "
          f"({args.warmup:g} s warm-up); pass: latency p99 <= {args.max_p99:g} s and no lost message")
    print(f"{'streams':>7} {'beats':>6} {'p50 s':>6} {'p99 s':>6} {'max s':>6} {'lost':>5} {'CPU %':>6}  result"
          "   (relabels of provisional beats: count, latency p99 s; not part of the bound)")
    best = 0
    for n in counts:
        r = run_streams(n, args.seconds, args.warmup, names, args.data_dir, weights=args.weights)
        ok = r["p99"] <= args.max_p99 and r["missing_messages"] == 0 and r["monitored"] == n
        print(f"{n:7d} {r['beats']:6d} {r['p50']:6.3f} {r['p99']:6.3f} {r['max']:6.3f} "
              f"{r['missing_messages']:5d} {r['cpu_percent']:6.0f}  {'pass' if ok else 'FAIL'}"
              + ("" if r["monitored"] == n else f" (only {r['monitored']} streams seen)")
              + f"   {r['relabels']} relabels" + (f", p99 {r['relabel_p99']:.3f}" if r["relabels"] else ""), flush=True)
        if not ok:
            break
        best = n
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"largest number of real-time streams sustained: {best} (target >= 100); peak RSS {rss:.0f} MB")
    return 0


def add_streams_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``ecg-bench streams``."""
    parser.add_argument("--counts", default="25,50,100,150,200,300",
                        help="numbers of streams to try, in increasing order (default 25,50,100,150,200,300)")
    parser.add_argument("--seconds", type=_cli.positive_seconds, default=40.0, help="run length per configuration")
    parser.add_argument("--warmup", type=_cli.non_negative_seconds, default=10.0,
                        help="seconds of each run not scored")
    parser.add_argument("--max-p99", type=float, default=1.0, help="latency p99 limit in seconds (default 1)")
    parser.add_argument("--records", default=DEFAULT_RECORDS, help="records replayed (cycled)")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.add_argument("--weights", default=None, metavar="FILE", help="classifier weights (default shipped)")
    parser.set_defaults(func=main_streams)

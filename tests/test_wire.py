"""The wire protocol: round trips, every malformed case, continuity, fuzzing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay import wire
from replay.errors import WireFormatError
from replay.receiver import BadMessage, Receiver
from replay.wire import (
    AnnotationBatch,
    Control,
    Gap,
    SampleChunk,
    SampleEncoder,
    StreamTracker,
    decode,
    encode_annotations,
    encode_control,
    encode_samples,
)

# --------------------------------------------------------------------------- helpers


def _samples(stream="100", seq=0, start=0, fs=360.0, n=36, n_ch=2, seed=0, **extra):
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1, (n, n_ch)).astype(np.float32)
    channels = [f"ch{i}" for i in range(n_ch)]
    return encode_samples(stream, seq, start, fs, channels, data, **extra), data


def _valid_frames():
    """One valid message of each kind."""
    return {
        "ecg": _samples()[0],
        "ann": encode_annotations("100", 0, 360.0, [10, 20], ["N", "V"], ["", "(VT"]),
        "ctl_start": encode_control("100", 0, "start", fs=360.0),
        "ctl_end": encode_control("100", 1, "end"),
    }


def _with_header(frames, mutate=None, raw=None, payload=None):
    """Frames with the header JSON changed by ``mutate(dict)`` (or replaced by ``raw``)."""
    topic_, header, pl = frames
    if raw is None:
        h = json.loads(header)
        if mutate is not None:
            mutate(h)
        raw = json.dumps(h).encode()  # allow_nan: NaN/Infinity tokens on purpose
    return [topic_, raw, pl if payload is None else payload]


def _set(key, value):
    def f(h):
        h[key] = value

    return f


def _del(key):
    def f(h):
        del h[key]

    return f


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fs", [125.0, 360.0, 1000.0])
@pytest.mark.parametrize("n_ch", [1, 2, 12])
def test_samples_round_trip(fs, n_ch):
    n = int(fs // 10)
    rng = np.random.default_rng(int(fs) + n_ch)
    data = rng.normal(0, 2, (n, n_ch)).astype(np.float32)
    channels = [f"L{i}" for i in range(n_ch)]
    frames = encode_samples("rec-1_a", 7, 123456, fs, channels, data, t=1.5)
    assert len(frames) == 3 and frames[0] == b"ecg.rec-1_a"
    assert len(frames[2]) == n * n_ch * 4
    msg = decode(frames)
    assert isinstance(msg, SampleChunk)
    assert msg.stream == "rec-1_a"
    assert msg.seq == 7
    assert msg.start == 123456
    assert msg.n == n and msg.stop == 123456 + n
    assert msg.fs == fs
    assert msg.channels == tuple(channels)
    assert msg.data.dtype == np.float32 and msg.data.shape == (n, n_ch)
    np.testing.assert_array_equal(msg.data, data)
    assert msg.has_nan is False
    assert msg.header["t"] == 1.5
    assert msg.header["units"] == "mV" and msg.header["dtype"] == "<f4"
    # sample-major little-endian float32 payload
    np.testing.assert_array_equal(np.frombuffer(frames[2], "<f4"), data.ravel())


def test_samples_one_dimensional_and_empty():
    msg = decode(encode_samples("s", 0, 0, 250, ["I"], np.arange(5, dtype=np.float64)))
    assert msg.data.shape == (5, 1)
    np.testing.assert_array_equal(msg.data[:, 0], np.arange(5, dtype=np.float32))
    assert isinstance(msg.fs, float)
    empty = decode(encode_samples("s", 1, 5, 250, ["I", "II"], np.zeros((0, 2), np.float32)))
    assert empty.n == 0 and empty.data.shape == (0, 2) and empty.stop == 5


def test_encode_samples_rejects_bad_shape():
    with pytest.raises(ValueError):
        encode_samples("s", 0, 0, 360, ["a", "b"], np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_samples("bad name", 0, 0, 360, ["a"], np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError):
        SampleEncoder("s", 360, ["a"]).encode(0, 0, np.zeros((4, 2), np.float32))


def test_nan_samples_are_flagged():
    data = np.ones((10, 2), np.float32)
    data[3, 1] = np.nan
    msg = decode(encode_samples("s", 0, 0, 360, ["a", "b"], data))
    assert msg.has_nan is True
    assert np.isnan(msg.data[3, 1]) and np.isfinite(np.delete(msg.data.ravel(), 7)).all()


def test_annotations_round_trip():
    frames = encode_annotations(
        "100", 3, 360.0, np.array([18, 77, 370]), ["+", "N", "V"], ["(N", "", "x"], extra=1
    )
    assert frames[0] == b"ann.100" and frames[2] == b""
    msg = decode(frames)
    assert isinstance(msg, AnnotationBatch)
    assert msg.stream == "100" and msg.seq == 3 and msg.fs == 360.0
    assert msg.sample.dtype == np.int64
    np.testing.assert_array_equal(msg.sample, [18, 77, 370])
    assert msg.symbol == ("+", "N", "V")
    assert msg.aux == ("(N", "", "x")
    assert msg.header["extra"] == 1
    # aux defaults to empty strings; empty batches are fine
    msg = decode(encode_annotations("100", 0, 360.0, [5], ["N"]))
    assert msg.aux == ("",)
    msg = decode(encode_annotations("100", 0, 360.0, [], []))
    assert msg.sample.shape == (0,) and msg.symbol == ()
    with pytest.raises(ValueError):
        encode_annotations("100", 0, 360.0, [1, 2], ["N"])


def test_control_round_trip():
    start = decode(encode_control("s", 0, "start", fs=360.0, channels=["MLII"]))
    assert isinstance(start, Control)
    assert start.event == "start" and start.eos is False and start.seq == 0
    assert start.header["fs"] == 360.0 and start.header["channels"] == ["MLII"]
    end = decode(encode_control("s", 1, "end", samples=10))
    assert end.event == "end" and end.eos is True and end.seq == 1
    assert end.header["samples"] == 10
    assert encode_control("s", 1, "end")[0] == b"ctl.s"
    with pytest.raises(ValueError):
        encode_control("s", 0, "pause")


@pytest.mark.parametrize("t", [None, 0.0, 1712345678.123456, 1e-7])
@pytest.mark.parametrize("n_ch", [1, 2, 12])
def test_sample_encoder_matches_encode_samples(t, n_ch):
    channels = [f"V{i}" for i in range(n_ch)] if n_ch != 2 else ["MLII", "é-lead"]
    enc = SampleEncoder("rec_9", 360, channels)
    rng = np.random.default_rng(n_ch)
    for seq, (start, n) in enumerate([(0, 36), (36, 1), (37, 0), (10**12, 100)]):
        data = rng.normal(0, 1, (n, n_ch)).astype(np.float32)
        extra = {} if t is None else {"t": t}
        ref = encode_samples("rec_9", seq, start, 360, channels, data, **extra)
        got = enc.encode(seq, start, data, t)
        assert got == ref
        assert decode(got).data.shape == (n, n_ch)
    # 1-D data for one channel, float64 input converted the same way
    if n_ch == 1:
        d = rng.normal(0, 1, 10)
        assert enc.encode(0, 0, d) == encode_samples("rec_9", 0, 0, 360, channels, d)


# --------------------------------------------------------------------------- malformed


def _bad(frames, match=None):
    with pytest.raises(WireFormatError, match=match):
        decode(frames)


@pytest.mark.parametrize("n", [0, 1, 2, 4, 5])
def test_wrong_frame_count(n):
    frames = _samples()[0]
    frames = (frames + [b""] * 3)[:n]
    _bad(frames, "3 frames")
    _bad(tuple(frames), "3 frames")


def test_not_a_frame_list():
    _bad(b"ecg.100")
    _bad(None)


@pytest.mark.parametrize(
    "topic_",
    [
        b"ecg.\xff\xfe",
        "ecg.é".encode(),
        b"foo.100",
        b"ECG.100",
        b"ecg100",
        b"ecg.",
        b"ecg",
        b"",
        b".100",
        b"ecg.a b",
        b"ecg.a.b",
        b"ecg.a/b",
        b"ecg.abc\n",
        b"ecg." + b"a" * 65,
    ],
)
def test_bad_topic(topic_):
    frames = _samples()[0]
    _bad([topic_, frames[1], frames[2]])


def test_longest_stream_name_is_fine():
    name = "a" * 64
    assert decode(encode_control(name, 0, "start")).stream == name
    with pytest.raises(ValueError):
        wire.topic("ecg", "a" * 65)
    with pytest.raises(ValueError):
        wire.topic("xyz", "a")
    for bad in ["", "a b", "abc\n", "é", 5, None]:
        with pytest.raises(ValueError):
            wire.check_stream_name(bad)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'v': 1}", b"\xff\xfe", b"{\"v\":1,}", b"[" * 100_000, b"{\"a\":" * 50_000],
)
def test_bad_json(raw):
    for frames in _valid_frames().values():
        _bad(_with_header(frames, raw=raw))


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b"true", b"[{\"v\":1}]"])
def test_header_not_an_object(raw):
    _bad(_with_header(_samples()[0], raw=raw), "object")


def test_header_too_large():
    big = _with_header(_samples()[0], _set("pad", "x" * (wire.MAX_HEADER_BYTES + 10)))
    _bad(big, "bytes")


REQUIRED = {
    "ecg": ["v", "stream", "seq", "start", "n", "fs", "channels", "units", "dtype"],
    "ann": ["v", "stream", "seq", "fs", "sample", "symbol", "aux"],
    "ctl_start": ["v", "stream", "seq", "event"],
    "ctl_end": ["v", "stream", "seq", "event", "eos"],
}


@pytest.mark.parametrize(
    "kind,name", [(k, f) for k, fields in REQUIRED.items() for f in fields]
)
def test_missing_required_field(kind, name):
    frames = _valid_frames()[kind]
    decode(frames)  # the unmutated message is valid
    _bad(_with_header(frames, _del(name)))


NAN = float("nan")

MISTYPED_ECG = [
    ("v", 2),
    ("v", 0),
    ("v", "1"),
    ("v", 1.0),
    ("v", True),
    ("v", None),
    ("stream", 100),
    ("stream", "101"),
    ("stream", None),
    ("seq", "1"),
    ("seq", True),
    ("seq", False),
    ("seq", 1.0),
    ("seq", -1),
    ("seq", None),
    ("seq", [0]),
    ("start", -1),
    ("start", "0"),
    ("start", 0.5),
    ("start", True),
    ("n", -36),
    ("n", 37),
    ("n", 35),
    ("n", 36.0),
    ("n", "36"),
    ("n", wire.MAX_SAMPLES_PER_MESSAGE + 1),
    ("fs", 0),
    ("fs", 0.0),
    ("fs", -360),
    ("fs", 1e6),
    ("fs", wire.MAX_FS_HZ * 1.0001),
    ("fs", 10**400),
    ("fs", -(10**400)),
    ("fs", NAN),
    ("fs", math.inf),
    ("fs", -math.inf),
    ("fs", "NaN"),
    ("fs", "360"),
    ("fs", True),
    ("fs", None),
    ("channels", "MLII"),
    ("channels", []),
    ("channels", ["ch0", 1]),
    ("channels", ["ch0"]),
    ("channels", ["ch0", "ch1", "ch2"]),
    ("channels", [f"c{i}" for i in range(wire.MAX_CHANNELS + 1)]),
    ("channels", {"a": 1}),
    ("units", "uV"),
    ("units", "MV"),
    ("units", None),
    ("dtype", "<f8"),
    ("dtype", ">f4"),
    ("dtype", "float32"),
    ("dtype", 4),
]


@pytest.mark.parametrize("name,value", MISTYPED_ECG, ids=[f"{n}={v!r}"[:40] for n, v in MISTYPED_ECG])
def test_mistyped_sample_fields(name, value):
    _bad(_with_header(_samples()[0], _set(name, value)))


def test_fs_limits_are_inclusive():
    frames, _ = _samples()
    assert decode(_with_header(frames, _set("fs", wire.MAX_FS_HZ))).fs == wire.MAX_FS_HZ
    assert decode(_with_header(frames, _set("fs", 360))).fs == 360.0
    assert decode(_with_header(frames, _set("fs", 1e-3))).fs == 1e-3


def test_unknown_fields_are_allowed():
    frames, data = _samples()
    msg = decode(_with_header(frames, _set("future", {"x": [1, 2, None]})))
    np.testing.assert_array_equal(msg.data, data)
    assert msg.header["future"] == {"x": [1, 2, None]}


@pytest.mark.parametrize("delta", [-4, -1, 1, 4, 8 * 36])
def test_payload_size_mismatch(delta):
    frames, data = _samples(n=36, n_ch=2)
    payload = frames[2] + b"\0" * delta if delta > 0 else frames[2][:delta]
    _bad([frames[0], frames[1], payload], "payload")


def test_payload_of_zero_samples_must_be_empty():
    frames = encode_samples("s", 0, 0, 360, ["a"], np.zeros((0, 1), np.float32))
    decode(frames)
    _bad([frames[0], frames[1], b"\0\0\0\0"], "payload")


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_payload(value):
    data = np.zeros((10, 2), np.float32)
    data[4, 0] = value
    data[5, 1] = np.nan  # NaN alongside does not excuse the inf
    _bad(encode_samples("s", 0, 0, 360, ["a", "b"], data), "infinite")


def test_stream_mismatch_between_topic_and_header():
    for frames in _valid_frames().values():
        _bad(_with_header(frames, _set("stream", "101")), "differs")
        t = frames[0].split(b".")[0] + b".101"
        _bad([t, frames[1], frames[2]], "differs")


@pytest.mark.parametrize(
    "name,value",
    [
        ("sample", [10]),
        ("sample", [10, 20, 30]),
        ("symbol", ["N"]),
        ("aux", ["", "", ""]),
        ("sample", [10, -1]),
        ("sample", [10, 2**63]),
        ("sample", [10, 10**400]),
        ("sample", [10, 20.0]),
        ("sample", [10, True]),
        ("sample", [10, "20"]),
        ("sample", "10,20"),
        ("symbol", ["N", 1]),
        ("symbol", "NV"),
        ("aux", ["", None]),
        ("aux", None),
        ("fs", 0),
        ("fs", NAN),
        ("fs", 10**400),
        ("seq", -1),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_bad_annotations(name, value):
    _bad(_with_header(_valid_frames()["ann"], _set(name, value)))


def test_annotation_lists_of_different_lengths_message():
    _bad(_with_header(_valid_frames()["ann"], _set("aux", [""])), "differ in length")


def test_annotation_and_control_payload_must_be_empty():
    for kind in ("ann", "ctl_start", "ctl_end"):
        _bad(_with_header(_valid_frames()[kind], payload=b"\0\0\0\0"), "empty payload")


@pytest.mark.parametrize(
    "mutate",
    [
        _set("eos", False),
        _del("eos"),
        _set("eos", "true"),
        _set("eos", 1),
        _set("event", "stop"),
        _set("event", "END"),
        _set("event", 1),
        _set("event", None),
    ],
)
def test_bad_control(mutate):
    _bad(_with_header(_valid_frames()["ctl_end"], mutate))


def test_end_control_without_eos_message():
    _bad(_with_header(_valid_frames()["ctl_end"], _del("eos")), "eos")


def test_start_control_eos_must_be_bool():
    frames = _valid_frames()["ctl_start"]
    assert decode(_with_header(frames, _set("eos", False))).eos is False
    _bad(_with_header(frames, _set("eos", "no")))


def test_wire_format_error_is_a_project_error():
    from replay.errors import EcgMonitorError

    assert issubclass(WireFormatError, EcgMonitorError)


# --------------------------------------------------------------------------- continuity


def _chunk(seq, start, n=10, stream="s"):
    return decode(encode_samples(stream, seq, start, 100, ["a"], np.zeros((n, 1), np.float32)))


def test_tracker_contiguous_stream_has_no_gap():
    tr = StreamTracker()
    for i in range(20):
        assert tr.check(_chunk(i, 10 * i)) is None


def test_tracker_gap_counts_messages_and_samples():
    tr = StreamTracker()
    assert tr.check(_chunk(0, 0)) is None
    assert tr.check(_chunk(1, 10)) is None
    gap = tr.check(_chunk(5, 50))  # seq 2, 3, 4 and samples 20..49 lost
    assert gap == Gap("s", "ecg", 3, 30, 20)
    assert tr.check(_chunk(6, 60)) is None
    # a sender that skips samples without skipping seq (e.g. a sensor dropout)
    gap = tr.check(_chunk(7, 75, n=5))
    assert gap == Gap("s", "ecg", 0, 5, 70)
    # first message of a stream starting late is no gap
    assert tr.check(_chunk(3, 1000, stream="other")) is None


def test_tracker_gap_in_annotations_and_controls():
    tr = StreamTracker()
    assert tr.check(decode(encode_annotations("s", 0, 100, [1], ["N"]))) is None
    gap = tr.check(decode(encode_annotations("s", 4, 100, [9], ["N"])))
    assert gap == Gap("s", "ann", 3, 0, -1)
    # sample and annotation topics have their own seq
    assert tr.check(_chunk(0, 0)) is None
    assert tr.check(decode(encode_control("s", 0, "end"))) is None
    gap = tr.check(decode(encode_control("s", 2, "end")))
    assert gap is not None and gap.kind == "ctl" and gap.missing_messages == 1


def test_tracker_start_going_backwards_raises():
    tr = StreamTracker()
    tr.check(_chunk(0, 0))
    tr.check(_chunk(1, 10))
    with pytest.raises(WireFormatError, match="backwards"):
        tr.check(_chunk(2, 15))  # overlaps samples 15..19
    with pytest.raises(WireFormatError, match="backwards"):
        tr.check(_chunk(3, 0))


@pytest.mark.parametrize("seq", [1, 0])
def test_tracker_repeated_seq_raises(seq):
    tr = StreamTracker()
    tr.check(_chunk(0, 0))
    tr.check(_chunk(1, 10))
    with pytest.raises(WireFormatError, match="seq"):
        tr.check(_chunk(seq, 20))
    tr2 = StreamTracker()
    tr2.check(decode(encode_annotations("s", 3, 100, [1], ["N"])))
    with pytest.raises(WireFormatError):
        tr2.check(decode(encode_annotations("s", 3, 100, [2], ["N"])))


def test_tracker_control_start_resets_stream():
    tr = StreamTracker()
    tr.check(decode(encode_control("s", 0, "start")))
    for i in range(5):
        tr.check(_chunk(i, 10 * i))
    tr.check(decode(encode_annotations("s", 0, 100, [1], ["N"])))
    tr.check(_chunk(0, 0, stream="t"))
    tr.check(_chunk(1, 10, stream="t"))
    # the sender restarts: seq and start from 0 again, no error, no gap
    assert tr.check(decode(encode_control("s", 0, "start"))) is None
    assert tr.check(_chunk(0, 0)) is None
    assert tr.check(_chunk(1, 10)) is None
    assert tr.check(decode(encode_annotations("s", 0, 100, [1], ["N"]))) is None
    # other streams are untouched
    with pytest.raises(WireFormatError):
        tr.check(_chunk(1, 10, stream="t"))
    # an 'end' control does not reset
    tr.check(decode(encode_control("s", 1, "end")))
    with pytest.raises(WireFormatError):
        tr.check(_chunk(0, 0))
    tr.reset()
    assert tr.check(_chunk(0, 0)) is None


# --------------------------------------------------------------------------- fuzzing

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**63, 10**400, -(10**400), 360, 1.0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "v", "stream", "seq", "start", "n", "fs", "channels", "units", "dtype",
    "sample", "symbol", "aux", "event", "eos", "t",
]
field_values = (
    json_values
    | st.sampled_from([1, "s", "mV", "<f4", "start", "end", True, 360.0, ["a"], [], [0], ["N"], [""]])
)
random_headers = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=5), field_values, max_size=12
)
topics = st.sampled_from(
    [b"ecg.s", b"ann.s", b"ctl.s", b"ecg.t", b"ecg.", b"xyz.s", b"ecg.s\n", b"\xffecg.s"]
) | st.binary(max_size=12)


def _json_bytes(h) -> bytes:
    return json.dumps(h).encode()


@st.composite
def random_message(draw):
    """A list of frames: random, a mutated valid message, or a random header."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.lists(st.binary(max_size=40) | st.builds(bytearray, st.binary(max_size=8)), max_size=5))
    if choice == 1:
        header = draw(random_headers)
        if draw(st.booleans()):
            header.setdefault("v", 1)
            header.setdefault("stream", "s")
            header.setdefault("seq", draw(st.integers(0, 3)))
        payload = draw(st.sampled_from([b"", b"\0\0\0\0", b"\0" * 8]) | st.binary(max_size=16))
        return [draw(topics), _json_bytes(header), payload]
    valid = draw(
        st.sampled_from(
            [
                encode_samples("s", 0, 0, 360, ["a", "b"], np.ones((3, 2), np.float32)),
                encode_samples("s", 1, 3, 360, ["a"], np.full((2, 1), np.nan, np.float32)),
                encode_annotations("s", 0, 360, [1, 2], ["N", "V"]),
                encode_control("s", 0, "start", fs=360.0),
                encode_control("s", 1, "end"),
            ]
        )
    )
    frames = [bytes(f) for f in valid]
    i = draw(st.integers(0, 2))
    if choice == 2:  # truncate or extend one frame
        cut = draw(st.integers(0, len(frames[i]) + 4))
        frames[i] = frames[i][:cut] if cut <= len(frames[i]) else frames[i] + b"\0" * (cut - len(frames[i]))
    elif choice == 3 and frames[i]:  # flip bits
        b = bytearray(frames[i])
        for pos in draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=4)):
            b[pos] ^= 1 << draw(st.integers(0, 7))
        frames[i] = bytes(b)
    else:  # change one header field to a random JSON value
        h = json.loads(frames[1])
        h[draw(st.sampled_from(sorted(h)))] = draw(json_values)
        frames[1] = _json_bytes(h)
    return frames


def _expect_bad(frames, tracker) -> bool:
    """Reference count: is this message invalid (decode or continuity)?"""
    try:
        tracker.check(decode(frames))
    except WireFormatError:
        return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_message(), min_size=1, max_size=6))
def test_fuzz_decode_and_receiver_counts(messages):
    rx = Receiver("inproc://fuzz-never-bound")
    try:
        ref = StreamTracker()
        expected_bad = 0
        for frames in messages:
            try:
                msg = decode(frames)
            except WireFormatError:
                pass
            else:
                assert isinstance(msg, (SampleChunk, AnnotationBatch, Control))
                re_decoded = decode(frames)  # decoding is deterministic
                assert type(re_decoded) is type(msg)
            expected_bad += _expect_bad(frames, ref)
            out = []
            rx._handle(frames, out)
            assert len(out) >= 1
            if isinstance(out[-1], BadMessage):
                assert out[-1].n_frames == len(frames)
        assert rx.stats.messages == len(messages)
        assert rx.stats.bad_messages == expected_bad
    finally:
        rx.close()


def test_receiver_handle_counts_bad_messages(ipc_endpoint):
    rx = Receiver(ipc_endpoint)
    try:
        out = []
        good, _ = _samples(stream="s", seq=0)
        rx._handle(good, out)
        rx._handle([b"ecg.s"], out)
        rx._handle([b"ecg.s", b"{", b""], out)
        rx._handle(good, out)  # repeated seq: continuity error, counted as bad
        rx._handle(_samples(stream="s", seq=3, start=36)[0], out)
        assert rx.stats.messages == 5
        assert rx.stats.bad_messages == 3
        assert rx.stats.sample_messages == 2
        assert rx.stats.gaps == 1 and rx.stats.missing_messages == 2
        kinds = [type(e).__name__ for e in out]
        assert kinds == ["SampleChunk", "BadMessage", "BadMessage", "BadMessage", "Gap", "SampleChunk"]
    finally:
        rx.close()


def test_receiver_filters_streams(ipc_endpoint):
    rx = Receiver(ipc_endpoint, streams=["s"])
    try:
        out = []
        rx._handle(_samples(stream="s10")[0], out)  # topic prefix match, other stream
        rx._handle(_samples(stream="s")[0], out)
        assert [m.stream for m in out] == ["s"]
        assert rx.stats.bad_messages == 0
    finally:
        rx.close()

"""Tests of replay.wfdb_source: lookup, download (faked), loading and every error path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from replay import wfdb_source
from replay.errors import ConfigError, EcgMonitorError, RecordError
from replay.wfdb_source import (
    DATA_DIR_ENV,
    Annotations,
    Record,
    default_data_dir,
    load_record,
    resolve_data_dir,
)

FS_MITDB = 360.0


def copy_record(src_dir: Path, dst_dir: Path, name: str = "100", exts=(".hea", ".dat", ".atr")) -> Path:
    """Copy the files of record ``name`` into ``dst_dir``; return the record path."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for ext in exts:
        shutil.copy(src_dir / f"{name}{ext}", dst_dir / f"{name}{ext}")
    return dst_dir / name


@pytest.fixture
def no_env(monkeypatch):
    """Remove ECG_DATA_DIR for lookup tests."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch, no_env) -> Path:
    """Point the default (cache) directory to an empty temporary folder."""
    d = tmp_path / "cache" / "mitdb"
    monkeypatch.setattr(wfdb_source, "default_data_dir", lambda database="mitdb": tmp_path / "cache" / database)
    return d


def forbid_download(monkeypatch):
    """Make any download attempt fail the test."""

    def _boom(*args, **kwargs):
        raise AssertionError(f"unexpected download: {args} {kwargs}")

    monkeypatch.setattr(wfdb, "dl_database", _boom)


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> str:
    """Check that the message is one line and contains each fragment."""
    msg = str(err.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------
# Data directory resolution
# ---------------------------------------------------------------------------
def test_default_data_dir_uses_platformdirs(monkeypatch, tmp_path):
    monkeypatch.setattr(wfdb_source.platformdirs, "user_cache_path", lambda app: tmp_path / app)
    assert default_data_dir() == tmp_path / "ecg-monitor" / "mitdb"
    assert default_data_dir("incartdb") == tmp_path / "ecg-monitor" / "incartdb"


def test_resolve_order_explicit_env_cache(monkeypatch, tmp_path, cache_dir):
    assert resolve_data_dir(None) == cache_dir
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    monkeypatch.setenv(DATA_DIR_ENV, "")  # empty means unset
    assert resolve_data_dir() == cache_dir


def test_resolve_rejects_wrong_type():
    with pytest.raises(TypeError, match="data_dir"):
        resolve_data_dir(3)


def test_lookup_explicit_dir_beats_env_and_cache(mitdb, monkeypatch, tmp_path, cache_dir):
    forbid_download(monkeypatch)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nothing-here"))
    rec = load_record("100", mitdb, duration_s=1.0)
    assert rec.path == str(Path(mitdb).absolute() / "100")
    assert rec.name == "100"


def test_lookup_env_dir_beats_cache(mitdb, monkeypatch, cache_dir):
    forbid_download(monkeypatch)
    monkeypatch.setenv(DATA_DIR_ENV, str(mitdb))
    rec = load_record("101", duration_s=1.0)
    assert rec.name == "101"
    assert rec.path == str(Path(mitdb).absolute() / "101")


def test_lookup_cache_dir_without_download(mitdb, monkeypatch, cache_dir):
    forbid_download(monkeypatch)
    copy_record(mitdb, cache_dir, "100")
    rec = load_record("100", duration_s=1.0)
    assert rec.path == str(cache_dir / "100")


# ---------------------------------------------------------------------------
# Path specs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".hea"])
def test_absolute_path_spec(mitdb, suffix, monkeypatch):
    forbid_download(monkeypatch)
    rec = load_record(f"{mitdb}/100{suffix}", "/does/not/matter", duration_s=2.0)
    assert rec.name == "100"
    assert rec.n_samples == 720
    assert rec.path == str(Path(mitdb).absolute() / "100")


@pytest.mark.parametrize("spec", ["./x/100", "x/100.hea", "x/100", "./x/100.hea"])
def test_relative_path_spec(mitdb, tmp_path, monkeypatch, spec):
    forbid_download(monkeypatch)
    copy_record(mitdb, tmp_path / "x")
    monkeypatch.chdir(tmp_path)
    rec = load_record(spec, duration_s=1.0)
    assert rec.path == str(tmp_path / "x" / "100")


def test_bare_hea_name_is_a_path(mitdb, tmp_path, monkeypatch):
    copy_record(mitdb, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_record("100.hea", duration_s=1.0).name == "100"


# ---------------------------------------------------------------------------
# Values, channels, windows, annotations
# ---------------------------------------------------------------------------
def test_record_fields_and_values_match_rdrecord(mitdb):
    rec = load_record("100", mitdb, start_s=10.0, duration_s=5.0)
    assert isinstance(rec, Record)
    assert rec.fs == FS_MITDB
    assert rec.channels == ["MLII", "V5"]
    assert rec.units == ["mV", "mV"]
    assert rec.signal.dtype == np.float32
    assert rec.signal.shape == (1800, 2) == (rec.n_samples, rec.n_channels)
    assert rec.duration_s == pytest.approx(5.0)
    ref = wfdb.rdrecord(str(mitdb / "100"), sampfrom=3600, sampto=5400).p_signal
    np.testing.assert_allclose(rec.signal, ref, atol=1e-6, rtol=0)


def test_whole_record_loads(mitdb):
    rec = load_record("100", mitdb, annotations=False)
    assert rec.n_samples == 650000
    assert rec.duration_s == pytest.approx(650000 / 360)
    assert rec.annotations is None


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (None, ["MLII", "V5"]),
        ("MLII", ["MLII"]),
        ("v5", ["V5"]),  # case-insensitive fallback
        (1, ["V5"]),
        ("0", ["MLII"]),
        (["V5", "MLII"], ["V5", "MLII"]),
        ([1, "0"], ["V5", "MLII"]),
        (("MLII",), ["MLII"]),
    ],
)
def test_channel_selection(mitdb, channels, expected):
    rec = load_record("100", mitdb, channels=channels, duration_s=1.0, annotations=False)
    assert rec.channels == expected
    full = wfdb.rdrecord(str(mitdb / "100"), sampto=360)
    cols = [full.sig_name.index(c) for c in expected]
    np.testing.assert_allclose(rec.signal, full.p_signal[:, cols], atol=1e-6, rtol=0)


def test_annotation_cropping(mitdb):
    start_s, duration_s = 100.0, 30.0
    a, b = int(start_s * FS_MITDB), int((start_s + duration_s) * FS_MITDB)
    rec = load_record("100", mitdb, start_s=start_s, duration_s=duration_s)
    full = wfdb.rdann(str(mitdb / "100"), "atr")
    keep = (full.sample >= a) & (full.sample < b)
    ann = rec.annotations
    assert isinstance(ann, Annotations)
    assert ann.sample.dtype == np.int64
    np.testing.assert_array_equal(ann.sample, full.sample[keep] - a)
    assert ann.symbol == [s for s, k in zip(full.symbol, keep, strict=True) if k]
    assert len(ann) == len(ann.symbol) == len(ann.aux) > 0
    assert ann.sample.min() >= 0 and ann.sample.max() < rec.n_samples


def test_annotations_hold_rhythm_aux_notes(mitdb):
    rec = load_record("203", mitdb, channels="MLII")
    assert {"(VT", "(AFIB"} <= set(rec.annotations.aux)
    assert "" in rec.annotations.aux
    assert not any("\x00" in a for a in rec.annotations.aux)


def test_annotations_off_or_absent(mitdb, tmp_path):
    assert load_record("100", mitdb, annotations=False, duration_s=1.0).annotations is None
    path = copy_record(mitdb, tmp_path, exts=(".hea", ".dat"))
    assert load_record(str(path), duration_s=1.0).annotations is None


# ---------------------------------------------------------------------------
# Records of other rates, channel counts and units (written with wfdb.wrsamp)
# ---------------------------------------------------------------------------
def _write(tmp_path, name, fs, p_signal, units, sig_name, fmt, adc_gain, ann=None):
    wfdb.wrsamp(
        name,
        fs=fs,
        units=units,
        sig_name=sig_name,
        p_signal=p_signal,
        fmt=fmt,
        adc_gain=adc_gain,
        baseline=[0] * len(units),
        write_dir=str(tmp_path),
    )
    if ann is not None:
        wfdb.wrann(name, "atr", np.asarray(ann[0]), symbol=ann[1], write_dir=str(tmp_path), fs=fs)
    return tmp_path / name


@pytest.mark.parametrize(
    ("fs", "n_ch", "units", "scale"),
    [
        (125.0, 1, ["mV"], 1.0),
        (1000.0, 3, ["mV", "mV", "mV"], 1.0),
        (500.0, 2, ["uV", "uV"], 1e-3),
        (250.0, 1, ["V"], 1e3),
    ],
)
def test_other_rates_channels_units(tmp_path, fs, n_ch, units, scale):
    rng = np.random.default_rng(0)
    n = int(fs * 4)
    t = np.arange(n) / fs
    mv = np.stack([np.sin(2 * np.pi * (1 + k) * t) + 0.1 * rng.standard_normal(n) for k in range(n_ch)], axis=1)
    p = mv / scale  # in the record's units
    gain = [200.0 * scale] * n_ch  # 200 adu/mV
    names = [f"L{k}" for k in range(n_ch)]
    ann = ([10, int(fs), n - 5], ["N", "V", "N"])
    path = _write(tmp_path, f"r{int(fs)}", fs, p, units, names, ["16"] * n_ch, gain, ann=ann)
    rec = load_record(str(path), start_s=0.5, duration_s=2.0)
    assert rec.fs == fs
    assert rec.channels == names
    assert rec.units == ["mV"] * n_ch
    assert rec.signal.shape == (int(2 * fs), n_ch)
    ref = wfdb.rdrecord(str(path)).p_signal * scale
    a = int(0.5 * fs)
    np.testing.assert_allclose(rec.signal, ref[a : a + int(2 * fs)], atol=1e-6, rtol=0)
    np.testing.assert_allclose(rec.signal, mv[a : a + int(2 * fs)], atol=0.01)  # truly mV
    # only the annotation at 1 s lies in the window [0.5 s, 2.5 s)
    assert list(rec.annotations.sample) == [int(fs) - a]
    assert rec.annotations.symbol == ["V"]


def test_invalid_samples_are_nan(tmp_path):
    sig = np.array([[0.1, 0.2], [np.nan, 0.3], [0.5, np.nan], [0.0, 0.0]])
    path = _write(tmp_path, "gap", 250.0, sig, ["mV", "mV"], ["I", "II"], ["16", "16"], [200.0, 200.0])
    rec = load_record(str(path))
    np.testing.assert_array_equal(np.isnan(rec.signal), np.isnan(sig))
    np.testing.assert_allclose(rec.signal[~np.isnan(sig)], sig[~np.isnan(sig)], atol=1e-6)


def test_multi_segment_record(tmp_path):
    for i in (1, 2):
        sig = np.stack([np.sin(np.arange(500) / 10 + i), np.cos(np.arange(500) / 10)], axis=1)
        _write(tmp_path, f"seg{i}", 125.0, sig, ["mV", "mV"], ["I", "II"], ["16", "16"], [200.0, 200.0])
    (tmp_path / "multi.hea").write_text("multi/2 2 125 1000\nseg1 500\nseg2 500\n")
    rec = load_record(str(tmp_path / "multi"), start_s=2.0, duration_s=4.0, channels="II")
    assert rec.channels == ["II"] and rec.signal.shape == (500, 1)
    ref = wfdb.rdrecord(str(tmp_path / "multi"), sampfrom=250, sampto=750, channels=[1]).p_signal
    np.testing.assert_allclose(rec.signal, ref, atol=1e-6, rtol=0)
    (tmp_path / "seg2.dat").unlink()
    with pytest.raises(RecordError) as err:
        load_record(str(tmp_path / "multi"))
    assert_one_line(err, str(tmp_path / "seg2.dat"), "signal file missing")


# ---------------------------------------------------------------------------
# Download on a cache miss (faked)
# ---------------------------------------------------------------------------
def test_download_on_cache_miss(mitdb, monkeypatch, cache_dir, capsys):
    calls = []

    def fake_dl_database(db_dir, dl_dir, records="all", annotators="all", **kwargs):
        calls.append((db_dir, dl_dir, records, annotators))
        print("Downloading files...")  # wfdb prints; it must not reach stdout
        for name in records:
            copy_record(mitdb, Path(dl_dir), name)

    monkeypatch.setattr(wfdb, "dl_database", fake_dl_database)
    rec = load_record("100", duration_s=1.0)
    assert calls == [("mitdb", str(cache_dir), ["100"], ["atr"])]
    assert rec.path == str(cache_dir / "100")
    assert rec.annotations is not None
    assert capsys.readouterr().out == ""
    # second time: cached, no download
    load_record("100", duration_s=1.0)
    assert len(calls) == 1


def test_download_failure_gives_one_clear_error(monkeypatch, cache_dir):
    def failing(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'physionet.org'\n(Name or service not known)")

    monkeypatch.setattr(wfdb, "dl_database", failing)
    with pytest.raises(RecordError) as err:
        load_record("100")
    assert_one_line(err, "100", "could not be downloaded", "--data-dir", "ECG_DATA_DIR", "sim:72", "ConnectionError")
    assert isinstance(err.value.__cause__, ConnectionError)


def test_download_that_yields_nothing(monkeypatch, cache_dir):
    monkeypatch.setattr(wfdb, "dl_database", lambda *a, **k: None)
    with pytest.raises(RecordError) as err:
        load_record("100")
    assert_one_line(err, "100.hea", "missing after download", "sim:72")


def test_no_download_when_disabled(monkeypatch, cache_dir):
    forbid_download(monkeypatch)
    with pytest.raises(RecordError) as err:
        load_record("100", download=False)
    assert_one_line(err, "100.hea", "not found", "--data-dir")


def test_no_download_from_explicit_dir(monkeypatch, tmp_path, cache_dir):
    forbid_download(monkeypatch)
    with pytest.raises(RecordError) as err:
        load_record("100", tmp_path)
    assert_one_line(err, str(tmp_path / "100.hea"), "not found", "--data-dir", "sim:72")


def test_no_download_from_env_dir(monkeypatch, tmp_path, cache_dir):
    forbid_download(monkeypatch)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(RecordError) as err:
        load_record("100")
    assert_one_line(err, str(tmp_path / "100.hea"), "ECG_DATA_DIR")


def test_explicit_dir_that_does_not_exist(monkeypatch, tmp_path, no_env):
    forbid_download(monkeypatch)
    with pytest.raises(RecordError) as err:
        load_record("100", tmp_path / "nope")
    assert_one_line(err, str(tmp_path / "nope"), "does not exist")


# ---------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------
def test_missing_record_path(tmp_path):
    with pytest.raises(RecordError) as err:
        load_record(str(tmp_path / "999"))
    assert_one_line(err, str(tmp_path / "999.hea"), "record not found")


def test_missing_dat(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path, exts=(".hea", ".atr"))
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, str(tmp_path / "100.dat"), "signal file missing")


@pytest.mark.parametrize(
    "header",
    [
        "garbage here\nfoo bar\n",
        "",
        "100 2 abc 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n",
        "100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n",  # one signal line missing
    ],
    ids=["garbage", "empty", "bad-fs", "too-few-signal-lines"],
)
def test_corrupt_header(mitdb, tmp_path, header):
    path = copy_record(mitdb, tmp_path)
    (tmp_path / "100.hea").write_text(header)
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, str(tmp_path / "100.hea"), "header")


def test_corrupt_header_names_the_file(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path)
    (tmp_path / "100.hea").write_text("garbage here\n")
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, str(tmp_path / "100.hea"), "corrupt or unparseable header")


def test_zero_sampling_frequency(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path)
    hea = tmp_path / "100.hea"
    hea.write_text(hea.read_text().replace("100 2 360 650000", "100 2 0 650000"))
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, "100.hea", "sampling frequency")


def test_truncated_dat(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path)
    dat = tmp_path / "100.dat"
    data = dat.read_bytes()
    dat.write_bytes(data[: len(data) // 3])  # format 212, 2 channels: 3 bytes per frame
    with pytest.raises(RecordError) as err:
        load_record(str(path), duration_s=1.0)
    assert_one_line(err, str(dat), f"signal file truncated: expected 650000 samples, found {len(data) // 3 // 3}")


def test_short_read_detected_even_if_wfdb_is_silent(mitdb, monkeypatch):
    real = wfdb.rdrecord

    def short(*args, **kwargs):
        rec = real(*args, **kwargs)
        rec.p_signal = rec.p_signal[:-10]
        return rec

    monkeypatch.setattr(wfdb, "rdrecord", short)
    with pytest.raises(RecordError) as err:
        load_record("100", mitdb, duration_s=1.0)
    assert_one_line(err, "signal file truncated: expected 360 samples, found 350")


def test_wfdb_exceptions_are_wrapped(mitdb, monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("index 3 is out of bounds")

    monkeypatch.setattr(wfdb, "rdrecord", broken)
    with pytest.raises(RecordError) as err:
        load_record("100", mitdb, duration_s=1.0)
    assert_one_line(err, "100", "cannot read signal", "IndexError")


def test_corrupt_annotation_file(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path)
    (tmp_path / "100.atr").write_bytes(b"\xff" * 7)
    with pytest.raises(RecordError) as err:
        load_record(str(path), duration_s=1.0)
    assert_one_line(err, str(tmp_path / "100.atr"), "annotation")
    # ... which annotations=False sidesteps
    assert load_record(str(path), duration_s=1.0, annotations=False).annotations is None


@pytest.mark.parametrize(
    ("channels", "fragments"),
    [
        ("V1", ["no channel 'V1'", "0='MLII'", "1='V5'"]),
        ("MLIII", ["no channel 'MLIII'", "did you mean 'MLII'"]),
        (2, ["no channel index 2", "2 channel(s)", "'MLII'"]),
        ("7", ["no channel index 7"]),
        (["MLII", "aVF"], ["no channel 'aVF'"]),
    ],
)
def test_unknown_channel(mitdb, channels, fragments):
    with pytest.raises(RecordError) as err:
        load_record("100", mitdb, channels=channels)
    assert_one_line(err, str(mitdb / "100"), *fragments)


def test_bad_channels_argument(mitdb):
    with pytest.raises(TypeError, match="channels"):
        load_record("100", mitdb, channels=1.5)
    with pytest.raises(ConfigError, match="at least one"):
        load_record("100", mitdb, channels=[])


def test_unsupported_format(mitdb, tmp_path):
    path = copy_record(mitdb, tmp_path)
    hea = tmp_path / "100.hea"
    hea.write_text(hea.read_text().replace(" 212 ", " 999 "))
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, "100.hea", "unsupported signal format 999")


def test_unsupported_unit(tmp_path):
    sig = np.stack([np.linspace(0, 1, 100), np.linspace(80, 120, 100)], axis=1)
    path = _write(tmp_path, "abp", 125.0, sig, ["mV", "mmHg"], ["ECG", "ABP"], ["16", "16"], [200.0, 10.0])
    with pytest.raises(RecordError) as err:
        load_record(str(path))
    assert_one_line(err, "abp", "'ABP'", "unsupported unit 'mmHg'", "--channels")
    assert load_record(str(path), channels="ECG").channels == ["ECG"]


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragments"),
    [
        ({"start_s": -1.0}, ConfigError, ["start_s must be >= 0"]),
        ({"start_s": float("nan")}, ConfigError, ["start_s must be a finite"]),
        ({"duration_s": 0.0}, ConfigError, ["duration_s must be > 0"]),
        ({"duration_s": -5.0}, ConfigError, ["duration_s"]),
        ({"duration_s": 1e-4}, RecordError, ["shorter than one sample"]),
        ({"start_s": 1805.6}, RecordError, ["start_s=1805.6 s is at or beyond the end", "1805.556 s"]),
        ({"start_s": 5000.0}, RecordError, ["beyond the end"]),
        ({"start_s": 1800.0, "duration_s": 10.0}, RecordError, ["goes beyond the end", "at most 5.556 s"]),
        ({"start_s": "10"}, TypeError, ["start_s"]),
    ],
)
def test_bad_start_duration(mitdb, kwargs, exc, fragments):
    with pytest.raises(exc) as err:
        load_record("100", mitdb, **kwargs)
    assert_one_line(err, *fragments)
    assert isinstance(err.value, (EcgMonitorError, TypeError))


def test_window_up_to_the_end(mitdb):
    rec = load_record("100", mitdb, start_s=1800.0)
    assert rec.n_samples == 650000 - 648000
    assert rec.annotations.sample.max() < rec.n_samples


def test_bad_spec_arguments(mitdb):
    with pytest.raises(ConfigError, match="empty"):
        load_record("  ", mitdb)
    with pytest.raises(TypeError, match="spec"):
        load_record(100, mitdb)
    with pytest.raises(ConfigError, match="database"):
        load_record("100", mitdb, database="../etc")

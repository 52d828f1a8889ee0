"""Alarm engine: every rule on synthetic beats, latching, silence, suppression, config, MIT-BIH."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.alarms import CODES, PRIORITY_OF, AlarmConfig, AlarmEngine
from replay.errors import ConfigError

FS = 250.0


def beat(t_s: float, label: str = "N", **extra) -> dict:
    """A beat event at ``t_s`` seconds."""
    ev = {"type": "beat", "stream": "s", "sample": round(t_s * FS), "label": label}
    ev.update(extra)
    return ev


def status(t_s: float, name: str) -> dict:
    return {"type": "status", "stream": "s", "status": name, "sample": round(t_s * FS)}


def beats_at(times, labels=None) -> list[dict]:
    labels = labels or ["N"] * len(times)
    return [beat(t, lab) for t, lab in zip(times, labels, strict=True)]


def regular(start_s: float, n: int, hr_bpm: float, label: str = "N") -> list[dict]:
    rr = 60.0 / hr_bpm
    return [beat(start_s + i * rr, label) for i in range(n)]


def run(events, end_s: float, config: AlarmConfig | None = None, step_s: float = 1.0, engine=None):
    """Feed events in ticks of ``step_s`` up to ``end_s``; return (engine, alarm events)."""
    engine = engine or AlarmEngine(FS, "s", config)
    events = sorted(events, key=lambda e: e["sample"])
    out = []
    step = int(step_s * FS)
    i = 0
    for t in range(step, int(end_s * FS) + step, step):
        chunk = []
        while i < len(events) and events[i]["sample"] < t:
            chunk.append(events[i])
            i += 1
        out.extend(engine.process(chunk, t))
    return engine, out


def ons(out, code=None):
    return [e for e in out if e["state"] == "on" and (code is None or e["code"] == code)]


def offs(out, code):
    return [e for e in out if e["state"] == "off" and e["code"] == code]


def codes_on(out) -> set[str]:
    return {e["code"] for e in ons(out)}


# --------------------------------------------------------------------------- rules
def test_normal_rhythm_raises_nothing():
    _, out = run(regular(0, 120, 72), 100)
    assert out == []


def test_event_format():
    _, out = run(regular(0, 3, 60), 10)
    e = ons(out, "asystole")[0]
    assert set(e) >= {"type", "code", "priority", "state", "stream", "sample", "time", "message"}
    assert e["type"] == "alarm" and e["priority"] == "high" and e["stream"] == "s"
    assert e["sample"] == round((2 + 4) * FS) and e["time"] == pytest.approx(6.0)
    assert "4 s" in e["message"]


def test_asystole_fires_without_beats_and_latches_until_acknowledged():
    eng, out = run(regular(0, 10, 60), 20)
    assert [e["sample"] for e in ons(out, "asystole")] == [int(13 * FS)]
    # pause came first, then was superseded by asystole
    assert ons(out, "pause")[0]["sample"] == int(11 * FS)
    assert offs(out, "pause")[0]["reason"] == "superseded"
    # beats resume: the condition is gone but the alarm stays on (latched)
    _, out2 = run(regular(20, 20, 60), 40, engine=eng)
    assert not offs(out2, "asystole")
    assert [a.code for a in eng.active_alarms() if a.priority == "high"] == ["asystole"]
    off = eng.acknowledge("asystole")
    assert off and off[0]["state"] == "off" and off[0]["reason"] == "acknowledged"
    assert not eng.active_alarms()


def test_acknowledged_latched_alarm_turns_off_when_condition_goes():
    eng, out = run(regular(0, 5, 60), 12)
    assert ons(out, "asystole")
    assert eng.acknowledge() == []  # condition still present: stays on
    assert eng.active_alarms()[0].acknowledged
    assert not eng.active()["flash"]
    _, out2 = run([beat(12.5)], 13, engine=eng)
    assert [e["reason"] for e in offs(out2, "asystole")] == ["cleared"]


@pytest.mark.parametrize(
    ("hr", "code", "other"),
    [(150, "tachy_extreme", "tachy"), (130, "tachy", "tachy_extreme"),
     (45, "brady", "brady_extreme"), (35, "brady_extreme", "brady")],
)  # fmt: skip
def test_rate_alarms_fire_after_persistence_and_clear(hr, code, other):
    beats = regular(30 - 36 * 60 / 72, 36, 72)
    beats += regular(30, int(30 * hr / 60), hr)
    t_back = 30 + int(30 * hr / 60) * 60 / hr
    beats += regular(t_back, 60, 72)
    eng, out = run(beats, t_back + 40)
    on = ons(out, code)
    assert len(on) == 1, out
    persist = 2.0 if "extreme" in code else 5.0
    # the median of 8 RR follows after 4 beats; the alarm waits for the persistence
    assert 30 + persist <= on[0]["time"] <= 30 + persist + 8 * 60 / hr
    # superseded (tachy), or not reached during the episode (the median may pass
    # through the medium range on the way back)
    assert not [e for e in ons(out, other) if e["time"] < t_back]
    if PRIORITY_OF[code] == "medium":
        off = offs(out, code)
        assert off and off[0]["time"] > t_back
    else:
        assert not offs(out, code)  # latched
        eng.acknowledge(code)
        assert code not in {a.code for a in eng.active_alarms()}


def test_tachy_extreme_supersedes_tachy_already_on():
    beats = regular(0, 10, 72) + regular(10, 15, 130) + regular(10 + 15 * 60 / 130, 40, 160)
    _, out = run(beats, 35)
    assert ons(out, "tachy") and ons(out, "tachy_extreme")
    assert offs(out, "tachy")[0]["reason"] == "superseded"


def test_pause():
    times = [i * 0.8 for i in range(20)] + [15.2 + 2.5 + i * 0.8 for i in range(30)]
    _, out = run(beats_at(times), 41)
    assert [round(e["time"], 1) for e in ons(out, "pause")] == [17.2]
    assert not ons(out, "asystole")
    assert offs(out, "pause")[0]["time"] == pytest.approx(17.7 + 10.0, abs=0.01)


def _with_v(n_before: int, pattern: str, rr: float = 0.8, v_rr: float | None = None) -> list[dict]:
    """Normal beats, then ``pattern`` ('V'/'N' characters), then normal beats."""
    t, out = 0.0, []
    for _ in range(n_before):
        out.append(beat(t))
        t += rr
    for ch in pattern:
        out.append(beat(t, "V" if ch == "V" else "N"))
        t += v_rr if (v_rr and ch == "V") else rr
    for _ in range(100):
        out.append(beat(t))
        t += rr
    return out


def test_vtach_five_fast_v_beats_latching():
    eng, out = run(_with_v(10, "VVVVVV", v_rr=0.4), 60)
    on = ons(out, "vtach")
    assert len(on) == 1 and "V beats" in on[0]["message"]
    # at the fifth V beat: 10 normal beats at 0.8 s, then V beats every 0.4 s
    assert on[0]["time"] == pytest.approx(10 * 0.8 + 4 * 0.4, abs=0.01)
    assert not offs(out, "vtach")
    assert not ons(out, "couplet")
    eng.acknowledge()
    assert "vtach" not in {a.code for a in eng.active_alarms()}


def test_slow_ventricular_run_is_vrun_not_vtach():
    _, out = run(_with_v(10, "VVVVVV", v_rr=1.0), 60)
    assert not ons(out, "vtach") and ons(out, "vrun")


@pytest.mark.parametrize(("pattern", "expected"), [("VVV", "vrun"), ("VVVV", "vrun"), ("VV", "couplet")])
def test_short_runs(pattern, expected):
    _, out = run(_with_v(10, pattern, v_rr=0.5), 60)
    assert codes_on(out) - {"pvc_rate"} == {expected}, out
    assert offs(out, expected)  # medium/low alarms clear after hold_s


def test_vrun_supersedes_couplet_and_vtach_supersedes_vrun():
    _, out = run(_with_v(10, "VVVVVVVV", v_rr=0.45), 60)
    assert ons(out, "vrun") and ons(out, "vtach")
    assert offs(out, "vrun")[0]["reason"] == "superseded"


def test_bigeminy_and_trigeminy():
    _, out = run(_with_v(10, "VNVNVNVNVNVNVN", v_rr=0.8), 60)
    assert ons(out, "bigeminy") and not ons(out, "trigeminy")
    assert offs(out, "bigeminy")
    _, out = run(_with_v(10, "NVNNVNNVNNVNNVN", v_rr=0.8), 60)
    assert ons(out, "trigeminy") and not ons(out, "bigeminy")


def test_r_on_t():
    _, out = run(_with_v(10, "V", v_rr=0.8), 40)  # V at the normal RR: not R-on-T
    assert not ons(out, "r_on_t")
    beats = [beat(i * 0.8) for i in range(10)] + [beat(9 * 0.8 + 0.3, "V")]
    beats += [beat(9 * 0.8 + 1.6 + i * 0.8) for i in range(20)]
    _, out = run(beats, 40)
    assert ons(out, "r_on_t") and "0.30 s" in ons(out, "r_on_t")[0]["message"]


def test_pvc_rate():
    # every 5th beat a V: 75 bpm / 5 = 15 PVCs per minute
    labels = ["V" if i % 5 == 4 else "N" for i in range(150)]
    _, out = run(beats_at([i * 0.8 for i in range(150)], labels), 125)
    assert ons(out, "pvc_rate")
    labels = ["V" if i % 10 == 9 else "N" for i in range(150)]  # 7.5 per minute
    _, out = run(beats_at([i * 0.8 for i in range(150)], labels), 125)
    assert not ons(out, "pvc_rate")


def test_afib_from_irregular_rr_only():
    rng = np.random.default_rng(1)
    rr = rng.uniform(0.45, 1.1, 150)
    times = np.concatenate(([0.0], np.cumsum(rr)))
    _, out = run(beats_at(times.tolist()), float(times[-1]) + 1)
    assert ons(out, "afib")
    # sinus arrhythmia-like slow modulation stays quiet
    t = np.arange(200) * 0.8
    t = t + 0.05 * np.sin(2 * np.pi * t / 5.0)
    _, out = run(beats_at(t.tolist()), float(t[-1]) + 1)
    assert not ons(out, "afib")


def test_aami_v_counts_as_ventricular():
    beats = [beat(i * 0.8) for i in range(10)]
    beats += [beat(8.0 + i * 0.4, "?", aami="V") for i in range(6)]
    _, out = run(beats, 20)
    assert ons(out, "vtach")


def test_vfib_from_a_5_hz_sine():
    fs, eng = FS, AlarmEngine(FS, "s")
    t = np.arange(int(20 * fs)) / fs
    x = np.where(t < 8.0, 0.02 * np.sin(2 * np.pi * 1.2 * t), 1.0 * np.sin(2 * np.pi * 5.0 * t))
    beats = regular(0, 10, 75)
    out = []
    for k in range(0, t.size, int(0.5 * fs)):
        chunk = x[k : k + int(0.5 * fs)]
        evs = [b for b in beats if k <= b["sample"] < k + chunk.size]
        out += eng.process(evs, k + chunk.size, chunk, k)
    on = ons(out, "vfib")
    assert len(on) == 1 and 8.0 < on[0]["time"] <= 8.0 + 4.0 + 2.0 + 1.0
    assert abs(float(on[0]["message"].split(": ")[1].split(" Hz")[0]) - 5.0) <= 0.15
    # asystole is superseded by VF
    assert not ons(out, "asystole") or offs(out, "asystole")[0]["reason"] == "superseded"


def test_vfib_is_chunk_invariant():
    t = np.arange(int(16 * FS)) / FS
    x = np.sin(2 * np.pi * 4.0 * t) * (t > 5)
    results = []
    for size in (1, 37, 250, t.size):
        eng, out = AlarmEngine(FS, "s"), []
        for k in range(0, t.size, size):
            out += eng.process([], k + min(size, t.size - k), x[k : k + size])
        results.append([(e["code"], e["state"], e["sample"]) for e in out if e["code"] == "vfib"])
    assert results[0] and all(r == results[0] for r in results)


def test_noise_like_signal_is_not_vfib():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, int(30 * FS))
    eng = AlarmEngine(FS, "s")
    out = eng.process(regular(0, 38, 75), int(30 * FS), x, 0)
    assert not ons(out, "vfib")


# --------------------------------------------------------------------------- technical
def test_leads_off_suppresses_asystole_and_no_data_too():
    events = regular(0, 10, 60) + [status(9.5, "lead-off"), status(30, "lead-on")]
    _, out = run(events, 31)
    assert [e["code"] for e in ons(out)] == ["leads_off"]
    assert offs(out, "leads_off")[0]["time"] == pytest.approx(30)
    # asystole clock restarts at lead-on: 4 s later without beats it fires
    _, out = run(events, 36)
    assert ons(out, "asystole")[0]["time"] == pytest.approx(34)
    events = regular(0, 10, 60) + [status(9.5, "no-data"), status(40, "data")] + regular(40.5, 10, 60)
    _, out = run(events, 50)
    assert codes_on(out) == {"no_data"}
    assert ons(out, "no_data")[0]["priority"] == "technical"


def test_noise_suppresses_tachycardia():
    events = regular(0, 10, 72) + [status(8.0, "noisy")] + regular(8.5, 60, 170) + [status(30, "clean")]
    _, out = run(events, 29)
    assert codes_on(out) == {"noisy"}


def test_noise_turns_off_active_medium_alarm():
    events = regular(0, 60, 130) + [status(20, "noisy")]
    _, out = run(events, 25)
    assert ons(out, "tachy") and offs(out, "tachy")[0]["reason"] == "suppressed"


def test_end_turns_everything_off():
    eng, out = run(regular(0, 5, 60), 12)
    out = eng.process([{"type": "status", "status": "end", "sample": int(12 * FS)}], int(12 * FS))
    assert [(e["code"], e["reason"]) for e in out] == [("asystole", "end")]
    assert eng.active_alarms() == []


# --------------------------------------------------------------------------- silence
def test_silence_pauses_audio_for_two_minutes():
    eng, _ = run(regular(0, 5, 60), 12)
    assert eng.active()["audible"] == "high" and eng.active()["flash"]
    until = eng.silence()
    assert until == pytest.approx(12 + 120)
    state = eng.active()
    assert state["audible"] is None and not state["flash"] and state["audio_paused_until_s"] == until
    assert [a.code for a in state["alarms"]] == ["asystole"]  # still listed
    _, _out = run([], 130, engine=eng)
    assert not eng.active()["audible"]
    eng.process([], int(133 * FS))
    assert eng.active()["audible"] == "high"


def test_reset_forgets_everything():
    eng, _ = run(regular(0, 5, 60), 12)
    eng.reset()
    assert eng.active_alarms() == [] and eng.now_sample is None


def test_disabled_alarm_never_fires():
    cfg = AlarmConfig(disabled=("pause",))
    _, out = run(regular(0, 5, 60), 12, cfg)
    assert codes_on(out) == {"asystole"}


# --------------------------------------------------------------------------- config
def test_config_defaults_and_every_code_has_a_priority():
    cfg = AlarmConfig()
    assert cfg.asystole_s == 4.0 and cfg.hr_high_bpm == 120 and cfg.hr_extreme_high_bpm == 140
    assert set(CODES) == set(PRIORITY_OF)


def test_config_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'asystol_s'.*Did you mean 'asystole_s'"):
        AlarmConfig.from_mapping({"asystol_s": 5})


def test_config_unit_suffix_may_be_left_out():
    cfg = AlarmConfig().with_overrides(["hr_high=130", "asystole=5", "disabled=afib,pvc_rate"])
    assert cfg.hr_high_bpm == 130 and cfg.asystole_s == 5.0 and cfg.disabled == ("afib", "pvc_rate")


def test_config_out_of_range_names_key_value_and_range():
    with pytest.raises(ConfigError, match=r"asystole_s must be <= 15.*got 30.*allowed: 1 to 15 s"):
        AlarmConfig.from_mapping({"asystole_s": 30})
    with pytest.raises(ConfigError, match="hr_low_bpm < hr_high_bpm"):
        AlarmConfig(hr_low_bpm=100, hr_high_bpm=90)


def test_config_wrong_type():
    with pytest.raises(TypeError, match="hr_high_bpm must be a number"):
        AlarmConfig.from_mapping({"hr_high_bpm": "fast"})
    with pytest.raises(TypeError, match="vtach_beats must be an integer"):
        AlarmConfig.from_mapping({"vtach_beats": 5.5})
    with pytest.raises(TypeError):
        AlarmConfig.from_mapping({"hold_s": True})
    with pytest.raises(ConfigError, match="--alarm.*hr_high_bpm must be a number"):
        AlarmConfig().with_overrides(["hr_high=fast"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        AlarmConfig().with_overrides(["hr_high"])
    with pytest.raises(ConfigError, match="Did you mean 'afib'"):
        AlarmConfig(disabled=("afb",))


def test_config_toml(tmp_path):
    path = tmp_path / "alarms.toml"
    path.write_text('[alarms]\nhr_high_bpm = 130\nasystole_s = 5\ndisabled = ["afib"]\n')
    cfg = AlarmConfig.from_toml(path)
    assert cfg.hr_high_bpm == 130 and cfg.asystole_s == 5.0 and cfg.disabled == ("afib",)
    bad = tmp_path / "bad.toml"
    bad.write_text("hr_high_bpm = = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*not a valid TOML"):
        AlarmConfig.from_toml(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("hr_hihg_bpm = 130\n")
    with pytest.raises(ConfigError, match=r"typo\.toml.*Did you mean 'hr_high_bpm'"):
        AlarmConfig.from_toml(typo)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('hr_high_bpm = "130"\n')
    with pytest.raises(ConfigError, match=r"wrong\.toml.*must be a number"):
        AlarmConfig.from_toml(wrong)
    with pytest.raises(ConfigError, match="not found"):
        AlarmConfig.from_toml(tmp_path / "missing.toml")
    roundtrip = AlarmConfig.from_mapping(cfg.to_mapping())
    assert roundtrip == cfg


def test_engine_rejects_bad_arguments():
    with pytest.raises(TypeError):
        AlarmEngine(FS, "s", {"hr_high_bpm": 1})
    with pytest.raises(ConfigError, match="Did you mean 'asystole'"):
        AlarmEngine(FS).acknowledge("asystol")


# --------------------------------------------------------------------------- MIT-BIH
def test_evaluation_on_mitdb_records(mitdb):
    from trainer.alarm_eval import evaluate_alarms, format_table

    table = evaluate_alarms(["207", "203"], str(mitdb))
    text = format_table(table)
    rows = {s.target.name: s for s in table.scores}
    assert rows["vfib"].episodes == 6 and rows["vfib"].detected >= 5
    assert rows["vfib"].false_alarms == 0
    assert rows["vtach|vrun (any VT)"].sensitivity >= 0.9
    assert rows["afib"].episodes >= 1 and rows["afib"].sensitivity >= 0.5
    assert "vfib" in text and "FA/h" in text


def test_live_beat_source_follows_the_monitor(mitdb):
    """ecg-bench alarms --beats live: detections and labels from the monitor's own live path."""
    from replay.wfdb_source import load_record
    from trainer.alarm_eval import live_beats
    from trainer.ec57 import match_beats, select_beats

    rec = load_record("208", str(mitdb), channels=[0], duration_s=120)
    samples, labels, signal, fs = live_beats(rec)
    ref = select_beats(rec.annotations.symbol, rec.annotations.sample)
    assert match_beats(ref, samples, fs).tp >= 0.98 * len(ref)
    assert len(labels) == len(samples) and "V" in labels  # 208 has many PVCs
    assert signal.shape == (rec.signal.shape[0],)


def test_bench_alarms_live_with_other_weights(mitdb, tmp_path, capsys):
    """ecg-bench alarms --beats live --weights W: the alarms follow W's labels."""
    from monitor.labels import CLASSES
    from monitor.model import load_model, save_weights
    from monitor.resources import asset
    from trainer import bench

    model, meta = load_model(asset("model.pt"))
    bias = [-50.0] * len(CLASSES)
    bias[CLASSES.index("V")] = 50.0  # every beat ventricular (without the V prematurity rule)
    forced = {k: v for k, v in meta.items() if k != "v_prematurity_max_rr_ratio"}
    all_v = save_weights(tmp_path / "all-v.pt", model, {**forced, "logit_bias": bias})
    args = ["alarms", "--records", "119", "--data-dir", str(mitdb), "--beats", "live"]
    assert bench.main(args) == 0
    shipped = capsys.readouterr().out
    assert bench.main([*args, "--weights", str(all_v)]) == 0
    forced = capsys.readouterr().out
    assert f"live_beats (weights {all_v})" in forced

    def row(text, name):
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        return line.split()

    # 119's bigeminy is found with the shipped labels; with every beat called V it is one long run
    assert int(row(shipped, "bigeminy")[3]) > 0 and int(row(forced, "bigeminy")[3]) == 0
    assert int(row(forced, "vtach|vrun")[9]) >= 1  # false alarms: 119 has no VT
    # --weights without live beats, and a missing file: one line each
    assert bench.main(["alarms", "--records", "119", "--weights", str(all_v)]) == 2
    assert bench.main([*args, "--weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "--weights needs --beats live" in err and "no such model weights file" in err and "Traceback" not in err

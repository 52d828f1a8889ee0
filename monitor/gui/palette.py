"""Colours and timings of the window (bedside look, colour-blind-safe classes).

Beat classes use the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal
Design"), distinguishable with the common colour-vision deficiencies; normal
beats are a quiet grey so that ectopic beats stand out.  Alarm colours and
flash rates follow IEC 60601-1-8: high priority red flashing at 1.4-2.8 Hz,
medium yellow flashing at 0.4-0.8 Hz, low cyan (or yellow) steady.
"""

from __future__ import annotations

#: Window background and foreground.
BACKGROUND = "#000000"
PANEL = "#0b0f14"
FOREGROUND = "#d8dee9"
DIM = "#6b7785"
#: The ECG trace (bedside green) and the sweep cursor.
TRACE = "#39ff6a"
CURSOR = "#1d6b33"
#: ECG paper grid on a dark background: minor 1 mm, major 5 mm lines.
GRID_MINOR = "#1a0f0f"
GRID_MAJOR = "#3a1818"
#: Heart-rate digits.
HR = "#39ff6a"

#: Colour of each AAMI beat class (Okabe-Ito): N grey, S orange, V vermillion,
#: F reddish purple, Q sky blue; "?" (not classified) dim grey.
AAMI_COLOURS: dict[str, str] = {
    "N": "#9aa3ad",
    "S": "#e69f00",
    "V": "#d55e00",
    "F": "#cc79a7",
    "Q": "#56b4e9",
    "?": "#5c6670",
}
#: Outline of a predicted label that disagrees with the reference annotation.
DISAGREE = "#ff2a2a"

#: AAMI class of each model class and MIT-BIH beat symbol shown on the trace.
LABEL_TO_AAMI: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "Q": "Q", "/": "Q", "f": "Q",
}  # fmt: skip

#: Alarm priorities: (background, text colour, flash frequency in Hz or 0 = steady).
ALARM_STYLE: dict[str, tuple[str, str, float]] = {
    "high": ("#e01b24", "#ffffff", 2.0),
    "medium": ("#f6d32d", "#000000", 0.6),
    "low": ("#33c7de", "#000000", 0.0),
    "technical": ("#33c7de", "#000000", 0.0),
}
#: Order of urgency.
PRIORITIES = ("high", "medium", "low", "technical")


def aami_of(label: str | None) -> str:
    """Return the AAMI class (N S V F Q) of a model label or MIT-BIH symbol, ``"?"`` if none."""
    if not label:
        return "?"
    return LABEL_TO_AAMI.get(label, "?")


def flash_on(priority: str | None, t_s: float) -> bool:
    """Whether a flashing alarm of ``priority`` is in its bright phase at time ``t_s`` (50 % duty)."""
    if priority is None:
        return False
    freq = ALARM_STYLE.get(priority, ALARM_STYLE["low"])[2]
    if freq <= 0:
        return True
    return (t_s * freq) % 1.0 < 0.5

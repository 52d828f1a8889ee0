"""Argument validation helpers with informative messages (MNE-style)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError


def check_type(name: str, value: Any, types: type | tuple[type, ...]) -> Any:
    """Raise TypeError unless ``value`` is an instance of ``types``.

    ``bool`` is never accepted where a number is asked for.
    """
    if not isinstance(types, tuple):
        types = (types,)
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(f"{name} must be {names}, got {type(value).__name__} {value!r}")
    return value


def check_option(name: str, value: Any, options: Iterable[Any]) -> Any:
    """Raise ConfigError unless ``value`` is one of ``options``, suggesting the closest."""
    options = list(options)
    if value in options:
        return value
    msg = f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(o) for o in options], n=1)
        if close:
            msg += f". Did you mean {close[0]!r}?"
    raise ConfigError(msg)


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    unit: str = "",
    allow_inf: bool = False,
) -> float:
    """Raise ConfigError unless ``low <= value <= high`` (finite).

    Parameters
    ----------
    name : str
        Parameter name used in the message.
    value : float
        Value to check.
    low, high : float or None
        Bounds; None means unbounded.
    low_inclusive, high_inclusive : bool
        Whether the bounds are allowed.
    unit : str
        Unit appended to numbers in the message (e.g. ``"Hz"``).
    allow_inf : bool
        Accept ``+inf`` (for example ``speed=inf``, as fast as possible).
    """
    check_type(name, value, (int, float))
    u = f" {unit}" if unit else ""
    if allow_inf and value == math.inf:
        return value
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}{u}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ConfigError(f"{name} must be {op} {low}{u}, got {value}{u}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ConfigError(f"{name} must be {op} {high}{u}, got {value}{u}")
    return value


def ensure_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is integral (not bool), else raise TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        import operator

        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None

"""Training-time augmentation of beat windows (torch, batched).

Only :func:`time_stretch` lives here; the Gaussian noise and the random
shift of :func:`trainer.train.fit` are one line each.

Why stretch: most N beats that the classifier gets wrong on unseen patients
are bundle branch block beats whose QRS is wider (or narrower) than any the
training patients had.  Stretching each training beat and its template by
the same random factor, around the R peak, shows the model patients with
other QRS widths and heart rates without changing what makes a beat
ectopic (its difference from the template and its timing).
"""

from __future__ import annotations

import torch

__all__ = ["time_stretch"]


def time_stretch(windows: torch.Tensor, factors: torch.Tensor, centre: float) -> torch.Tensor:
    """Stretch beat windows in time about the R peak, by linear interpolation.

    Parameters
    ----------
    windows : torch.Tensor, shape (batch, channels, n_window)
        Beat windows (every channel of a beat gets the same stretch).
    factors : torch.Tensor, shape (batch,)
        Stretch factor per beat (> 0): 1.2 makes every wave 20 % longer,
        0.8 20 % shorter; 1 leaves the window unchanged.
    centre : float
        Index of the R peak in the window, in samples (the featurizer's
        ``pre_s * model_fs``); it stays where it is.

    Returns
    -------
    torch.Tensor
        Same shape and dtype; samples that would come from outside the
        window repeat its edge value.

    Examples
    --------
    >>> w = torch.arange(8.0).reshape(1, 1, 8)
    >>> time_stretch(w, torch.tensor([2.0]), centre=4.0)
    tensor([[[2.0000, 2.5000, 3.0000, 3.5000, 4.0000, 4.5000, 5.0000, 5.5000]]])
    """
    if windows.ndim != 3 or factors.shape != windows.shape[:1]:
        raise ValueError(f"windows (batch, channels, n) and factors (batch,) expected, got {tuple(windows.shape)} and {tuple(factors.shape)}")
    if not bool((factors > 0).all()):
        raise ValueError("stretch factors must be > 0")
    n = windows.shape[2]
    t = torch.arange(n, dtype=windows.dtype, device=windows.device)
    pos = (centre + (t[None, :] - centre) / factors[:, None].to(windows.dtype)).clamp(0, n - 1)  # (batch, n)
    i0 = pos.floor().long().clamp(max=n - 2)
    frac = (pos - i0.to(pos.dtype)).unsqueeze(1)  # (batch, 1, n)
    idx = i0.unsqueeze(1).expand(-1, windows.shape[1], -1)
    a = windows.gather(2, idx)
    b = windows.gather(2, idx + 1)
    return a + frac * (b - a)

"""Progress bars on stderr (tqdm), silent when disabled or not wanted."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, *, enabled: bool = True, unit: str = "img") -> Any:
    """A tqdm bar showing ``unit``/s; a no-op bar when ``enabled`` is false."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled or total == 0,
        dynamic_ncols=True,
        smoothing=0.1,
    )

"""Human-readable sizes and rates for summaries, progress lines and notifications."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(count: int | float | None) -> str:
    """Given a byte count, return it like `812 B`, `4.2 MiB`, `1.31 GiB`; `-` for None."""
    if count is None:
        return "-"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float | None) -> str:
    """Given bytes per second, return it like `12.3 MiB/s`."""
    return "-" if bytes_per_second is None else f"{format_bytes(bytes_per_second)}/s"

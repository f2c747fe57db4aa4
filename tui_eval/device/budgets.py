"""``max_memory`` as sizes per device (``0=70GiB,1=70GiB,cpu=200GiB``): reading and writing
the text. Pure Python, so that the config reads it without torch (tui_eval.device.memcap
applies it)."""

from __future__ import annotations

from typing import TypeGuard

from tui_eval.formatting import size_bytes

# accelerate's names for the places other than a GPU index that weights may go
BUDGET_PLACES = ("cpu", "mps", "disk")
DEVICE_BUDGETS_EXAMPLE = "0=70GiB,1=70GiB,cpu=200GiB"


def is_per_device(value: object) -> TypeGuard[str]:
    """Whether a max_memory value is a size per device (``0=70GiB,cpu=200GiB``)."""
    return isinstance(value, str) and "=" in value


def parse_device_budgets(text: str) -> dict[int | str, int]:
    """``0=70GiB,cpu=200GiB`` as from_pretrained's max_memory: GPU indices as ints, the
    other places by name, sizes in bytes (accelerate reads '70gb' as gigabits and rejects
    '70G', so the text is not passed on). ValueError says what is wrong."""
    budgets: dict[int | str, int] = {}
    for item in text.split(","):
        place, equals, size = (part.strip() for part in item.partition("="))
        if not equals:
            raise ValueError(f"{item.strip()!r} is not DEVICE=SIZE")
        where: int | str
        if place.isdigit():
            where = int(place)
        elif place.lower() in BUDGET_PLACES:
            where = place.lower()
        else:
            raise ValueError(f"{place!r} is not a GPU index or one of "
                             + ", ".join(BUDGET_PLACES))
        if where in budgets:
            raise ValueError(f"{place!r} is given twice")
        try:
            budgets[where] = size_bytes(size)
        except ValueError:
            raise ValueError(f"{place}={size}: {size!r} is not a size such as 70GiB") from None
        if budgets[where] <= 0:
            raise ValueError(f"{place}={size}: the size must be above zero")
    return budgets


def device_budgets_text(budgets: dict[object, object]) -> str:
    """A table of sizes per device (from eval.toml) as the text the flag takes."""
    return ",".join(f"{place}={size}" for place, size in budgets.items())

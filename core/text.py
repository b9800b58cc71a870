"""How a count of things reads in a message: '1 run', '2 runs', never '2 run(s)'."""

from __future__ import annotations



def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``plural(1, "run")`` -> '1 run'; ``plural(1442, "image")`` -> '1,442 images';
    ``plural(2, "GPU")`` -> '2 GPUs'. ``many`` names a plural that is not ``word`` + 's'
    (``plural(3, "match", "matches")``). A count is shown with thousands separators, a
    fraction (minutes) as it is (``plural(0.5, "minute")`` -> '0.5 minutes')."""
    if many is None:
        many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    shown = f"{n:,}" if isinstance(n, int) or float(n).is_integer() and abs(n) >= 1000 else f"{n:g}"
    return f"{shown} {word if n == 1 else many}"


def percent(share: float, digits: int = 1) -> str:
    """A share (0..1) as a percentage that never reads as an impossible figure: one that is
    not nothing never rounds to '0 %' (``percent(0.0004)`` -> '< 0.1 %'), nor one short
    of all to '100 %' (``percent(0.9996)`` -> '> 99.9 %')."""
    step = 10.0 ** -digits
    shown = round(100 * share, digits)
    if 0 < share and shown < step:
        return f"< {step:.{digits}f} %"
    if share < 1 and shown >= 100:
        return f"> {100 - step:.{digits}f} %"
    return f"{100 * share:.{digits}f} %"

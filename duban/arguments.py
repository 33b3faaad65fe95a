"""argparse argument types the commands share."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def hours(low: float, high: float = math.inf, *, low_included: bool = True) -> Callable[[str], float]:
    """A number of hours from `low` (itself excluded when `low_included` is false) up to `high`."""

    def parse(text: str) -> float:
        value = float(text)  # argparse answers a ValueError with "invalid hours value"
        above_low = low <= value if low_included else low < value
        if not (above_low and value <= high):  # a NaN is neither
            bounds = f"{'at least' if low_included else 'more than'} {low:g}"
            if high < math.inf:
                bounds += f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"hours must be {bounds}")
        return value

    parse.__name__ = "hours"  # argparse names the type by it in its error message
    return parse

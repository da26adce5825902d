"""Small statistics the reports share: the Wilson interval of a proportion (ICL accuracy, reward-model agreement)."""
from __future__ import annotations

import math


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (better than the normal one at n=50 and near 0 or 1)."""
    if total <= 0:
        return (0.0, 0.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    # at 0 or n correct the bound is exactly 0 or 1; rounding could put it just past the point estimate
    return (0.0 if correct == 0 else max(0.0, centre - half), 1.0 if correct == total else min(1.0, centre + half))

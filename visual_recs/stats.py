"""The statistics of the performance report: small pure functions, no scipy.

Click-through rates are proportions (clicks of impressions). One arm's rate gets a Wilson
score interval, which stays within 0..1 and is sound for few clicks, where the plain normal
interval is not. The difference of two arms gets the normal approximation of two
independent proportions, fine at the sample sizes a verdict waits for (``MIN_IMPRESSIONS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

#: The standard normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054
#: Impressions each arm needs before the report gives a verdict.
MIN_IMPRESSIONS = 100

NOT_ENOUGH_DATA = _("not enough data yet")
NO_CLEAR_DIFFERENCE = _("no clear difference")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def spans(self, value: float) -> bool:
        return self.low <= value <= self.high


def rate(successes: int, trials: int) -> float | None:
    """``successes / trials``; None for no trials."""
    return successes / trials if trials > 0 else None


def wilson_interval(successes: int, trials: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of a proportion; None for no trials.

    ``successes`` is capped at ``trials`` (a click whose impression was never reported).
    """
    if trials <= 0:
        return None
    p = min(successes, trials) / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = Z95
) -> tuple[float, Interval] | None:
    """``rate_b - rate_a`` and its interval (normal approximation of two proportions); None when an arm has no trials."""
    if trials_a <= 0 or trials_b <= 0:
        return None
    p_a = min(successes_a, trials_a) / trials_a
    p_b = min(successes_b, trials_b) / trials_b
    difference = p_b - p_a
    error = math.sqrt(p_a * (1 - p_a) / trials_a + p_b * (1 - p_b) / trials_b)
    return difference, Interval(difference - z * error, difference + z * error)


def verdict(name_a: str, trials_a: int, name_b: str, trials_b: int, interval: Interval | None) -> str:
    """What the difference says, in words: too few impressions, no clear difference, or which arm is better."""
    if interval is None or min(trials_a, trials_b) < MIN_IMPRESSIONS:
        return str(NOT_ENOUGH_DATA)
    if interval.spans(0.0):
        return str(NO_CLEAR_DIFFERENCE)
    better = name_b if interval.low > 0 else name_a
    return str(_("%(arm)s is better") % {"arm": better})

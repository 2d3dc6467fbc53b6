"""When ``dat-lab run --until-decided`` stops adding seeds: the ``until_decided:`` section of an
experiment file, and the ``--max-seeds`` / ``--budget`` flags that override it.

    until_decided:
      max_seeds: 8      # seeds per variant at most (the file's seeds count); default 20
      budget: 2h        # training time of the experiment's runs, from their cost.json; or none

A file with this section is run sequentially by a plain ``dat-lab run`` (``--no-until-decided``
runs only the file's seeds). Nothing here trains: ``dat_lab.results.until_decided`` does.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from dat_lab.schema import ConfigError, check

DEFAULT_MAX_SEEDS = 20
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
DURATION_RULE = "a duration such as 2h, 90m, 1h30m, 600s or a number of seconds, > 0"


def parse_duration(text: str | float | int, key: str) -> float:
    """Seconds in ``text`` (``2h``, ``1h30m``, ``45m``, ``600s``, ``600``); ConfigError at
    ``key`` otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        check(text > 0, key, f"got {text!r}: {DURATION_RULE}")
        return float(text)
    value = str(text).strip().lower()
    match = _DURATION.fullmatch(value) if value else None
    if value.replace(".", "", 1).isdigit():
        seconds = float(value)
    elif match and any(match.groups()):
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    else:
        raise ConfigError(f"got {text!r}: {DURATION_RULE}", key)
    check(seconds > 0, key, f"got {text!r}: {DURATION_RULE}")
    return seconds


@dataclass(frozen=True)
class UntilDecided:
    """The stopping rule's limits (see the module docstring); ``budget`` is kept as written
    (``budget_s`` gives seconds)."""

    max_seeds: int = DEFAULT_MAX_SEEDS
    budget: str | float | None = None

    def __post_init__(self) -> None:
        check(self.max_seeds >= 2, "max_seeds", f"got {self.max_seeds}, must be >= 2")
        if self.budget is not None:
            parse_duration(self.budget, "budget")

    @property
    def budget_s(self) -> float | None:
        return None if self.budget is None else parse_duration(self.budget, "budget")

    def with_flags(self, max_seeds: int | None, budget: str | None) -> UntilDecided:
        """The flags given (not None) on top; errors name the flag."""
        try:
            return dataclasses.replace(
                self,
                max_seeds=self.max_seeds if max_seeds is None else max_seeds,
                budget=self.budget if budget is None else budget,
            )
        except ConfigError as err:
            raise ConfigError(err.message, "--" + err.key.replace("_", "-")) from None


__all__ = ["DEFAULT_MAX_SEEDS", "UntilDecided", "parse_duration"]

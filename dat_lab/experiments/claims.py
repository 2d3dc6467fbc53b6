"""The claims of an experiment file: what the report and ``--until-decided`` decide.

    claims:
      - {better: s2, than: s0}              # s2 scores better than s0
      - {better: s2, than: s0, by: 0.5}     # ... by more than 0.5 points
      - {better: s2, than: s14, within: 1}  # ... or the two are equivalent within 1 point
      - {same: s2, as: s3, within: 0.5}     # s2 and s3 differ by less than 0.5 points

Margins are in points of the report's metric (percent for an accuracy). Each claim is checked
when the file loads: an unknown key or variant, a margin that is not a number > 0, ``by``
with ``within``, and a variant compared with itself are each one error naming the key.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dat_lab.schema import ConfigError, check


class ClaimKind(enum.StrEnum):
    BETTER = "better"  # {better: A, than: B[, by: m | within: w]}
    SAME = "same"  # {same: A, as: B, within: w}


_KEYS = {
    ClaimKind.BETTER: ("better", "than", "by", "within"),
    ClaimKind.SAME: ("same", "as", "within"),
}
_SHAPES = "{better: A, than: B[, by: M | within: M]} or {same: A, as: B, within: M}"


@dataclass(frozen=True)
class ReportClaim:
    """One claim about two variants: ``a`` scores better than ``b`` (by more than ``by``
    points), or ``a`` and ``b`` are within ``within`` points of each other (for a better claim,
    ``within`` is the margin under which the two count as equivalent, also a decision)."""

    kind: ClaimKind
    a: str
    b: str
    by: float | None = None
    within: float | None = None

    def __post_init__(self) -> None:
        check(
            not (self.by is not None and self.within is not None),
            "by",
            "a claim takes either by (the margin to beat) or within (an equivalence "
            "margin), not both",
        )
        check(
            self.kind is ClaimKind.BETTER or self.by is None,
            "by",
            "only a better claim has a margin to beat",
        )
        check(
            self.kind is ClaimKind.BETTER or self.within is not None,
            "within",
            "a same claim needs its equivalence margin (points of the metric)",
        )
        for key in ("by", "within"):
            value = getattr(self, key)
            check(
                value is None or value > 0,
                key,
                f"got {value!r}, a margin must be > 0 (points of the metric)",
            )

    @classmethod
    def parse(cls, raw: Any, key: str) -> ReportClaim:
        """From the file's mapping; ConfigError at ``key`` (``claims.I``) otherwise."""
        check(isinstance(raw, dict), key, f"expected a mapping, {_SHAPES}; got {raw!r}")
        kinds = [k for k in ClaimKind if k.value in raw]
        check(len(kinds) == 1, key, f"expected {_SHAPES}; got {raw!r}")
        kind = kinds[0]
        for name in raw:
            check(
                name in _KEYS[kind],
                f"{key}.{name}",
                f"unknown key; allowed: {', '.join(_KEYS[kind])}",
            )
        a_key, b_key = _KEYS[kind][:2]
        check(b_key in raw, f"{key}.{b_key}", f"required key is missing ({_SHAPES})")
        for name in (a_key, b_key):
            check(
                isinstance(raw[name], str),
                f"{key}.{name}",
                f"expected a variant name, got {raw[name]!r}",
            )
        margins = {m: _margin(raw.get(m), f"{key}.{m}") for m in ("by", "within")}
        try:
            return cls(kind, raw[a_key], raw[b_key], **margins)
        except ConfigError as err:
            raise err.located(None, key) from None

    def check_variants(self, variants: Iterable[str], key: str) -> None:
        """Both variants exist and differ (``key``: ``claims.I``)."""
        names = list(variants)
        a_key, b_key = _KEYS[self.kind][:2]
        for name, value in ((a_key, self.a), (b_key, self.b)):
            check(
                value in names,
                f"{key}.{name}",
                f"unknown variant {value!r}; allowed: {', '.join(names)}",
            )
        check(self.a != self.b, key, f"compares {self.a!r} with itself")

    def as_mapping(self) -> dict[str, Any]:
        """The file's own form (what the store's design records and the report reads)."""
        a_key, b_key = _KEYS[self.kind][:2]
        out: dict[str, Any] = {a_key: self.a, b_key: self.b}
        out.update({k: v for k in ("by", "within") if (v := getattr(self, k)) is not None})
        return out


def _margin(value: Any, key: str) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    check(ok, key, f"expected a number of points > 0, got {value!r}")
    return float(value)


def parse_claims(raw: Mapping[str, Any], path: Path) -> tuple[ReportClaim, ...] | Any:
    """The file's ``claims:`` parsed (left as is when it is not a list, for the schema's own
    error); errors name ``path`` and the key."""
    claims = raw.get("claims", ())
    if not isinstance(claims, list):
        return claims
    try:
        return tuple(ReportClaim.parse(c, f"claims.{i}") for i, c in enumerate(claims))
    except ConfigError as err:
        raise err.located(path) from None


__all__ = ["ClaimKind", "ReportClaim", "parse_claims"]

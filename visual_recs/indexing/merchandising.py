"""A strip's merchandising rules, loaded in one query and applied to its candidates at read time.

``Rules.load`` reads the active rules of one product (its own, its partition's, its model's);
the read path (``reading``) asks them which candidates to leave out, how near each one counts,
and which items to pin where. Nothing is stored: a rule changed in the admin shows on the next
page view. A rule that cannot apply (a pinned item deleted or sold out, a boost on a field the
objects lack) applies to nothing, never fails the page: it is logged once per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models import Q

from ..models import Rule
from ..registry import IndexedModel

logger = logging.getLogger(__name__)

#: A boost never takes more than this share of a distance off (so it cannot make an item "identical").
MAX_STRENGTH = 0.9

_warned: set[tuple[int, str]] = set()


def _warn_once(rule: Rule, problem: str) -> None:
    if (rule.pk, problem) not in _warned:
        _warned.add((rule.pk, problem))
        logger.warning("visual_recs: rule #%s (%s) does not apply: %s", rule.pk, rule, problem)


@dataclass(frozen=True)
class Pin:
    """An item a rule puts at ``position`` (1-based) of the strip."""

    target_id: str
    position: int
    rule_id: int


@dataclass
class Rules:
    """The rules that apply to one product's strip."""

    source: models.Model | None = None
    pins: list[Pin] = field(default_factory=list)
    excluded_ids: set[str] = field(default_factory=set)
    excluded_values: list[tuple[str, str, Rule]] = field(default_factory=list)  # (field, value, rule)
    boosts: list[Rule] = field(default_factory=list)
    # The product's own value of each boost's field, by rule id, read once per strip.
    _boost_values: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def none(cls) -> Rules:
        return cls()

    @classmethod
    def load(cls, indexed_model: IndexedModel, source: models.Model, partition: str) -> Rules:
        """The active rules of ``source`` (in ``partition``): its own, its partition's and its model's, in one query.

        A product's own pin at a position wins over its partition's and its model's pins there.
        """
        source_id = str(source.pk)
        scope = Q(source_id=source_id) | Q(source_id="", partition__in={"", partition})
        found = list(Rule.objects.filter(content_type=indexed_model.content_type, active=True).filter(scope))
        # Most specific first: product, partition, model; then oldest first.
        found.sort(key=lambda rule: (0 if rule.source_id else 1 if rule.partition else 2, rule.pk))
        rules = cls(source=source)
        taken_positions: set[int] = set()
        for rule in found:
            if rule.kind == Rule.Kind.PIN:
                if not rule.target_id or not rule.position or rule.target_id == source_id:
                    continue
                if rule.position in taken_positions or any(pin.target_id == rule.target_id for pin in rules.pins):
                    continue
                taken_positions.add(rule.position)
                rules.pins.append(Pin(rule.target_id, rule.position, rule.pk))
            elif rule.kind == Rule.Kind.EXCLUDE:
                if rule.target_id:
                    rules.excluded_ids.add(rule.target_id)
                elif rule.field:
                    rules.excluded_values.append((rule.field, rule.value, rule))
            elif rule.kind == Rule.Kind.BOOST and rule.field and rule.strength > 0:
                rules.boosts.append(rule)
        rules.pins.sort(key=lambda pin: pin.position)
        return rules

    @property
    def pinned_ids(self) -> set[str]:
        return {pin.target_id for pin in self.pins}

    def excludes(self, indexed_model: IndexedModel, obj: models.Model) -> bool:
        """Whether a rule leaves ``obj`` out of this strip."""
        if str(obj.pk) in self.excluded_ids:
            return True
        for name, value, rule in self.excluded_values:
            found = _read(indexed_model, obj, name, rule)
            if found is not _MISSING and _text(found) == value:
                return True
        return False

    def boosted(self, indexed_model: IndexedModel, obj: models.Model, distance: float) -> tuple[float, int | None]:
        """``obj``'s distance once the boosts it matches took their share off, and the first such rule's id."""
        first_rule = None
        for rule in self.boosts:
            if self._matches(indexed_model, rule, obj):
                distance *= 1.0 - min(rule.strength, MAX_STRENGTH)
                first_rule = first_rule or rule.pk
        return distance, first_rule

    def _matches(self, indexed_model: IndexedModel, rule: Rule, obj: models.Model) -> bool:
        if rule.pk not in self._boost_values:
            self._boost_values[rule.pk] = _read(indexed_model, self.source, rule.field, rule)
        wanted = self._boost_values[rule.pk]
        if wanted is _MISSING or wanted is None or wanted == "":
            return False
        found = _read(indexed_model, obj, rule.field, rule)
        if found is _MISSING or found is None or found == "":
            return False
        if rule.within_percent is None:
            return _text(found) == _text(wanted)
        try:
            wanted_number, found_number = float(wanted), float(found)
        except (TypeError, ValueError):
            _warn_once(rule, f"{rule.field!r} is not a number, so it has no band of {rule.within_percent}%")
            return False
        return abs(found_number - wanted_number) <= abs(wanted_number) * rule.within_percent / 100.0


_MISSING = object()


def _read(indexed_model: IndexedModel, obj: models.Model, name: str, rule: Rule) -> Any:
    """``obj``'s value of a rule's field; ``_MISSING`` (logged once) when it cannot be read."""
    try:
        return indexed_model.value_of(obj, name)
    except Exception as exc:  # a shop's value_of, an attribute raising: the rule applies to nothing
        _warn_once(rule, f"{name!r} cannot be read ({type(exc).__name__}: {exc})")
        return _MISSING


def _text(value: Any) -> str:
    return str(value).strip()

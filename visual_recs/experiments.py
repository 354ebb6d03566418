"""A/B split of the strip: each visitor in one arm, the same one on every page, by a hash.

``VISUAL_RECS["EXPERIMENT"] = {"name": "rules-vs-plain", "arms": {"a": {...}, "b": {...}}}``:
each arm's dict is keyword arguments of ``indexing.recommendations(obj, limit, **options)``.
A visitor's arm is ``sha256(name, visitor id)`` taken modulo the number of arms: no table
of assignments, the same arm in every process, an even split, and a new split when the
experiment is renamed. The visitor id is the anonymous cookie of ``VisitorMiddleware``, else
the session key; with neither the visitor is in no arm: the first arm's options are used and
events carry no arm, so they stay out of the A/B report.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.http import HttpRequest

from . import indexing
from .conf import app_settings

#: Where ``VisitorMiddleware`` puts the visitor id on the request.
VISITOR_ATTRIBUTE = "visual_recs_visitor"
# The Event fields the names are stored in.
MAX_NAME_LENGTH = 100
MAX_ARM_LENGTH = 50


@dataclass(frozen=True)
class Experiment:
    """A well-formed ``EXPERIMENT`` setting: its name and its arms' options, in the setting's order."""

    name: str
    arms: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Arm:
    """The arm a visitor is in."""

    experiment: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)


def experiment_problem(config: Any) -> str:
    """What is wrong with an ``EXPERIMENT`` setting ("" when it is well-formed, or None: off).

    Arms' options must be keyword arguments ``indexing.recommendations`` takes: bound to its
    signature here, so an option it does not know is a check error, not a broken strip.
    """
    if config is None:
        return ""
    if not isinstance(config, dict):
        return f"must be a dict {{'name': ..., 'arms': {{...}}}} or None, not {config!r}"
    name, arms = config.get("name"), config.get("arms")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        return f"'name' must be a non-empty string of at most {MAX_NAME_LENGTH} characters, not {name!r}"
    if not isinstance(arms, dict) or len(arms) < 2:
        return f"'arms' must be a dict of two or more arms, not {arms!r}"
    for arm, options in arms.items():
        if not isinstance(arm, str) or not 0 < len(arm) <= MAX_ARM_LENGTH:
            return f"an arm's name must be a non-empty string of at most {MAX_ARM_LENGTH} characters, not {arm!r}"
        if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
            return f"arm {arm!r}: its options must be a dict of keyword arguments, not {options!r}"
        try:
            inspect.signature(indexing.recommendations).bind(None, 1, **options)
        except TypeError as exc:
            return f"arm {arm!r}: indexing.recommendations() does not take these options ({exc})"
        if options.get("source", "visual") not in indexing.SOURCES:
            return f"arm {arm!r}: 'source' is one of {', '.join(map(repr, indexing.SOURCES))}, not {options['source']!r}"
    return ""


def configured() -> Experiment | None:
    """The experiment of the settings; None when there is none, or it is malformed (``visual_recs.E018``)."""
    config = app_settings.EXPERIMENT
    if not config or experiment_problem(config):
        return None
    return Experiment(config["name"], dict(config["arms"]))


def bucket(experiment: str, visitor: str, arms: Sequence[str]) -> str:
    """The arm of ``visitor``: the hash of the experiment's name and the visitor id, modulo the arms.

    64 bits of sha256 modulo a handful of arms: the split is even to within 1e-18.
    """
    digest = hashlib.sha256(f"{experiment}\x00{visitor}".encode()).digest()
    return arms[int.from_bytes(digest[:8], "big") % len(arms)]


def visitor_id(request: HttpRequest | None) -> str | None:
    """The anonymous visitor id of ``VisitorMiddleware``, else the session key; None with neither."""
    if request is None:
        return None
    visitor = getattr(request, VISITOR_ATTRIBUTE, None)
    if visitor:
        return visitor
    session = getattr(request, "session", None)
    # Only an existing session: asking for a key would create one (and a cookie) for each bot.
    return getattr(session, "session_key", None) or None


def arm_for(request: HttpRequest | None) -> Arm | None:
    """The visitor's arm of the configured experiment; None with no experiment or no visitor id."""
    return _arm_in(configured(), request)


def _arm_in(experiment: Experiment | None, request: HttpRequest | None) -> Arm | None:
    visitor = visitor_id(request)
    if experiment is None or visitor is None:
        return None
    name = bucket(experiment.name, visitor, list(experiment.arms))
    return Arm(experiment.name, name, experiment.arms[name])


def recommend(request: HttpRequest | None, obj: models.Model, limit: int) -> tuple[indexing.Recommendations, Arm | None]:
    """``indexing.recommendations`` with the options of the visitor's arm, and that arm.

    The one place pages and the API read a strip through, so both show a visitor the same arm.
    With an experiment but no visitor id, the first arm's options (and no arm).
    """
    experiment = configured()
    arm = _arm_in(experiment, request)
    if arm is not None:
        options = arm.options
    else:
        options = next(iter(experiment.arms.values())) if experiment is not None else {}
    return indexing.recommendations(obj, limit, **options), arm

"""Which registered models a command works on: the one ``--model KEY`` names, or every one."""

from __future__ import annotations

from django.core.management.base import CommandError

from visual_recs import registry
from visual_recs.exceptions import NotRegistered
from visual_recs.registry import IndexedModel


def selected_models(key: str | None) -> list[IndexedModel]:
    """The model registered under ``key``, or (None) every registered model; CommandError for an unknown key."""
    try:
        return [registry.get(key)] if key else list(registry.indexed_models().values())
    except NotRegistered as exc:
        raise CommandError(str(exc)) from exc


def check_partition(selected: list[IndexedModel], partition: str | None) -> None:
    """CommandError when ``--partition`` is given and one of ``selected`` has no partitions.

    Checked before any work, so a command never does one model's work and then stops at the next.
    """
    if partition is None:
        return
    for indexed_model in selected:
        if not indexed_model.partitioned:
            raise CommandError(f"{indexed_model.key} has no partitions.")

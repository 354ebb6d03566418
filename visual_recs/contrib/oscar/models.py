"""Which of Oscar's ``ProductRecommendation`` rows this app wrote: those it may rewrite or delete.

A side table rather than a range of rankings: staff may give their own recommendations any
ranking, and a row without a mark is theirs, never touched here.
"""

from __future__ import annotations

from django.db import models


class WrittenRecommendation(models.Model):
    """Marks a ``catalogue.ProductRecommendation`` as copied from a neighbour list (deleted with it)."""

    recommendation = models.OneToOneField(
        "catalogue.ProductRecommendation",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="visual_recs_mark",
    )

    class Meta:
        verbose_name = "recommendation written by visual_recs"

"""The tables the app keeps about any host model: vectors, neighbour lists, index entries, fits.

``FeatureVector`` and ``SimilarItem`` point at products by content type + object id (a
CharField, since a shop's primary keys are not always integers), so the app attaches to a
shop's own product model without touching it. The bundled ``Product`` is opt-in: it lives in
``visual_recs.contrib.catalog``.
"""

from __future__ import annotations

import numpy as np
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class IndexStatus(models.TextChoices):
    """Where an object stands in the index: the one vocabulary of rows, pages, the API and the admin.

    ``no_image`` is never stored: an object without a photo has no ``FeatureVector`` row.
    """

    READY = "ready", _("ready")
    PENDING = "pending", _("pending")
    FAILED = "failed", _("failed")
    NO_IMAGE = "no_image", _("no photo")


class Origin(models.TextChoices):
    """Why an item is in a strip: the one vocabulary of ``Similar.origin``, the API, events and the report."""

    VISUAL = "visual", _("visual neighbour")
    PINNED = "pinned", _("pinned by a rule")
    FALLBACK = "fallback", _("fallback")
    SHOP = "shop", _("the shop's own recommendation")


class FeatureVector(models.Model):
    """The image features of one indexed object, and the state of its indexing.

    ``vector`` is what the extractor made of the photo; the index backend holds the
    searchable copy (see ``visual_recs.backends``), so a backend can be switched or rebuilt
    from these rows without running the network again.
    """

    Status = IndexStatus

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    object_id = models.CharField(max_length=255)
    content_object = GenericForeignKey("content_type", "object_id")
    partition = models.CharField(
        max_length=100, blank=True, help_text=_("Value of the partition field; neighbours come from the same partition.")
    )
    listed = models.BooleanField(
        default=False, help_text=_("Passed the model's filter when last indexed: may appear in other products' lists.")
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, help_text=_("Why the last attempt failed."))
    attempts = models.PositiveSmallIntegerField(default=0)
    model_id = models.CharField(
        max_length=200, blank=True, help_text=_("Extractor, weights and options that made the vector.")
    )
    dims = models.PositiveIntegerField(default=0)
    vector = models.BinaryField(null=True, blank=True, editable=False)
    image_sha256 = models.CharField(
        max_length=64, blank=True, help_text=_("Hash of the photo the vector was made from (or failed on).")
    )
    image_name = models.TextField(
        blank=True,
        editable=False,
        help_text=_(
            "Stored name of the photo when last marked or indexed: a save compares names, never reads the file "
            "(empty: unknown, so the next save marks the photo changed)."
        ),
    )
    photo_marks = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text=_("How many saves marked the photo changed: a task that read the photo before the last mark writes nothing."),
    )
    list_radius = models.FloatField(
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Distance of the last entry of this object's neighbour list when the list is full; empty when "
            "it is shorter or not built. A new vector closer than this enters the list."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("feature vector")
        verbose_name_plural = _("feature vectors")
        constraints = [
            models.UniqueConstraint(fields=["content_type", "object_id"], name="visual_recs_vector_unique_object"),
        ]
        indexes = [
            # Loading a partition's vectors, and the status counts of admin and the sweep.
            models.Index(fields=["content_type", "partition", "status"], name="visual_recs_vector_partition"),
            models.Index(fields=["status", "updated_at"], name="visual_recs_vector_status"),
            # The widest list of a partition bounds the search for lists a new vector enters.
            models.Index(fields=["content_type", "partition", "list_radius"], name="visual_recs_vector_radius"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type.model} {self.object_id} ({self.status})"

    def as_array(self) -> np.ndarray:
        """The stored vector as a float32 array (empty when there is none)."""
        if not self.vector:
            return np.zeros(0, dtype=np.float32)
        return self.from_bytes(self.vector)

    @staticmethod
    def to_bytes(vector: np.ndarray) -> bytes:
        """Little-endian float32 bytes, the storage format of ``vector``."""
        return np.ascontiguousarray(vector, dtype="<f4").tobytes()

    @staticmethod
    def from_bytes(data) -> np.ndarray:
        """The float32 array stored as ``data`` (what ``to_bytes`` wrote; bytes or a memoryview)."""
        return np.frombuffer(bytes(data), dtype="<f4")


class SimilarItem(models.Model):
    """One entry of a precomputed neighbour list: ``target`` is among the nearest shown objects to ``source``.

    A list is its rows ordered by (distance, target id). There is no stored rank, so a product
    entering a list costs one row in and one out, not a rewrite of the list. Pages read these
    rows (one indexed query) instead of holding vectors or the network.
    """

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    source_id = models.CharField(max_length=255)
    target_id = models.CharField(max_length=255)
    distance = models.FloatField()

    class Meta:
        verbose_name = _("similar item")
        verbose_name_plural = _("similar items")
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "source_id", "target_id"], name="visual_recs_similar_unique_target"
            ),
        ]
        indexes = [
            # The read path: one product's list, nearest first.
            models.Index(fields=["content_type", "source_id", "distance"], name="visual_recs_similar_list"),
            # Which lists name a product, when it changes or is deleted (covering, so no table reads).
            models.Index(fields=["content_type", "target_id", "source_id"], name="visual_recs_similar_naming"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} -> {self.target_id} ({self.distance:.3f})"


class ExactIndexEntry(models.Model):
    """A vector held by ``ExactIndex`` (the embedded index backend), in the shop's own database."""

    collection = models.CharField(max_length=255)
    object_id = models.CharField(max_length=255)
    partition = models.CharField(max_length=100, blank=True)
    shown = models.BooleanField(default=False)
    vector = models.BinaryField()

    class Meta:
        verbose_name = _("exact index entry")
        verbose_name_plural = _("exact index entries")
        constraints = [
            models.UniqueConstraint(fields=["collection", "object_id"], name="visual_recs_exact_unique_object"),
        ]
        indexes = [models.Index(fields=["collection", "partition"], name="visual_recs_exact_partition")]


class ExactIndexChange(models.Model):
    """One write to ``ExactIndex``: processes bring their cached partitions up to date from these rows."""

    id = models.BigAutoField(primary_key=True)
    collection = models.CharField(max_length=255)
    partition = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("exact index change")
        verbose_name_plural = _("exact index changes")
        indexes = [models.Index(fields=["collection", "partition", "id"], name="visual_recs_exact_change")]


class Fit(models.Model):
    """A projection learned from a registered model's stored vectors and its labels (``learn_from``).

    Immutable once made. The newest completed fit of a model and extractor is its current one:
    the index then holds every vector as the fit maps it, in a collection of the fit's own
    (``indexing.space``), so vectors and lists of different fits never mix. ``completed_at``
    is set once that collection and the lists are built; a fit that failed or was stopped
    before is never current.
    """

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    model_id = models.CharField(max_length=200, help_text=_("The extractor whose vectors it was fitted on."))
    fields = models.JSONField(help_text=_("The fields (learn_from) whose labels it learned."))
    version = models.CharField(max_length=64, help_text=_("Changes whenever the vectors it makes would."))
    data = models.BinaryField(editable=False)
    products = models.PositiveIntegerField(help_text=_("Products it was fitted on."))
    seconds = models.FloatField(help_text=_("How long learning the projection took."))
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When its index and lists were built: from then on it is current.")
    )

    class Meta:
        verbose_name = _("fit")
        verbose_name_plural = _("fits")
        indexes = [models.Index(fields=["content_type", "model_id", "completed_at"], name="visual_recs_fit_current")]

    def __str__(self) -> str:
        return f"{self.content_type.model} fit {self.version} ({', '.join(self.fields)})"


class Rule(models.Model):
    """A merchandiser's rule, applied when a strip is read (no reindex, no list rewrite).

    Its scope is one product (``source_id``), else one partition (``partition``), else every
    product of the model (both empty). ``pin`` puts ``target_id`` at ``position``; ``exclude``
    leaves out ``target_id``, or every item whose ``field`` reads ``value`` (a category);
    ``boost`` moves up the items that share the product's ``field`` value (same brand), or
    whose number is within ``within_percent`` of the product's (a price band), by shrinking
    their distance by ``strength``.
    """

    class Kind(models.TextChoices):
        PIN = "pin", _("pin an item at a position")
        EXCLUDE = "exclude", _("exclude items")
        BOOST = "boost", _("boost items")

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_id = models.CharField(
        _("product"), max_length=255, blank=True, help_text=_("The product whose strip it changes; empty: every product.")
    )
    partition = models.CharField(
        max_length=100, blank=True, help_text=_("With no product: only strips of this partition; empty: every partition.")
    )
    target_id = models.CharField(
        _("item"), max_length=255, blank=True, help_text=_("Pin, or exclude: the item (its id).")
    )
    field = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("Exclude: items whose field reads the value. Boost: items sharing the product's value (or band)."),
    )
    value = models.CharField(max_length=255, blank=True, help_text=_("Exclude by field: the value left out."))
    position = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("Pin: the place in the strip, from 1."))
    within_percent = models.FloatField(
        null=True,
        blank=True,
        help_text=_("Boost by a number (a price): items within this many percent of the product's; empty: equal values."),
    )
    strength = models.FloatField(
        default=0.2, help_text=_("Boost: the share of distance taken off a matching item (0 to 0.9).")
    )
    active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, help_text=_("Why the rule is there, for the next merchandiser."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("rule")
        verbose_name_plural = _("rules")
        ordering = ["content_type", "partition", "source_id", "kind", "position", "id"]
        indexes = [
            # The read path: a product's own rules, then its partition's and the model's.
            models.Index(fields=["content_type", "active", "source_id", "partition"], name="visual_recs_rule_scope"),
        ]

    def __str__(self) -> str:
        scope = f"product {self.source_id}" if self.source_id else (f"partition {self.partition}" if self.partition else "all")
        what = self.target_id or (f"{self.field}={self.value}" if self.value else self.field)
        where = f" at {self.position}" if self.kind == self.Kind.PIN and self.position else ""
        return f"{self.get_kind_display()}: {what}{where} ({scope})"


class Event(models.Model):
    """An impression or a click of one card of a strip, as the shopper's browser reported it.

    Written only by the events endpoint, from tokens the page signed (``visual_recs.events``),
    so every field but ``kind`` is what the server rendered. No user, no address, no user agent
    is stored. ``rule_id`` is a plain number, not a foreign key: deleting a rule keeps its
    history. ``nonce`` is drawn per card per render, so a replayed report is dropped by the
    unique constraint.
    """

    class Kind(models.TextChoices):
        IMPRESSION = "impression", _("impression")
        CLICK = "click", _("click")

    Origin = Origin

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    source_id = models.CharField(_("product"), max_length=255, help_text=_("The product whose page showed the strip."))
    target_id = models.CharField(_("item"), max_length=255, help_text=_("The recommended item."))
    position = models.PositiveSmallIntegerField(help_text=_("The card's place in the strip, from 1."))
    partition = models.CharField(max_length=100, blank=True)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.VISUAL)
    rule_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text=_("The rule that pinned or boosted the item (kept when the rule is deleted).")
    )
    experiment = models.CharField(max_length=100, blank=True)
    arm = models.CharField(max_length=50, blank=True, help_text=_("The A/B arm the visitor was in; empty: none."))
    nonce = models.CharField(max_length=32, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            # A report sent twice (a retried beacon, a replayed request) is one event.
            models.UniqueConstraint(fields=["kind", "nonce"], name="visual_recs_event_unique_nonce"),
        ]
        indexes = [
            # The fallback's "popular": a partition's clicks of the last days, counted by item.
            models.Index(fields=["content_type", "kind", "partition", "created_at"], name="visual_recs_event_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id} -> {self.target_id} at {self.position}"

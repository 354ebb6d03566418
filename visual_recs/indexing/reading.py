"""Lists to pages: the read path a web process runs.

Pages read a product's stored neighbour list and the products that may be shown now, in a
fixed number of queries; no vector and no network is loaded here. A ready product whose list
is missing (being rebuilt) asks the index for its neighbours: one nearest-neighbour query.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from django.db import models
from django.db.models import Case, Count, F, OuterRef, Subquery, Value, When
from django.utils import timezone

from .. import registry
from ..backends import get_extractor, get_index
from ..conf import app_settings
from ..exceptions import WeightsError
from ..models import Event, FeatureVector, IndexStatus, SimilarItem
from ..registry import IndexedModel
from ..registration import concrete_fields
from .merchandising import Rules
from .space import current_space

logger = logging.getLogger(__name__)

Status = IndexStatus


@dataclass
class Similar:
    """One recommendation: a shown object, its distance to the product, and why it is there.

    ``distance`` is None for an item a rule pinned or the fallback brought (not a neighbour).

    ``origin`` is "visual" (a neighbour by photo), "pinned" (a rule put it there) or
    "fallback" (the list ran short after the rules and stock, and the fallback filled it);
    ``rule_id`` is the rule that pinned or boosted it (None otherwise).
    """

    object: models.Model
    distance: float | None
    rank: int
    origin: str = "visual"
    rule_id: int | None = None


NO_IMAGE = IndexStatus.NO_IMAGE.value
#: Every status ``recommendations`` and ``index_states`` report.
STATUSES = tuple(IndexStatus.values)


@dataclass(frozen=True)
class IndexState:
    """Where one object stands in the index.

    ``status`` is "ready", "pending" (queued, or never indexed yet), "failed" (``error`` says
    why) or "no_image"; ``partition`` is the object's partition now.
    """

    status: str
    partition: str
    error: str = ""
    image_sha256: str = ""


@dataclass
class Recommendations:
    """What a product page shows: the product's index status and its similar items, nearest first.

    While a product is pending, ``items`` are those of its previous photo, if it had one.
    """

    status: str
    partition: str
    items: list[Similar]
    error: str = ""


class _Hit(NamedTuple):
    """A candidate recommendation before the read-time checks."""

    object_id: str
    distance: float
    partition: str | None  # where it was found: still the object's partition to be shown (None: any)
    image_sha256: str = ""


def similar_to(obj: models.Model, limit: int = 5) -> list[Similar]:
    """The nearest shown objects to ``obj`` in its partition, nearest first (see ``recommendations``)."""
    return recommendations(obj, limit).items


def recommendations(
    obj: models.Model, limit: int = 5, *, rules: bool = True, fallback: bool = True, source: str = "visual"
) -> Recommendations:
    """The index status of ``obj`` and up to ``limit`` similar objects that may be shown and bought now.

    The stored neighbour list is read with its targets' photo hashes, then the targets that
    pass the model's ``shown()`` and ``available()`` now and are still in the product's
    partition: a deleted, hidden, sold-out or moved product never shows, even before the
    lists are rebuilt. Then, at read time (nothing stored changes):

    - photos byte-identical to the product's own, or to a nearer item's, are left out unless
      ``EXCLUDE_DUPLICATE_PHOTOS`` is off;
    - at most one item per variant group (``group_field``), none of the product's own group;
    - the merchandiser's rules (``rules``: off for the plain arm of an A/B test): excludes,
      boosts, then pins at their positions;
    - when that leaves fewer than ``limit``, the index is asked for nearer-than-the-rest items
      beyond the stored list (deeper, until the partition has no more), and then, with
      ``fallback`` and the model's ``fallback`` option set, other items fill the strip
      (``origin="fallback"``).

    A ready product without a list yet (its list is being rebuilt), or moved to another
    partition since its list was made (its task not run yet), gets neighbours from its new
    partition in the index, computed here and not stored.

    ``source="shop"`` (an A/B test's arm against what the shop had) gives the shop's own
    recommendations instead (the declaration's ``existing()``), those that may be shown and
    bought now, with ``origin="shop"``.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    indexed_model = registry.for_model(obj)
    object_id = str(obj.pk)
    vector = _state_rows(indexed_model, [object_id]).first()
    state = _state_of(indexed_model, obj, vector)
    if source == "shop":
        return Recommendations(state.status, state.partition, _shop_items(indexed_model, obj, limit), state.error)
    if state.status == NO_IMAGE or limit < 1:
        return Recommendations(state.status, state.partition, [], state.error)
    moved = vector is not None and vector.partition != state.partition
    # A moved product's stored list is of its old partition: none of it may be shown.
    hits = [] if moved else _listed_hits(indexed_model, object_id, state.partition)
    searchable = state.status == Status.READY
    if not hits and searchable:
        if vector.model_id != _current_model_id():
            # Made by another extractor: the sweep or a reindex will redo it.
            return Recommendations(Status.PENDING.value, state.partition, [])
        hits = _hits_from_index(indexed_model, object_id, state.partition, app_settings.NEIGHBOURS, exclude={object_id})
        if hits is None:  # missing from the index: the same
            return Recommendations(Status.PENDING.value, state.partition, [])
    strip = Strip(
        indexed_model,
        limit,
        source=obj,
        partition=state.partition,
        rules=Rules.load(indexed_model, obj, state.partition) if rules else Rules.none(),
        duplicates_of={state.image_sha256} if state.image_sha256 else set(),
    )
    strip.add(hits)
    k = max(app_settings.NEIGHBOURS, len(hits))
    while strip.short and searchable and len(hits) >= k - 1:
        # Rules, stock or variants left the stored list short: look further in the partition.
        k *= DEEPER_SEARCH_FACTOR
        hits = _hits_from_index(indexed_model, object_id, state.partition, k, exclude=strip.seen_ids | {object_id})
        if not hits:
            break
        strip.add(hits)
    if strip.short and fallback and indexed_model.declaration.fallback == NEAREST:
        if searchable:  # the nearest in every partition, beyond this one's
            k = 4 * limit + len(strip.seen_ids)
            found = _hits_from_index(indexed_model, object_id, None, k, exclude=strip.seen_ids | {object_id})
            strip.add(found or [], origin="fallback")
    elif strip.short and fallback:
        strip.fill_from(_fallback_candidates(indexed_model, obj, state.partition, strip))
    return Recommendations(state.status, state.partition, strip.items(), state.error)


#: What a strip is made of: the visual neighbours, or (an A/B arm) the shop's own recommendations.
SOURCES = ("visual", "shop")


def _shop_items(indexed_model: IndexedModel, obj: models.Model, limit: int) -> list[Similar]:
    """The first ``limit`` of the shop's own recommendations for ``obj`` that may be shown and bought now."""
    if limit < 1:
        return []
    wanted = [item.pk for item in indexed_model.declaration.existing(obj) if item.pk != obj.pk]
    shown = indexed_model.shown_now().prefetch_related(*indexed_model.prefetch).in_bulk(wanted)
    items = [shown[pk] for pk in dict.fromkeys(wanted) if pk in shown][:limit]
    return [Similar(item, None, rank, origin="shop") for rank, item in enumerate(items, start=1)]


#: Each deeper search of a strip left short asks for this many times more neighbours.
DEEPER_SEARCH_FACTOR = 4


def _current_model_id() -> str | None:
    """The extractor's ``model_id``, or None when it cannot be known here (a converted network
    missing from this process's machine): the page then shows the product as pending, not an error."""
    try:
        return get_extractor().model_id
    except WeightsError as exc:
        logger.error("visual_recs: %s", exc)
        return None


def index_states(objects: Sequence[models.Model]) -> dict[str, IndexState]:
    """The index state of each of ``objects`` (all of one registered model) by ``str(pk)``, in one query."""
    if not objects:
        return {}
    indexed_model = registry.for_model(objects[0])
    ids = [str(obj.pk) for obj in objects]
    vectors = {vector.object_id: vector for vector in _state_rows(indexed_model, ids)}
    return {object_id: _state_of(indexed_model, obj, vectors.get(object_id)) for obj, object_id in zip(objects, ids)}


def _state_rows(indexed_model: IndexedModel, object_ids: list[str]) -> models.QuerySet:
    return FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=object_ids).only(
        "object_id", "status", "error", "partition", "image_sha256", "model_id"
    )


def _state_of(indexed_model: IndexedModel, obj: models.Model, vector: FeatureVector | None) -> IndexState:
    partition = indexed_model.partition_of(obj)
    if indexed_model.image_of(obj) is None:
        return IndexState(NO_IMAGE, partition)
    if vector is None:
        # A photo but no row yet: the save's task has not run, or the broker was down (the sweep's work).
        return IndexState(Status.PENDING.value, partition)
    error = vector.error if vector.status == Status.FAILED else ""
    return IndexState(vector.status, partition, error, vector.image_sha256)


def _listed_hits(indexed_model: IndexedModel, object_id: str, partition: str) -> list[_Hit]:
    """The stored list of ``object_id``, nearest first, with each target's photo hash from the same query.

    Equal distances are ordered by target id here, as text, the way the lists were built
    (a database's collation may order ids otherwise).
    """
    rows = SimilarItem.objects.filter(content_type=indexed_model.content_type, source_id=object_id).order_by("distance")
    if not app_settings.EXCLUDE_DUPLICATE_PHOTOS:
        hits = [_Hit(target, distance, partition) for target, distance in rows.values_list("target_id", "distance")]
    else:
        target_photo = FeatureVector.objects.filter(
            content_type=OuterRef("content_type"), object_id=OuterRef("target_id")
        ).values("image_sha256")[:1]
        rows = rows.annotate(target_sha256=Subquery(target_photo)).values_list("target_id", "distance", "target_sha256")
        hits = [_Hit(target, distance, partition, sha256 or "") for target, distance, sha256 in rows]
    return sorted(hits, key=lambda hit: (hit.distance, hit.object_id))


def _hits_from_index(
    indexed_model: IndexedModel, object_id: str, partition: str | None, k: int, *, exclude: set[str]
) -> list[_Hit] | None:
    """The ``k`` neighbours in ``partition`` (the object's now; None: every partition) of a ready
    vector, asked of the index (one query), without ``exclude``; None if the index lacks the vector (stale)."""
    index = get_index()
    collection = current_space(indexed_model).collection
    vector = index.vectors(collection, [object_id]).get(object_id)
    if vector is None:
        return None
    found = index.search(collection, partition, vector, k, exclude=exclude)
    photos: dict[str, str] = {}
    if app_settings.EXCLUDE_DUPLICATE_PHOTOS and found:
        photos = dict(
            FeatureVector.objects.filter(
                content_type=indexed_model.content_type, object_id__in=[hit.object_id for hit in found]
            ).values_list("object_id", "image_sha256")
        )
    return [_Hit(hit.object_id, hit.distance, partition, photos.get(hit.object_id, "")) for hit in found]


class Strip:
    """The items of one strip, gathered from candidates in batches (each batch one query).

    ``add`` takes index hits nearest first and keeps those that may be shown now; ``items``
    orders the kept ones by their boosted distance, cuts them to the room the pins leave, and
    puts the pins in their places. ``short`` says whether more candidates are wanted.
    """

    def __init__(
        self,
        indexed_model: IndexedModel,
        limit: int,
        *,
        source: models.Model | None = None,
        partition: str | None = None,
        rules: Rules | None = None,
        duplicates_of: set[str] = frozenset(),
    ) -> None:
        self.indexed_model = indexed_model
        self.limit = limit
        self.source = source
        self.partition = partition
        self.rules = rules or Rules.none()
        self.exclude_duplicates = app_settings.EXCLUDE_DUPLICATE_PHOTOS
        self.seen_photos = set(duplicates_of) if self.exclude_duplicates else set()
        #: Every candidate id looked at (kept or not): a deeper search leaves them out.
        self.seen_ids: set[str] = set()
        self.groups: set[str] = set()
        if source is not None and not indexed_model.declaration.recommend_own_group:
            self.groups.add(indexed_model.group_of(source))
        self.kept: list[tuple[float, str, Similar]] = []
        self.pinned: list[Similar] = []
        self.fallen_back: list[Similar] = []
        # Pins beyond this strip's length do nothing here: the item may still show where its distance puts it.
        # The others are read with the first batch of candidates (one query for both).
        self._pins_to_place = [pin for pin in self.rules.pins if pin.position <= limit]
        self.seen_ids.update(pin.target_id for pin in self._pins_to_place)

    @property
    def short(self) -> bool:
        return len(self.kept) + len(self._pins_to_place) + len(self.pinned) + len(self.fallen_back) < self.limit

    def _objects(self, object_ids: list[str]) -> dict[str, models.Model]:
        """The objects of these ids that may be shown and bought now, by ``str(pk)``, in one query."""
        candidates = self.indexed_model.shown_now().prefetch_related(*self.indexed_model.prefetch)
        # An id this model cannot have (a rule made in code, say) is left out, not a failed query.
        pks = [pk for pk in map(self.indexed_model.pk_from, object_ids) if pk is not None]
        return {str(pk): obj for pk, obj in candidates.in_bulk(pks).items()}

    def _fits(self, obj: models.Model, hit_partition: str | None) -> bool:
        """Whether ``obj`` may join: still in the partition, not excluded, not of a group already there."""
        if hit_partition is not None and self.indexed_model.partition_of(obj) != hit_partition:
            return False  # moved to another partition since it was indexed
        if self.rules.excludes(self.indexed_model, obj):
            return False
        return self.indexed_model.group_of(obj) not in self.groups

    def _place_pins(self, objects: dict[str, models.Model]) -> None:
        """Put the pinned items that may be shown (in ``objects``, read with a batch of candidates) in the strip."""
        for pin in self._pins_to_place:
            obj = objects.get(pin.target_id)
            if obj is None or not self._fits(obj, self.partition):
                continue  # hidden, sold out, deleted, in another partition, excluded
            self.groups.add(self.indexed_model.group_of(obj))
            self.pinned.append(Similar(obj, None, pin.position, origin="pinned", rule_id=pin.rule_id))
        self._pins_to_place = []

    def add(self, hits: list[_Hit], origin: str = "visual") -> None:
        """Keep those of ``hits`` (nearest first) that may be shown, up to what the strip needs."""
        hits = [hit for hit in hits if hit.object_id not in self.seen_ids]
        pins = self._pins_to_place
        if not pins and (not hits or not self.short):
            return
        objects = self._objects([hit.object_id for hit in hits] + [pin.target_id for pin in pins])
        if pins:
            self._place_pins(objects)  # first: their groups keep their variants out of the rest
        for hit in hits:
            self.seen_ids.add(hit.object_id)
            obj = objects.get(hit.object_id)
            if obj is None or not self._fits(obj, hit.partition):
                continue  # filtered out, sold out, deleted, moved, excluded, or of a group already shown
            if self.exclude_duplicates and hit.image_sha256:
                if hit.image_sha256 in self.seen_photos:
                    continue
                self.seen_photos.add(hit.image_sha256)
            distance, rule_id = self.rules.boosted(self.indexed_model, obj, hit.distance)
            self.groups.add(self.indexed_model.group_of(obj))
            item = Similar(obj, hit.distance, 0, origin=origin, rule_id=rule_id)
            if origin == "fallback":
                self.fallen_back.append(item)  # after every item of the partition, however near
            else:
                # Sorted by (boosted distance, id) in items(); the id, unique, keeps Similar out of the comparison.
                self.kept.append((distance, hit.object_id, item))
            if not self.rules.boosts and not self.short:
                # Without boosts the order is the hits' own, so no later hit can come first.
                break

    def fill_from(self, candidates: models.QuerySet | None) -> None:
        """Fill what the strip still lacks from ``candidates`` (in their order), marked "fallback"."""
        if self._pins_to_place:
            self.add([])
        if candidates is None:
            return
        for obj in candidates.exclude(pk__in=self._seen_pks())[: 4 * self.limit]:
            if not self.short:
                break
            self.seen_ids.add(str(obj.pk))
            if not self._fits(obj, self.partition):
                continue
            self.groups.add(self.indexed_model.group_of(obj))
            self.fallen_back.append(Similar(obj, None, 0, origin="fallback"))

    def _seen_pks(self) -> list:
        seen = [pk for pk in map(self.indexed_model.pk_from, self.seen_ids) if pk is not None]
        return seen if self.source is None else [self.source.pk, *seen]

    def items(self) -> list[Similar]:
        """The strip: kept items by boosted distance (ties by id), then the fallback's, with the pins in their places."""
        if self._pins_to_place:
            self.add([])  # a strip without candidates still shows its pins
        ranked = [item for _, _, item in sorted(self.kept)]
        flowing = iter((ranked + self.fallen_back)[: self.limit - len(self.pinned)])
        pins = list(self.pinned)  # by position
        strip: list[Similar] = []
        while len(strip) < self.limit:
            if pins and pins[0].rank == len(strip) + 1:
                strip.append(pins.pop(0))
                continue
            item = next(flowing, None)
            if item is None:
                break
            strip.append(item)
        strip.extend(pins)  # pinned further down than the other items reach: after them
        for rank, item in enumerate(strip, start=1):
            item.rank = rank
        return strip


def _fallback_candidates(
    indexed_model: IndexedModel, obj: models.Model, partition: str, strip: Strip
) -> models.QuerySet | None:
    """What fills a short strip: per the model's ``fallback`` option, in its ``fallback_order``; None when off."""
    declaration = indexed_model.declaration
    option = declaration.fallback
    if not option:
        return None
    candidates = indexed_model.shown_now()
    if indexed_model.partition_field is not None:
        candidates = candidates.filter(**{indexed_model.partition_field: partition})
    # (with a partition() hook each candidate's partition is checked as it joins the strip)
    order = declaration.fallback_order
    order = [order] if isinstance(order, str) else list(order)
    if order and order[0] == POPULAR:
        popular = _most_clicked(indexed_model, partition, 8 * strip.limit)
        ranks = [When(pk=pk, then=Value(rank)) for rank, pk in enumerate(map(indexed_model.pk_from, popular)) if pk is not None]
        # The most clicked first, by clicks; then the rest of the order (newest first by default).
        first = Case(*ranks, default=Value(len(ranks)), output_field=models.IntegerField()) if ranks else None
        order = ([first] if first is not None else []) + (order[1:] or ["-pk"])
    candidates = candidates.order_by(*map(_nulls_last, order))
    if option != "partition":
        value = indexed_model.value_of(obj, option)
        if value is None or value == "":
            return None
        if option in concrete_fields(indexed_model.model):
            candidates = candidates.filter(**{option: value})
        else:
            # No column to filter on: each candidate's value is read in Python, in the fallback's
            # order, until enough share the product's (the whole partition only when few do).
            wanted, needed, ids = str(value), 8 * strip.limit, []
            for candidate in candidates.iterator(chunk_size=500):
                if str(indexed_model.value_of(candidate, option)) == wanted:
                    ids.append(candidate.pk)
                    if len(ids) == needed:
                        break
            candidates = candidates.filter(pk__in=ids)
    return candidates.prefetch_related(*indexed_model.prefetch)


#: ``fallback`` for "the nearest in any partition": the strip crosses its partition only when it must.
NEAREST = "nearest"
#: ``fallback_order``'s first term for "most clicked in strips lately" (the recorded click events).
POPULAR = "popular"
#: The days of clicks ``POPULAR`` counts.
POPULAR_DAYS = 30


def _most_clicked(indexed_model: IndexedModel, partition: str, count: int) -> list[str]:
    """The ids of the items of ``partition`` clicked most in strips in the last ``POPULAR_DAYS`` days, most first."""
    since = timezone.now() - timedelta(days=POPULAR_DAYS)
    clicks = Event.objects.filter(
        content_type=indexed_model.content_type, kind=Event.Kind.CLICK, partition=partition, created_at__gte=since
    )
    top = clicks.values("target_id").annotate(clicks=Count("id")).order_by("-clicks", "target_id")[:count]
    return [row["target_id"] for row in top]


def _nulls_last(term):
    """An ``order_by`` term with empty values last on every database (PostgreSQL puts NULL first in
    a descending order): a product without a price or a popularity is the fallback's last resort."""
    if not isinstance(term, str) or term == "?":
        return term
    field = F(term.removeprefix("-"))
    return field.desc(nulls_last=True) if term.startswith("-") else field.asc(nulls_last=True)


# --- what needs work --------------------------------------------------------------------

"""What a shop declares about each model it indexes: one ``ModelPhotos`` subclass per model.

    # shop/visual.py
    from visual_recs.registration import ModelPhotos

    class ProductPhotos(ModelPhotos):
        model = "shop.Product"
        photo_field = "photo"
        partition_field = "gender"

        def shown(self, queryset):
            return queryset.filter(is_published=True)

    # settings.py
    VISUAL_RECS = {"MODELS": {"products": "shop.visual.ProductPhotos"}}

Each option is an attribute or a method with a default, as haystack's ``SearchIndex`` and
wagtail's ``Indexed`` declare what is indexed. A public name the base does not know (a typo
such as ``partiton_field``) is the system check error ``visual_recs.E016``; nothing here
raises at import, and this module imports nothing of Django's, so a settings-adjacent module
can import it before Django is set up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: A ``learn_from`` entry: the name of something ``value_of`` reads, or ``callable(obj) -> value``.
LearnFrom = str | Callable[[Any], Any]


class ModelPhotos:
    """How one registered model is indexed: its photo, what may be shown, its partition, its labels.

    The registry makes one instance per use (``ModelPhotos()``, no arguments); methods read
    the declaration through ``self``. Subclass it, set what differs from the defaults below,
    and register the subclass by its dotted path (or the class itself) in
    ``VISUAL_RECS["MODELS"]``.
    """

    #: The indexed model: ``"app_label.ModelName"`` or the model class. Required.
    model: str | type | None = None

    #: The model's own FileField/ImageField holding the photo. Ignored (and an error to set)
    #: when ``photo()`` is overridden.
    photo_field: str = "image"

    #: A field of the model whose value splits the catalog (neighbours only within one value),
    #: or another name ``value_of`` reads (then each object is asked); None: one partition.
    partition_field: str | None = None

    #: What ``visual_recs_fit`` learns from: names (a field, an attribute or method of the
    #: model, or what a subclass's ``value_of`` reads) or callables ``f(obj)``, as a list (1 each)
    #: or a dict of entry -> weight (each one's share of the learned space).
    learn_from: Iterable[LearnFrom] | Mapping[LearnFrom, float] = ()

    #: ``prefetch_related`` lookups for the recommended objects a page shows, so a ``photo()``
    #: reading related rows costs one query per lookup, not one per card.
    prefetch: Iterable[str] = ()

    #: Related models whose rows are this model's photos: ``[{"model": "app.Model", "owner":
    #: "<its ForeignKey to this model>"}]``; their saves and deletes re-index the owner.
    photo_models: Iterable[Mapping[str, str]] = ()

    #: A DRF serializer of one object (dotted path or class) that shows this model in the REST
    #: API in place of the default ``id, title, url, image_url``; None: the default.
    serializer: str | type | None = None

    #: A field (or another name ``value_of`` reads) whose value groups variants of one product
    #: (a parent id, a style number): a strip shows at most one item per group, and never one of
    #: the product's own group unless ``recommend_own_group``. None: each object is its own group.
    group_field: LearnFrom | None = None

    #: Whether a product's strip may show items of its own group (its other colours, say).
    recommend_own_group: bool = False

    #: What fills a strip that rules, stock or variants left short (its items are marked
    #: "fallback" in the API): None (off), ``"partition"`` (other items of the product's
    #: partition), a name ``value_of`` reads (items sharing the product's value of it, a
    #: category, within the partition), both ordered by ``fallback_order``; or ``"nearest"``
    #: (the nearest by photo in any partition: for a partition that is a preference, not a rule).
    fallback: str | None = None

    #: ``order_by`` of the fallback's items (e.g. ``"-created_at"``; empty values last), or
    #: ``"popular"`` first: the items clicked most in strips in the last 30 days (the recorded
    #: events), then the rest of the order (newest first by default).
    fallback_order: str | Iterable[str] = "-pk"

    #: Public names a subclass adds to the options it accepts (``OscarProducts`` adds
    #: ``recommendations``); any other public name it defines is a typo (``visual_recs.E016``).
    more_options: Iterable[str] = ()

    def photo(self, obj: Any) -> Any:
        """The photo of ``obj``: a Django ``FieldFile`` (empty or None when it has none).

        By default the model's ``photo_field``. Override it for photos kept elsewhere (a
        related model: name it in ``photo_models`` too), e.g. ``obj.images.first().original``.
        """
        return getattr(obj, self.photo_field)

    def with_photo(self, queryset: Any) -> Any:
        """Those of ``queryset`` that have a photo, and so should have a vector.

        By default those whose ``photo_field`` is set; with ``photo()`` overridden, all of them
        (the database cannot tell: indexing then asks ``photo()`` and counts those without as
        "no photo" on each sweep). Override it to say so in one query.
        """
        if overrides(self, "photo"):
            return queryset
        return queryset.exclude(**{self.photo_field: ""}).exclude(**{f"{self.photo_field}__isnull": True})

    def shown(self, queryset: Any) -> Any:
        """Those of ``queryset`` (the default manager's objects) that may be shown as recommendations now: all by default."""
        return queryset

    def available(self, queryset: Any) -> Any:
        """Those of ``queryset`` that may be bought now (in stock): all by default.

        Asked on every strip, at read time: a sold-out item drops out of strips at once, and
        shows again once back in stock, with no task and no list rewritten. Unlike ``shown()``
        (what may be listed at all), it costs no reindex when it changes; keep it one query
        (a filter or an ``Exists``), e.g. ``queryset.filter(stock__gt=0)``.
        """
        return queryset

    def group(self, obj: Any) -> Any:
        """The variant group of ``obj`` (None: its own): by default its ``group_field``."""
        return self.value_of(obj, self.group_field) if self.group_field else None

    def existing(self, obj: Any) -> Iterable[Any]:
        """The shop's own recommendations for ``obj``, best first: none by default.

        What an A/B test's arm with ``{"source": "shop"}`` shows in place of the visual strip
        (docs/measurement.md), so the shop can measure visual_recs against what it had.
        """
        return ()

    def partition(self, obj: Any) -> Any:
        """The partition of ``obj`` (None or "" is the ``""`` partition): by default its ``partition_field``.

        Override it for a partition no field holds; the registry then asks each object when
        it selects one partition (``visual_recs_reindex --partition``).
        """
        return self.value_of(obj, self.partition_field) if self.partition_field else None

    def dependants(self, obj: Any) -> Iterable[Any]:
        """Objects of this model whose photo follows ``obj``'s (a variant showing its parent's): none by default.

        They are looked at again whenever ``obj`` is saved or its photos change (one level).
        """
        return ()

    def value_of(self, obj: Any, name: LearnFrom) -> Any:
        """What ``obj`` holds under ``name`` (a ``partition_field`` or a ``learn_from`` entry).

        A concrete field's stored value (a choice's value, a foreign key's id), else the
        attribute (a method is called with no arguments); a callable entry is called with ``obj``.
        A subclass reading more kinds of names extends this and ``name_problem``.
        """
        if callable(name):
            return name(obj)
        field = concrete_fields(type(obj)).get(name)
        if field is not None:
            return field.value_from_object(obj)
        value = getattr(obj, name, None)
        return value() if callable(value) else value

    def name_problem(self, model: type, name: str) -> str:
        """Why ``value_of`` cannot read ``name`` from objects of ``model`` ("" when it can); the checks ask it."""
        if name in concrete_fields(model) or any(f.name == name for f in model._meta.get_fields()) or hasattr(model, name):
            return ""
        return f"{model._meta.label} has no field or attribute {name!r}"


def overrides(declaration: ModelPhotos | type[ModelPhotos], name: str) -> bool:
    """Whether ``declaration`` (a subclass or an instance of one) defines its own ``name`` method."""
    cls = declaration if isinstance(declaration, type) else type(declaration)
    return getattr(cls, name) is not getattr(ModelPhotos, name)


def declared(declaration: type[ModelPhotos], name: str) -> bool:
    """Whether a subclass between ``declaration`` and ``ModelPhotos`` sets ``name`` itself (not left to the default)."""
    return any(name in vars(cls) for cls in declaration.__mro__ if cls is not ModelPhotos and issubclass(cls, ModelPhotos))


def option_names(declaration: type[ModelPhotos]) -> set[str]:
    """The public names ``declaration`` may define: the base's, and every class's ``more_options``."""
    names = {name for name in vars(ModelPhotos) if not name.startswith("_")}
    for cls in declaration.__mro__:
        names.update(vars(cls).get("more_options", ()))
    return names


def unknown_names(declaration: type[ModelPhotos]) -> list[str]:
    """The public names a subclass defines that are no option (typos, or the old settings' keys)."""
    known = option_names(declaration)
    return sorted(
        {
            name
            for cls in declaration.__mro__
            if cls is not ModelPhotos and issubclass(cls, ModelPhotos)
            for name in vars(cls)
            if not name.startswith("_") and name not in known
        }
    )


def entry_name(entry: LearnFrom) -> str:
    """The name a ``learn_from`` entry is stored and shown under: itself, or a callable's ``__name__``."""
    return entry if isinstance(entry, str) else getattr(entry, "__name__", repr(entry))


@functools.lru_cache(maxsize=None)
def concrete_fields(model: type) -> dict[str, Any]:
    """The model's concrete, non-many-to-many fields by name and by attname (``category``, ``category_id``).

    Cached per model class (a strip reads a field of each candidate through ``value_of``); the
    dict is shared, so callers only read it.
    """
    fields = {}
    for field in model._meta.concrete_fields:
        fields[field.name] = fields[field.attname] = field
    return fields

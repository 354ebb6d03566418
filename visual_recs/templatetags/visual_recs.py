"""``{% similar_items product limit=5 %}``: the similar-items strip of a product page.

    {% load visual_recs %}
    {% similar_items product limit=5 %}               renders visual_recs/similar_items.html
    {% similar_items product limit=5 as items %}      puts the cards in ``items`` for your own markup

A card has ``object``, ``distance`` (None for a pinned or fallback item), ``rank``, ``origin``
("visual", "pinned" or "fallback"), ``title``, ``url`` (None when the model has no
``get_absolute_url``), ``image_url`` and ``event_token`` (None unless ``EVENTS`` is on, the
page has a request and its visitor is no bot: docs/measurement.md). With an ``EXPERIMENT``,
the visitor's arm decides the strip. Whatever goes wrong inside the recommender, the tag
renders nothing (or sets an empty list) and logs why: a product page never breaks over it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django import template
from django.db import models
from django.http import HttpRequest
from django.template.base import FilterExpression, Parser, Token, token_kwargs

from .. import events, experiments, registry

logger = logging.getLogger(__name__)
register = template.Library()

TEMPLATE_NAME = "visual_recs/similar_items.html"
DEFAULT_LIMIT = 5


@dataclass(frozen=True)
class Card:
    """One similar item, with what a card shows."""

    object: models.Model
    distance: float | None
    rank: int
    origin: str
    title: str
    url: str | None
    image_url: str | None
    event_token: str | None = None


def cards_for(product: models.Model, limit: int, request: HttpRequest | None = None) -> tuple[str, list[Card]]:
    """The product's index status and its similar items as cards (in the visitor's arm, with event tokens)."""
    indexed_model = registry.for_model(product)
    found, arm = experiments.recommend(request, product, limit)
    tokens = events.tokens_for(request, product, found, arm) or [None] * len(found.items)
    cards = [
        Card(
            object=item.object,
            distance=item.distance,
            rank=item.rank,
            origin=item.origin,
            title=indexed_model.title_of(item.object),
            url=indexed_model.url_of(item.object),
            image_url=indexed_model.image_url_of(item.object),
            event_token=token,
        )
        for item, token in zip(found.items, tokens)
    ]
    return found.status, cards


class SimilarItemsNode(template.Node):
    def __init__(self, product: FilterExpression, limit: FilterExpression | None, target_var: str | None) -> None:
        self.product = product
        self.limit = limit
        self.target_var = target_var

    def render(self, context: template.Context) -> str:
        product = None
        try:
            product = self.product.resolve(context)
            limit = int(self.limit.resolve(context)) if self.limit is not None else DEFAULT_LIMIT
            status, cards = cards_for(product, limit, context.get("request"))
            if self.target_var:
                context[self.target_var] = cards
                return ""
            strip = context.template.engine.get_template(TEMPLATE_NAME)
            return strip.render(context.new({"product": product, "items": cards, "status": status}))
        except Exception:
            # The one place that catches everything: recommendations are an extra on a page
            # that must render (a missing table, a bad setting, a broken storage, a template error).
            logger.exception("visual_recs: the similar items of %r could not be shown", product)
            if self.target_var:
                context[self.target_var] = []
            return ""


@register.tag("similar_items")
def similar_items(parser: Parser, token: Token) -> SimilarItemsNode:
    """``{% similar_items product [limit=N] [as name] %}``; see the module's docstring."""
    bits = token.split_contents()
    tag_name, rest = bits[0], bits[1:]
    target_var = None
    if len(rest) >= 2 and rest[-2] == "as":
        target_var, rest = rest[-1], rest[:-2]
    if not rest:
        raise template.TemplateSyntaxError(f"'{tag_name}' needs a product: {{% {tag_name} product limit=5 %}}")
    product = parser.compile_filter(rest[0])
    options = token_kwargs(rest[1:], parser, support_legacy=False)
    leftover = rest[1 + len(options) :]
    if leftover or set(options) - {"limit"}:
        raise template.TemplateSyntaxError(
            f"'{tag_name}' takes a product, then optionally limit=N and 'as name', not {' '.join(rest[1:])!r}"
        )
    return SimilarItemsNode(product, options.get("limit"), target_var)

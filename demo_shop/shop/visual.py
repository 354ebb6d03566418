"""The demo's declaration of the bundled Product for visual_recs (``VISUAL_RECS["MODELS"]`` names it)."""

from visual_recs.contrib.catalog import CatalogProducts


class DemoProducts(CatalogProducts):
    """The bundled Product by gender, active ones shown, and what the catalog files each product under.

    ``visual_recs_fit`` learns the space in which products of one type (and, a little, one
    colour) are near (README, "Learning from your catalog"; bench/relevance.py measured these weights).
    """

    learn_from = {"product_type": 1.0, "colour": 0.1}

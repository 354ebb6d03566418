"""The catalog importer's exception."""

from __future__ import annotations

from visual_recs.exceptions import VisualRecsError


class CatalogError(VisualRecsError):
    """The CSV, or its mapping onto a model, cannot be used at all (missing file, column, field, model)."""

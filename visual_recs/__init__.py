"""visual_recs: similar items for a Django shop, found by looking at the product photos."""

__version__ = "0.1.0"

"""Small catalogs in the sample dataset's CSV format, written for a test."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = [
    "ProductId", "Gender", "Category", "SubCategory", "ProductType", "Colour", "Usage", "ProductTitle", "Image",
    "ImageURL",
]


def write_catalog_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` (dicts keyed by the dataset's columns) as a fashion.csv at ``path``."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path

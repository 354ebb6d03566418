"""The names ``OscarProducts`` reads from a product beside its fields: its class, or one of its attributes.

A ``Partition`` reads the spec ``"product_class"`` or ``"attribute:<code>"`` from a product,
for ``partition_field`` and ``learn_from``. It never raises on a product: a missing class or
attribute is None, the ``""`` partition (a product page must render whatever the catalogue holds).
"""

from __future__ import annotations

from dataclasses import dataclass

PRODUCT_CLASS = "product_class"
ATTRIBUTE = "attribute:"


@dataclass(frozen=True)
class Partition:
    """``partition(product) -> str | None`` for the spec ``"product_class"`` or ``"attribute:<code>"``."""

    spec: str

    @staticmethod
    def reads(name: object) -> bool:
        """Whether ``name`` is a spec of this kind (well formed or not), rather than a field's name."""
        return isinstance(name, str) and (name == PRODUCT_CLASS or name.startswith(ATTRIBUTE))

    @property
    def attribute_code(self) -> str | None:
        """The attribute's code for an ``"attribute:<code>"`` spec, else None."""
        if isinstance(self.spec, str) and self.spec.startswith(ATTRIBUTE):
            return self.spec[len(ATTRIBUTE):] or None
        return None

    def problem(self) -> str:
        """Why the spec is not one this understands ("" when it is)."""
        if self.spec == PRODUCT_CLASS or (self.attribute_code or "").isidentifier():
            return ""
        return f"{self.spec!r} is not 'product_class' or 'attribute:<code>' (an attribute code is a Python identifier)"

    def __call__(self, product) -> str | None:
        if self.spec == PRODUCT_CLASS:
            product_class = product.get_product_class()
            return product_class.slug if product_class is not None else None
        code = self.attribute_code
        if code is None:
            return None  # a bad spec: visual_recs.E003 or E010 says so
        # Oscar's container: the values set on this instance (a form's, before it saves them), else
        # the stored ones, a child's own over its parent's; AttributeError for a code it lacks.
        value = getattr(product.attr, code, None)
        if value is None or value == "":
            return None
        return str(getattr(value, "option", value))  # an option attribute's value is an AttributeOption

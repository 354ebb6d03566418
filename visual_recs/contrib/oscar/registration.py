"""The declaration of django-oscar's ``catalogue.Product``, ready to register or to subclass."""

from __future__ import annotations

from visual_recs.registration import LearnFrom, ModelPhotos

from . import hooks
from .partitions import Partition


class OscarProducts(ModelPhotos):
    """Oscar's catalogue (forked or not): its photos, variants and ``browsable()`` products.

    The photo is the file of ``primary_image()`` (a child without images has its parent's),
    ``ProductImage`` rows are the photo model, children are dependants, what may be
    recommended is ``browsable()``, what may be bought now is what Oscar's default strategy
    sells (``available()``: a stock record with free stock, or a class not tracking stock), and
    a parent and its children are one variant group. Subclass it to choose a partition and what a fit learns from::

        class Products(OscarProducts):
            partition_field = "attribute:gender"      # or "product_class", or a field
            learn_from = ["product_class", "attribute:colour"]
            recommendations = 4

    Besides the model's own fields and attributes, ``partition_field`` and ``learn_from`` read
    ``"product_class"`` (the product class's slug; a child's is its parent's) and
    ``"attribute:<code>"`` (that product attribute's value; a child without its own value has
    its parent's; an option attribute by its option's text). A product without one is in the
    ``""`` partition, or unlabelled.
    """

    model = "catalogue.Product"
    photo_models = [{"model": "catalogue.ProductImage", "owner": "product"}]
    # primary_image() of each card from these (a child's from its parent's), not a query each.
    prefetch = ["images", "parent__images"]
    more_options = ("recommendations",)

    #: How many of each product's similar items to copy into Oscar's ``ProductRecommendation``
    #: (0: none), so themes showing ``sorted_recommended_products`` show them.
    recommendations: int = 0

    def photo(self, product):
        return hooks.primary_photo(product)

    def with_photo(self, queryset):
        return hooks.with_photo(queryset)

    def shown(self, queryset):
        return hooks.browsable(queryset)

    def available(self, queryset):
        return hooks.available(queryset)

    def group(self, product):
        # A child is a variant of its parent: one group, so a strip shows one of them at most.
        return product.parent_id or product.pk

    def existing(self, product):
        # What the staff chose in the dashboard's "Upselling" (Oscar's recommended products),
        # which ``recommendations = N`` would overwrite: an A/B test against it keeps that at 0.
        return product.sorted_recommended_products

    def dependants(self, product):
        return hooks.children(product)

    def value_of(self, product, name: LearnFrom):
        if isinstance(name, str) and Partition.reads(name):
            return Partition(name)(product)
        return super().value_of(product, name)

    def name_problem(self, model: type, name: str) -> str:
        if Partition.reads(name):
            return Partition(name).problem()
        problem = super().name_problem(model, name)
        return problem and f"{problem} (an Oscar product attribute is read as 'attribute:{name}')"

"""The Oscar shop's declaration of its catalogue (README, "django-oscar"): by gender, 4 recommendations copied."""

from visual_recs.contrib.oscar import OscarProducts


class ShopProducts(OscarProducts):
    partition_field = "attribute:gender"
    recommendations = 4

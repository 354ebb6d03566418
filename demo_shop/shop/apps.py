from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "demo_shop.shop"
    label = "shop"
    verbose_name = "Demo shop"

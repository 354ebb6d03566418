"""What an Oscar shop adds to the suite's settings (after Oscar 4.2's "Building your own shop").

``tests.settings`` installs these apps when django-oscar can be imported, so the whole suite
runs on one database; the settings that change how every request or page is handled (URLs,
middleware, context processors) are in ``SHOP_SETTINGS`` and the registered models in
``SHOP_MODELS``, applied only
by the Oscar tests (the ``oscar_shop`` fixture) and by ``tests.oscar_shop.settings``, the
project a browser test serves.
"""

from oscar.defaults import *  # noqa: F401,F403  (OSCAR_* settings, as Oscar's docs start a shop)

from pathlib import Path

OSCAR_APPS = [
    "django.contrib.sites",
    "django.contrib.flatpages",
    "oscar.config.Shop",
    "oscar.apps.analytics.apps.AnalyticsConfig",
    "oscar.apps.checkout.apps.CheckoutConfig",
    "oscar.apps.address.apps.AddressConfig",
    "oscar.apps.shipping.apps.ShippingConfig",
    "oscar.apps.catalogue.apps.CatalogueConfig",
    "oscar.apps.catalogue.reviews.apps.CatalogueReviewsConfig",
    "oscar.apps.communication.apps.CommunicationConfig",
    "oscar.apps.partner.apps.PartnerConfig",
    "oscar.apps.basket.apps.BasketConfig",
    "oscar.apps.payment.apps.PaymentConfig",
    "oscar.apps.offer.apps.OfferConfig",
    "oscar.apps.order.apps.OrderConfig",
    "oscar.apps.customer.apps.CustomerConfig",
    "oscar.apps.search.apps.SearchConfig",
    "oscar.apps.voucher.apps.VoucherConfig",
    "oscar.apps.wishlists.apps.WishlistsConfig",
    "oscar.apps.dashboard.apps.DashboardConfig",
    "oscar.apps.dashboard.reports.apps.ReportsDashboardConfig",
    "oscar.apps.dashboard.users.apps.UsersDashboardConfig",
    "oscar.apps.dashboard.orders.apps.OrdersDashboardConfig",
    "oscar.apps.dashboard.catalogue.apps.CatalogueDashboardConfig",
    "oscar.apps.dashboard.offers.apps.OffersDashboardConfig",
    "oscar.apps.dashboard.partners.apps.PartnersDashboardConfig",
    "oscar.apps.dashboard.pages.apps.PagesDashboardConfig",
    "oscar.apps.dashboard.ranges.apps.RangesDashboardConfig",
    "oscar.apps.dashboard.reviews.apps.ReviewsDashboardConfig",
    "oscar.apps.dashboard.vouchers.apps.VouchersDashboardConfig",
    "oscar.apps.dashboard.communications.apps.CommunicationsDashboardConfig",
    "oscar.apps.dashboard.shipping.apps.ShippingDashboardConfig",
    "widget_tweaks",
    "haystack",
    "treebeard",
    "django_tables2",
    "visual_recs.contrib.oscar",
]
SITE_ID = 1
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}
# Neither sorl-thumbnail nor easy-thumbnails is a dependency here: cards show the original photo.
OSCAR_THUMBNAILER = "tests.oscar_shop.thumbnails.OriginalImage"
OSCAR_DEFAULT_CURRENCY = "EUR"

# The documented snippet (README, "django-oscar"): the dashboard's link to the index page.
OSCAR_DASHBOARD_NAVIGATION = [
    *OSCAR_DASHBOARD_NAVIGATION,  # noqa: F405
    {"label": "Visual similarity", "icon": "fas fa-images", "url_name": "visual_recs_oscar:visual-recs-index"},
]

SHOP_SETTINGS = {
    "ROOT_URLCONF": "tests.oscar_shop.urls",
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "oscar.apps.basket.middleware.BasketMiddleware",
        "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            # The shop's own templates first: its override of Oscar's product page.
            "DIRS": [Path(__file__).resolve().parent / "templates"],
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.debug",
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.template.context_processors.i18n",
                    "django.contrib.messages.context_processors.messages",
                    "oscar.apps.search.context_processors.search_form",
                    "oscar.apps.checkout.context_processors.checkout",
                    "oscar.apps.communication.notifications.context_processors.notifications",
                    "oscar.core.context_processors.metadata",
                ]
            },
        }
    ],
    "AUTHENTICATION_BACKENDS": [
        "oscar.apps.customer.auth_backends.EmailBackend",
        "django.contrib.auth.backends.ModelBackend",
    ],
}
# The entry a shop writes (docs/oscar.md), for VISUAL_RECS["MODELS"]: its subclass of OscarProducts. The
# test shop turns on both the strip and the copy into Oscar's recommendations, to test both; a shop picks one.
SHOP_MODELS = {"products": "tests.oscar_shop.visual.ShopProducts"}

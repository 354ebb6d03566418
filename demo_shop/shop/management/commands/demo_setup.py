"""``manage.py demo_setup``: the demo shop's catalog, index and admin user, in one idempotent step."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils.crypto import salted_hmac

from visual_recs import indexing, registry

ADMIN_USERNAME = "admin"


def default_catalog_dir() -> Path:
    """``$CATALOG_DIR``, else the sample catalog beside the repository (``../shared/data/fashion-images``)."""
    configured = os.environ.get("CATALOG_DIR")
    return Path(configured) if configured else Path(settings.BASE_DIR).parent / "shared" / "data" / "fashion-images"


# The keys earlier versions defaulted to, from which they derived the admin's password: an
# admin still holding that password gets a random one (anyone could compute the old one).
_PUBLISHED_KEYS = ("demo-only-not-secret", "change-me-demo-stack-only")


def _has_published_password(user) -> bool:
    return any(
        user.check_password(salted_hmac("demo_shop.demo_setup", ADMIN_USERNAME, secret=key).hexdigest()[:16])
        for key in _PUBLISHED_KEYS
    )


class Command(BaseCommand):
    help = (
        "Set up the demo shop: import the sample catalog (fashion.csv and images/), index it, and "
        f"create the '{ADMIN_USERNAME}' user. Running it again only reports that everything is in place."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--catalog-dir",
            type=Path,
            help="Directory with fashion.csv and images/ (default: $CATALOG_DIR or ../shared/data/fashion-images).",
        )
        parser.add_argument("--limit", type=int, help="Import only the first N products (a quick demo).")
        parser.add_argument(
            "--queue", action="store_true", help="Queue the indexing for the Celery worker instead of indexing here."
        )

    def handle(self, *args, catalog_dir: Path | None = None, limit: int | None = None, queue: bool = False, **options):
        catalog_dir = catalog_dir or default_catalog_dir()
        csv_path = catalog_dir / "fashion.csv"
        if not csv_path.is_file():
            raise CommandError(f"No fashion.csv in {catalog_dir}; pass --catalog-dir or set CATALOG_DIR.")
        # The weights and the fast extractor's network (INT8, when configured, calibrated on the catalog's photos)
        # (quick when they are in the cache already).
        call_command(
            "visual_recs_fetch_weights", calibration_dir=catalog_dir / "images", stdout=self.stdout, stderr=self.stderr
        )
        arguments = ["--csv", str(csv_path), "--images", str(catalog_dir / "images")]
        if limit is not None:
            arguments += ["--limit", str(limit)]
        if not queue:
            arguments.append("--index")
        call_command("visual_recs_import_catalog", *arguments, stdout=self.stdout, stderr=self.stderr)
        if queue:
            self.stdout.write("Once the worker has indexed the catalog, run `manage.py visual_recs_fit` to learn from its labels.")
        else:
            self._fit()
        self._ensure_admin()

    def _fit(self) -> None:
        """Learn from the catalog's labels once after indexing, and again when the ready products changed."""
        products = registry.get("products")
        if not products.learn_from:
            return
        current = indexing.current_fit(products)
        ready = indexing.neighbours.ready_rows(products).count()
        if current is not None and current.products == ready:
            self.stdout.write(f"The fit {current.version} is current ({ready} products).")
            return
        try:
            call_command("visual_recs_fit", "--model", "products", stdout=self.stdout, stderr=self.stderr)
        except CommandError as exc:
            # A small or oddly labelled catalog may not support a fit; the demo still works without one.
            self.stdout.write(f"No fit: {exc} Recommendations use the network's features as they are.")

    def _ensure_admin(self) -> None:
        """Create the admin with a random password and show it this once; a rerun only says how to reset it."""
        user, created = get_user_model()._default_manager.get_or_create(
            username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if not created and not _has_published_password(user):
            self.stdout.write(
                f"Admin user '{ADMIN_USERNAME}' exists; its password was shown when it was created. "
                f"To set a new one: python manage.py changepassword {ADMIN_USERNAME}"
            )
            return
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        state = "created" if created else "given a new password (its old one could be computed)"
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin user {state}: log in at /admin/ as {ADMIN_USERNAME} / {password}\n"
                "The password is shown only this once; keep it "
                f"(python manage.py changepassword {ADMIN_USERNAME} sets another)."
            )
        )

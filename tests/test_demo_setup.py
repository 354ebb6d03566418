"""``manage.py demo_setup``'s admin user: a random password, shown once, never derived from a key."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils.crypto import salted_hmac

from tests.conftest import CATALOG_DIR

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_extractor")]

SHOWN_PASSWORD = re.compile(r"log in at /admin/ as admin / (\S+)")


@pytest.fixture(autouse=True)
def demo_app(settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo_shop.shop"]


def demo_setup() -> str:
    out = io.StringIO()
    call_command("demo_setup", "--catalog-dir", str(CATALOG_DIR), "--limit", "2", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def shown_password(output: str) -> str | None:
    found = SHOWN_PASSWORD.search(output)
    return found[1] if found else None


def test_the_admin_gets_a_random_password_shown_once(settings):
    first = demo_setup()
    password = shown_password(first)
    admin = User.objects.get(username="admin")
    assert password and len(password) >= 16 and admin.check_password(password)
    assert admin.is_staff and admin.is_superuser
    assert "shown only this once" in first

    again = demo_setup()
    assert shown_password(again) is None and password not in again
    assert "python manage.py changepassword admin" in again
    assert User.objects.get(username="admin").check_password(password)  # left as it was


def test_the_password_is_not_derived_from_the_secret_key(settings):
    passwords = []
    for _ in range(2):
        passwords.append(shown_password(demo_setup()))
        User.objects.filter(username="admin").delete()
    assert passwords[0] != passwords[1]  # same SECRET_KEY, another password
    derived = salted_hmac("demo_shop.demo_setup", "admin", secret=settings.SECRET_KEY).hexdigest()[:16]
    assert derived not in passwords


@pytest.mark.parametrize("published_key", ["demo-only-not-secret", "change-me-demo-stack-only"])
def test_an_admin_with_the_old_computable_password_gets_a_new_one(published_key):
    computable = salted_hmac("demo_shop.demo_setup", "admin", secret=published_key).hexdigest()[:16]
    User.objects.create_superuser("admin", password=computable)
    output = demo_setup()
    admin = User.objects.get(username="admin")
    assert not admin.check_password(computable)
    assert admin.check_password(shown_password(output))


def test_an_admin_password_of_ones_own_is_kept():
    User.objects.create_superuser("admin", password="chosen by the shop")
    output = demo_setup()
    assert shown_password(output) is None
    assert User.objects.get(username="admin").check_password("chosen by the shop")

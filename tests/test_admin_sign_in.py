"""The demo admin's sign-in lockout (issue 19, item 4), through the real admin login view.

The demo's own settings (its AUTHENTICATION_BACKENDS and SIGN_IN_LOCKOUT) and URLs; the password
hasher's work is counted where PBKDF2 runs, so "not checked" means no key was derived at all.
"""

from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest
from django.conf import global_settings
from django.contrib.auth import hashers
from django.contrib.auth.models import User
from django.core.cache import cache

from demo_shop.shop import sign_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("api_cache")]  # api_cache: the counts live there

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "the right one"
START = 1_000_000 * 900 + 100.0  # 100 s into a window of the demo's 15 minutes


class QuickPBKDF2PasswordHasher(hashers.PBKDF2PasswordHasher):
    """Django's default hasher with fewer rounds: counted the same, in a fraction of the time."""

    iterations = 1000


@pytest.fixture(autouse=True)
def demo_sign_in(settings, monkeypatch):
    """The demo's sign-in settings, as demo_shop/settings.py has them (else Django's defaults), and its URLs."""
    monkeypatch.setenv("DJANGO_DEBUG", "1")  # the settings need no secret key then
    demo = runpy.run_path(str(Path(__file__).resolve().parents[1] / "demo_shop" / "settings.py"))
    settings.AUTHENTICATION_BACKENDS = demo.get("AUTHENTICATION_BACKENDS", global_settings.AUTHENTICATION_BACKENDS)
    settings.SIGN_IN_LOCKOUT = demo.get("SIGN_IN_LOCKOUT", {})
    settings.PASSWORD_HASHERS = [f"{__name__}.QuickPBKDF2PasswordHasher"]
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo_shop.shop"]
    settings.ROOT_URLCONF = "demo_shop.urls"


@pytest.fixture
def clock(monkeypatch):
    """The lockout's clock, moved by the test (never slept)."""

    class Clock:
        now = START

    monkeypatch.setattr(sign_in, "timer", lambda: Clock.now)
    return Clock


@pytest.fixture(params=["memory", "redis"])
def any_cache(request, settings):
    """The suite's memory cache, or a real Redis as the compose stack counts in."""
    if request.param == "redis":
        db = os.environ.get("VISUAL_RECS_TEST_CACHE_DB", "14")
        location = f"redis://127.0.0.1:6379/{db}"
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location}}
    cache.clear()
    yield request.param
    cache.clear()


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """One entry per password hashed (checked, or hashed for an unknown user), however the backends get there."""
    counted: list[int] = []
    real = hashers.pbkdf2
    monkeypatch.setattr(hashers, "pbkdf2", lambda *args, **kwargs: counted.append(1) or real(*args, **kwargs))
    return counted


def sign_in_as(client, username: str, password: str, address: str = "203.0.113.5"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def locked_for_minutes(response) -> int | None:
    """The minutes the page says to wait, when it says the sign-ins are locked."""
    found = re.search(r"Too many failed sign-ins; try again in (\d+) minutes?\.", response.content.decode())
    return int(found.group(1)) if found else None


def test_forty_wrong_passwords_from_one_address_are_not_all_checked(
    client, any_cache, admin_user, clock, hashes, caplog
):
    responses = [sign_in_as(client, "admin", f"guess {n}") for n in range(40)]
    assert all(response.status_code == 200 for response in responses)
    assert len(hashes) == 5  # FAILURES_PER_ADDRESS: the other 35 never reached the hasher
    locks = [record.getMessage() for record in caplog.records if record.name == "demo_shop.shop.sign_in"]
    assert len(locks) == 1 and "sign_in_failures:address:203.0.113.5" in locks[0]  # said once, in the log
    assert [locked_for_minutes(r) is not None for r in responses] == [False] * 5 + [True] * 35
    # The right password now is not checked either: the lockout tells nothing.
    response = sign_in_as(client, "admin", PASSWORD)
    assert not signed_in(response) and locked_for_minutes(response) is not None
    assert len(hashes) == 5
    # Another address is another client: its sign-in is checked (the username has 5 of its 20).
    assert signed_in(sign_in_as(client, "admin", PASSWORD, address="198.51.100.7"))


def test_the_lock_ends_when_the_window_has_passed_though_the_attempts_went_on(client, admin_user, clock, hashes):
    for n in range(5):
        sign_in_as(client, "admin", f"guess {n}")
    minutes = locked_for_minutes(sign_in_as(client, "admin", "guess 5"))
    clock.now += minutes * 60 - 90
    for n in range(40):  # refused attempts do not count: they do not make the lock longer
        sign_in_as(client, "admin", f"more {n}")
    assert locked_for_minutes(sign_in_as(client, "admin", PASSWORD)) is not None
    clock.now += 90  # as long as the page said
    assert signed_in(sign_in_as(client, "admin", PASSWORD))
    assert len(hashes) == 5 + 1


def test_one_ipv6_network_is_one_client(client, admin_user, clock, hashes):
    for host in range(1, 6):
        sign_in_as(client, "admin", "wrong", address=f"2001:db8:1:2::{host}")
    assert locked_for_minutes(sign_in_as(client, "admin", PASSWORD, address="2001:db8:1:2::99")) is not None
    assert len(hashes) == 5


def test_many_addresses_together_get_twenty_guesses_at_one_username(client, admin_user, clock, hashes):
    for n in range(20):  # a botnet: one guess from each address
        assert not signed_in(sign_in_as(client, "Admin" if n % 2 else "admin", "wrong", address=f"203.0.113.{n + 1}"))
    refused = sign_in_as(client, "admin", PASSWORD, address="198.51.100.1")  # a new address, the right password
    assert locked_for_minutes(refused) is not None and len(hashes) == 20
    # Other accounts are not locked, nor addresses for them.
    User.objects.create_user("editor", password=PASSWORD, is_staff=True)
    assert signed_in(sign_in_as(client, "editor", PASSWORD, address="198.51.100.1"))
    clock.now += 2 * 15 * 60
    assert signed_in(sign_in_as(client, "admin", PASSWORD, address="198.51.100.1"))


@pytest.mark.parametrize("username", ["x" * 150, "name with spaces", "ünïcödé/../%00"])
def test_any_username_is_counted_and_answered_never_a_500(client, admin_user, clock, username):
    responses = [sign_in_as(client, username, "wrong") for _ in range(6)]
    assert [response.status_code for response in responses] == [200] * 6
    assert locked_for_minutes(responses[-1]) is not None


def test_a_username_that_is_not_text_is_counted_as_its_text(admin_user, clock, hashes):
    from django.contrib.auth import authenticate

    for _ in range(20):  # no request: the username's count only
        assert authenticate(None, username=12345, password="wrong") is None
    assert authenticate(None, username="12345", password="wrong") is None
    assert len(hashes) == 20  # the 21st was refused before any hashing: "12345" is that username


def test_a_user_signed_in_without_the_form_stays_signed_in(client, admin_user):
    """``force_login`` (tests, the bench, a shop's own sign-up view) takes the first backend that loads
    users: never the lockout, which loads nobody."""
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200

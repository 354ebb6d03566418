"""Impression and click events, the A/B split and the performance report, through the real pieces.

Tokens are signed and read by ``django.core.signing``; the endpoint gets real requests (the
test client), writes to the real database and counts floods in a real Redis; the strip is the
real template rendered by the real tag; the report is the admin's own page.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.backends.db import SessionStore
from django.core import checks, signing
from django.core.cache import caches
from django.http import HttpResponse
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from tests.conftest import ids_of
from visual_recs import events, experiments, indexing, reports, stats, tasks
from visual_recs.contrib.catalog.models import Product
from visual_recs.indexing import Recommendations, Similar
from visual_recs.middleware import COOKIE_NAME, VisitorMiddleware
from visual_recs.models import Event, Rule

pytestmark = [pytest.mark.django_db]

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
HEADLESS_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ENDPOINT = "/visual-recs/events/"
EXPERIMENT = {"name": "rules-vs-plain", "arms": {"a": {}, "b": {}}}


@pytest.fixture
def men(fake_extractor, catalog_rows, make_catalog):
    return make_catalog(ids_of(catalog_rows, gender="Men", count=8))


@pytest.fixture
def events_on(settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS": True}


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


def page_request(rf: RequestFactory, user_agent: str = CHROME, **attributes):
    request = rf.get("/products/1/", HTTP_USER_AGENT=user_agent)
    for name, value in attributes.items():
        setattr(request, name, value)
    return request


def tokens_of(request, product, limit: int = 5, arm=None) -> list[str]:
    found = indexing.recommendations(product, limit)
    tokens = events.tokens_for(request, product, found, arm)
    assert tokens is not None and len(tokens) == len(found.items)
    return tokens


def post(client, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("HTTP_USER_AGENT", CHROME)
    return client.post(ENDPOINT, data=data, content_type=headers.pop("content_type", "application/json"), **headers)


def report_of(tokens: list[str], kind: str = "impression") -> dict:
    return {"events": [{"token": token, "kind": kind} for token in tokens]}


@pytest.fixture
def flood_cache(settings):
    """The production cache: counts in Redis (this run's database), emptied before and after."""
    url = settings.CELERY_BROKER_URL
    redis.Redis.from_url(url).flushdb()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    yield
    caches["default"].clear()
    redis.Redis.from_url(url).flushdb()


# --- tokens ---


def test_a_token_carries_what_the_server_rendered_and_reads_back(men, events_on, rf):
    product = men[0]
    found = indexing.recommendations(product, 5)
    arm = experiments.Arm("rules-vs-plain", "b")
    tokens = events.tokens_for(page_request(rf), product, found, arm)
    read = [events.read_token(token, "impression") for token in tokens]
    assert [(e.source_id, e.target_id, e.position) for e in read] == [
        (str(product.pk), str(item.object.pk), n) for n, item in enumerate(found.items, 1)
    ]
    assert {(e.content_type, e.partition, e.origin, e.rule_id, e.experiment, e.arm, e.kind) for e in read} == {
        (ContentType.objects.get_for_model(Product), "Men", "visual", None, "rules-vs-plain", "b", "impression")
    }
    assert len({e.nonce for e in read}) == len(read)  # a nonce per card
    assert max(len(token) for token in tokens) < 250  # compact: 50 of them fit the 16 KB body


def test_pinned_and_fallback_items_keep_their_origin_and_rule(men, events_on, rf):
    found = Recommendations("ready", "Men", [Similar(men[1], 0.1, 1, "pinned", 7), Similar(men[2], 0.2, 2, "fallback")])
    first, second = (events.read_token(token, "click") for token in events.tokens_for(page_request(rf), men[0], found, None))
    assert (first.origin, first.rule_id, first.arm) == ("pinned", 7, "")
    assert (second.origin, second.rule_id) == ("fallback", None)


def test_a_forged_or_altered_token_reads_as_nothing(men, events_on, rf, settings):
    token = tokens_of(page_request(rf), men[0])[0]
    payload, timestamp, signature = token.split(":")
    altered = signing.b64_encode(json.dumps({**signing.TimestampSigner(salt=events.SALT).unsign_object(token), "p": 1}).encode())
    other_salt = signing.TimestampSigner(salt="another").sign_object({"c": 1, "s": "1", "t": "2", "p": 1, "n": "x"})
    settings.SECRET_KEY = "another key"
    other_key = signing.TimestampSigner(salt=events.SALT).sign_object({"c": 1, "s": "1", "t": "2", "p": 1, "n": "x"})
    settings.SECRET_KEY = "tests-only"
    for forged in (f"{altered.decode()}:{timestamp}:{signature}", other_salt, other_key, "", "a:b:c", token[:-1]):
        assert events.read_token(forged, "impression") is None
    assert events.read_token(token, "impression") is not None


def test_an_expired_token_reads_as_nothing(men, events_on, rf, monkeypatch, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENT_TOKEN_MAX_AGE": 3600}
    two_hours_ago = time.time() - 7200
    # The signer's clock only, as it was two hours ago when the page was rendered.
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: two_hours_ago))
    old = tokens_of(page_request(rf), men[0])[0]
    monkeypatch.undo()
    assert events.read_token(old, "impression") is None
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENT_TOKEN_MAX_AGE": 3 * 3600}
    assert events.read_token(old, "impression") is not None


@pytest.mark.parametrize(
    "user_agent",
    [GOOGLEBOT, "Mozilla/5.0 (compatible; bingbot/2.0)", "facebookexternalhit/1.1", "Slackbot-LinkExpanding 1.0",
     "curl/8.5.0", "python-requests/2.32", "Mozilla/5.0 (compatible; AhrefsBot/7.0)", "Screaming Frog SEO Spider/19", ""],
)
def test_bots_are_bots(rf, user_agent):
    assert events.is_bot(page_request(rf, user_agent))


@pytest.mark.parametrize(
    "user_agent",
    [CHROME, HEADLESS_CHROME, "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
     "Mozilla/5.0 (Linux; Android 12; CUBOT KingKong 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"],
)
def test_browsers_are_not_bots_headless_chrome_included(rf, user_agent):
    assert not events.is_bot(page_request(rf, user_agent))


# --- the endpoint ---


def test_impressions_and_a_click_are_stored_once_each(client, men, events_on, rf):
    tokens = tokens_of(page_request(rf), men[0])
    assert post(client, report_of(tokens)).status_code == 204
    # sendBeacon sends a string as text/plain.
    assert post(client, report_of(tokens[1:2], "click"), content_type="text/plain;charset=UTF-8").status_code == 204
    assert sorted(Event.objects.filter(kind="impression").values_list("position", flat=True)) == [1, 2, 3, 4, 5]
    click = Event.objects.get(kind="click")
    assert (click.position, click.source_id, click.target_id) == (2, str(men[0].pk), events.read_token(tokens[1], "click").target_id)


def test_a_replayed_report_is_dropped_by_the_database(client, men, events_on, rf):
    tokens = tokens_of(page_request(rf), men[0], limit=3)
    body = report_of(tokens)
    body["events"] += body["events"]  # twice in one request
    for _ in range(3):  # and the same request three times
        assert post(client, body).status_code == 204
    assert Event.objects.filter(kind="impression").count() == 3
    assert post(client, report_of(tokens[:1], "click")).status_code == 204
    assert Event.objects.count() == 4  # a click of a card is another kind: it counts


def test_forged_and_expired_tokens_are_dropped_silently(client, men, events_on, rf, monkeypatch):
    good = tokens_of(page_request(rf), men[0], limit=2)
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: time.time() - 3 * 86400))
    expired = tokens_of(page_request(rf), men[0], limit=2)
    monkeypatch.undo()
    forged = [good[0][:-3] + "abc", signing.TimestampSigner(salt="x").sign_object({"c": 1})]
    response = post(client, report_of([*forged, *expired, good[1]]))
    assert response.status_code == 204 and response.content == b""
    assert list(Event.objects.values_list("position", flat=True)) == [2]


def test_a_bot_reporting_events_is_dropped(client, men, events_on, rf):
    tokens = tokens_of(page_request(rf), men[0])
    assert post(client, report_of(tokens), HTTP_USER_AGENT=GOOGLEBOT).status_code == 204
    assert post(client, report_of(tokens), HTTP_USER_AGENT="").status_code == 204
    assert not Event.objects.exists()


def test_with_events_off_nothing_is_stored(client, men, events_on, rf, settings):
    tokens = tokens_of(page_request(rf), men[0])
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS": False}
    assert post(client, report_of(tokens)).status_code == 204
    assert not Event.objects.exists()


def test_at_most_50_events_are_read_from_one_request(client, men, events_on, rf):
    tokens = [token for _ in range(11) for token in tokens_of(page_request(rf), men[0])]  # 55 distinct cards
    assert post(client, report_of(tokens)).status_code == 204
    assert Event.objects.count() == events.MAX_EVENTS_PER_REQUEST


def test_a_flood_past_the_rate_is_dropped_per_address_and_ipv6_network(client, men, events_on, rf, settings, flood_cache, monkeypatch):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS_RATE": 7}
    minute = time.time() // 60 * 60 + 1
    monkeypatch.setattr(events, "time", SimpleNamespace(time=lambda: minute))  # the whole test within one minute
    for _ in range(3):  # 15 events from one address, 7 a minute allowed
        post(client, report_of(tokens_of(page_request(rf), men[0])), REMOTE_ADDR="203.0.113.5")
    assert Event.objects.count() == 7
    post(client, report_of(tokens_of(page_request(rf), men[0], limit=3)), REMOTE_ADDR="203.0.113.6")
    assert Event.objects.count() == 10  # another address has its own count
    # One customer's IPv6 network (a /64) is one client, whatever address it takes within it.
    for host in range(1, 4):
        post(client, report_of(tokens_of(page_request(rf), men[0], limit=3)), REMOTE_ADDR=f"2001:db8:1:2::{host}")
    assert Event.objects.count() == 17
    post(client, report_of(tokens_of(page_request(rf), men[0], limit=3)), REMOTE_ADDR="2001:db8:1:3::1")
    assert Event.objects.count() == 20
    # A forwarded header does not make a new client (no NUM_PROXIES declared).
    post(client, report_of(tokens_of(page_request(rf), men[0], limit=3)), REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert Event.objects.count() == 20
    # Plain counters in Redis, one per client and minute.
    keys = redis.Redis.from_url(settings.CELERY_BROKER_URL).keys("*visual_recs:events:*")
    clients = {key.decode().split("visual_recs:events:")[1].rsplit(":", 1)[0] for key in keys}
    assert clients == {"203.0.113.5", "203.0.113.6", "2001:db8:1:2::/64", "2001:db8:1:3::/64"}
    assert caches["default"].get(f"visual_recs:events:203.0.113.5:{int(minute // 60)}") == 3 * 5 + 3  # refused ones count too


def test_client_groups():
    from visual_recs.utils import UNREADABLE_ADDRESS, client_group

    assert client_group("203.0.113.5") == "203.0.113.5"
    assert client_group("2001:db8:1:2:aaaa::1") == client_group("2001:db8:1:2::ffff") == "2001:db8:1:2::/64"
    assert client_group("::ffff:203.0.113.5") == "203.0.113.5"
    # Text that is no address is one client, whatever the text: varying it makes no new client.
    assert client_group("not an address") == client_group("") == client_group("203.0.113.5:4711") == UNREADABLE_ADDRESS


def test_a_body_over_16_kb_is_refused_before_it_is_read(client, events_on, monkeypatch):
    read = []
    real_parse = events.parse_body
    monkeypatch.setattr(events, "parse_body", lambda body: read.append(1) or real_parse(body))
    response = post(client, {"events": [{"token": "x" * 17_000, "kind": "click"}]})
    assert response.status_code == 413
    assert response.json() == {"detail": "The body may be at most 16384 bytes."}
    assert read == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b"[]", b'"events"', b'{"events": 1}', b'{"events": {"token": "x"}}', b"\xff\xfe\x00",
     b"[" * 8_000 + b"]" * 8_000, b'{"events": [' + b"[" * 5_000 + b"]" * 5_000 + b"]}"],
    ids=["text", "empty", "list", "string", "number", "object", "not-utf8", "deep", "deep-inside"],
)
def test_a_malformed_body_is_a_400_that_says_why(client, events_on, body):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body must be")


@pytest.mark.parametrize(
    "items",
    [[1, "x", None, [], {}], [{"token": 5, "kind": "click"}, {"token": None, "kind": "impression"}],
     [{"token": "a:b:c", "kind": "click"}, {"token": "x" * 5000, "kind": "impression"}],
     [{"token": "eyJjIjoxfQ:1abc:sig", "kind": "view"}, {"kind": "click"}, {"token": "a:b"}],
     [{"token": {"nested": True}, "kind": ["click"]}]],
)
def test_junk_events_are_dropped_never_a_500(client, men, events_on, items):
    assert post(client, {"events": items}).status_code == 204
    assert not Event.objects.exists()


def test_junk_headers_and_methods(client, events_on):
    assert client.get(ENDPOINT).status_code == 405
    response = client.post(ENDPOINT, data=b"{}", content_type="text/plain", CONTENT_LENGTH="lots", HTTP_USER_AGENT=CHROME)
    assert response.status_code == 400


def test_a_token_for_a_deleted_content_type_is_dropped(client, men, events_on, rf):
    token = signing.TimestampSigner(salt=events.SALT).sign_object({"c": 987654, "s": "1", "t": "2", "p": 1, "n": "n1"})
    assert post(client, report_of([token])).status_code == 204
    assert not Event.objects.exists()


# --- retention ---


def make_events(count: int, *, age: timedelta = timedelta(0), **fields) -> None:
    now = timezone.now()
    content_type = ContentType.objects.get_for_model(Product)
    Event.objects.bulk_create(
        Event(
            kind=fields.get("kind", "impression"),
            content_type=content_type,
            source_id="1",
            target_id=fields.get("target_id", "2"),
            position=fields.get("position", 1),
            partition=fields.get("partition", "Men"),
            origin=fields.get("origin", "visual"),
            rule_id=fields.get("rule_id"),
            experiment=fields.get("experiment", ""),
            arm=fields.get("arm", ""),
            nonce=f"{time.monotonic_ns()}-{n}",
            created_at=now - age,
        )
        for n in range(count)
    )


def test_old_events_are_deleted_in_bounded_batches(settings, monkeypatch):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENT_RETENTION_DAYS": 30}
    make_events(10, age=timedelta(days=31))
    make_events(4, age=timedelta(days=29))
    monkeypatch.setattr(events, "PRUNE_BATCH", 3)
    monkeypatch.setattr(events, "PRUNE_BATCHES_PER_RUN", 2)
    assert events.prune() == 6  # two statements of three: the rest waits for the next run
    assert events.prune() == 4
    assert events.prune() == 0
    assert Event.objects.count() == 4


def test_the_sweep_prunes_events(fake_extractor, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENT_RETENTION_DAYS": 7}
    make_events(3, age=timedelta(days=8))
    make_events(2, age=timedelta(days=6))
    assert "3 old events deleted" in tasks.sweep()
    assert Event.objects.count() == 2


# --- the A/B split ---


def test_the_split_is_deterministic_and_even():
    arms = ["a", "b"]
    assignments = [experiments.bucket("rules-vs-plain", f"visitor-{n}", arms) for n in range(10_000)]
    assert assignments == [experiments.bucket("rules-vs-plain", f"visitor-{n}", arms) for n in range(10_000)]
    # Binomial(10,000, 0.5): sd 50; 250 is five of them.
    assert abs(assignments.count("a") - 5_000) < 250
    three = [experiments.bucket("x", f"visitor-{n}", ["a", "b", "c"]) for n in range(9_000)]
    assert all(abs(three.count(arm) - 3_000) < 225 for arm in "abc")  # sd 44.7
    # Another experiment splits the same visitors anew.
    renamed = [experiments.bucket("another", f"visitor-{n}", arms) for n in range(10_000)]
    assert 4_750 < sum(a == b for a, b in zip(assignments, renamed)) < 5_250


def test_the_middleware_sets_an_anonymous_cookie_and_the_arm_follows_it(rf, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": EXPERIMENT}
    seen = []
    middleware = VisitorMiddleware(lambda request: seen.append(experiments.arm_for(request)) or HttpResponse())
    response = middleware(page_request(rf))
    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == 365 * 24 * 3600
    assert len(cookie.value) >= 16 and "Cookie" in response["Vary"]
    first = seen[0]
    assert first is not None and first.experiment == "rules-vs-plain" and first.name in ("a", "b")
    again = rf.get("/", HTTP_USER_AGENT=CHROME)
    again.COOKIES[COOKIE_NAME] = cookie.value
    response = middleware(again)
    assert COOKIE_NAME not in response.cookies  # kept, not renewed
    assert seen[1] == first == experiments.Arm("rules-vs-plain", experiments.bucket("rules-vs-plain", cookie.value, ["a", "b"]))
    junk = rf.get("/")
    junk.COOKIES[COOKIE_NAME] = "<script>"
    assert middleware(junk).cookies[COOKIE_NAME].value != "<script>"


def test_without_an_experiment_the_middleware_sets_no_cookie(rf):
    response = VisitorMiddleware(lambda request: HttpResponse())(page_request(rf))
    assert COOKIE_NAME not in response.cookies


def test_the_session_key_is_the_visitor_without_the_middleware_and_with_neither_there_is_no_arm(rf, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": EXPERIMENT}
    session = SessionStore()
    session.create()
    arm = experiments.arm_for(page_request(rf, session=session))
    assert arm.name == experiments.bucket("rules-vs-plain", session.session_key, ["a", "b"])
    assert experiments.arm_for(page_request(rf, session=SessionStore())) is None  # no key: none is made
    assert experiments.arm_for(page_request(rf)) is None
    assert experiments.arm_for(None) is None


@pytest.fixture
def recorded_options(monkeypatch):
    """The options each call of ``indexing.recommendations`` got; ``marker`` is taken off, the rest passed on.

    Correct before and after the read path learns its own options: only the marker is made up.
    """
    calls = []
    real = indexing.recommendations

    def recording(obj, limit=5, *, marker=None, **options):
        calls.append(marker)
        return real(obj, limit, **options)

    monkeypatch.setattr(indexing, "recommendations", recording)
    return calls


def test_the_visitors_arm_options_reach_the_recommender_and_its_events(men, events_on, rf, settings, recorded_options):
    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXPERIMENT": {"name": "markers", "arms": {"a": {"marker": "A"}, "b": {"marker": "B"}}},
    }
    visitors = {arm: next(f"v{n}" for n in range(100) if experiments.bucket("markers", f"v{n}", ["a", "b"]) == arm) for arm in "ab"}
    for arm, visitor in visitors.items():
        request = page_request(rf, visual_recs_visitor=visitor)
        html = render_strip(request, men[0])
        assert recorded_options[-1] == arm.upper()
        token = html.split('data-visual-recs-event="')[1].split('"')[0]
        assert (events.read_token(token, "click").experiment, events.read_token(token, "click").arm) == ("markers", arm)
    # No visitor id: the first arm's options, and events with no arm (they stay out of the A/B report).
    html = render_strip(page_request(rf), men[0])
    assert recorded_options[-1] == "A"
    token = html.split('data-visual-recs-event="')[1].split('"')[0]
    assert events.read_token(token, "click").arm == ""


def test_the_api_uses_the_arm_too(client, men, events_on, settings, recorded_options):
    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXPERIMENT": {"name": "markers", "arms": {"a": {"marker": "A"}, "b": {"marker": "B"}}},
    }
    session = client.session
    session["x"] = 1
    session.save()  # the test client's session: its key is the visitor id
    arm = experiments.bucket("markers", client.session.session_key, ["a", "b"])
    results = client.get(f"/api/visual-recs/products/{men[0].pk}/similar/", HTTP_USER_AGENT=CHROME).json()["results"]
    assert recorded_options[-1] == arm.upper()
    assert {events.read_token(item["event_token"], "impression").arm for item in results} == {arm}


@pytest.mark.parametrize(
    "config, problem",
    [
        ("rules-vs-plain", "must be a dict"),
        ({"arms": {"a": {}, "b": {}}}, "'name' must be"),
        ({"name": "x", "arms": {"a": {}}}, "two or more arms"),
        ({"name": "x", "arms": [{}, {}]}, "two or more arms"),
        ({"name": "x", "arms": {"a": {}, "b": None}}, "arm 'b': its options must be a dict"),
        ({"name": "x", "arms": {"a": {}, "b": {"no_such_option": 1}}}, "does not take these options"),
        ({"name": "x", "arms": {"a": {}, "": {}}}, "an arm's name"),
        ({"name": "x", "arms": {"a": {}, "b": {"source": "shp"}}}, "'source' is one of"),
    ],
)
def test_a_malformed_experiment_is_the_check_error_e018_and_is_ignored(settings, rf, config, problem):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": config}
    errors = [message for message in checks.run_checks() if message.id == "visual_recs.E018"]
    assert len(errors) == 1 and problem in errors[0].msg
    assert experiments.configured() is None
    assert experiments.arm_for(page_request(rf, visual_recs_visitor="v1")) is None


def test_a_well_formed_experiment_passes_the_check(settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": EXPERIMENT}
    assert not [message for message in checks.run_checks() if message.id == "visual_recs.E018"]


# --- the strip and the API ---


def render_strip(request, product, source: str = "{% similar_items product limit=4 %}") -> str:
    context = {"product": product} if request is None else {"product": product, "request": request}
    return Template("{% load visual_recs %}" + source).render(Context(context))


def test_the_strip_gives_each_card_a_token_and_loads_the_script_once(men, events_on, rf):
    html = render_strip(page_request(rf), men[0])
    assert html.count("data-visual-recs-event=") == 4
    assert html.count('<script src="/static/visual_recs/events.js" data-endpoint="/visual-recs/events/" defer>') == 1
    tokens = [part.split('"')[0] for part in html.split('data-visual-recs-event="')[1:]]
    assert [events.read_token(token, "impression").position for token in tokens] == [1, 2, 3, 4]


def test_the_as_form_gives_the_tokens_to_custom_markup(men, events_on, rf):
    source = "{% similar_items product limit=2 as items %}{% for i in items %}[{{ i.event_token }}]{% endfor %}"
    html = render_strip(page_request(rf), men[0], source)
    assert html.count("[ey") == 2


@pytest.mark.parametrize("case", ["events off", "bot", "no request"])
def test_no_tokens_without_events_for_bots_or_without_a_request(men, events_on, rf, settings, case):
    request = page_request(rf, GOOGLEBOT if case == "bot" else CHROME)
    if case == "events off":
        settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS": False}
    html = render_strip(None if case == "no request" else request, men[0])
    assert html.count("<li") == 4  # the strip itself is shown all the same
    assert "data-visual-recs-event" not in html and "events.js" not in html


def test_without_the_urls_included_no_tokens_and_one_warning(men, events_on, rf, settings, caplog, monkeypatch):
    settings.ROOT_URLCONF = "tests.urls_without_events"
    monkeypatch.setattr(events, "_missing_url_logged", False)
    with caplog.at_level(logging.WARNING, logger="visual_recs"):
        first = render_strip(page_request(rf), men[0])
        second = render_strip(page_request(rf), men[0])
    assert first.count("<li") == second.count("<li") == 4
    assert "data-visual-recs-event" not in first + second
    warnings = [record for record in caplog.records if "visual_recs.urls" in record.getMessage()]
    assert len(warnings) == 1


def test_the_api_adds_a_token_to_each_item_when_events_are_on(client, men, settings):
    url = f"/api/visual-recs/products/{men[0].pk}/similar/?limit=3"
    assert all("event_token" not in item for item in client.get(url, HTTP_USER_AGENT=CHROME).json()["results"])
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS": True}
    results = client.get(url, HTTP_USER_AGENT=CHROME).json()["results"]
    assert [events.read_token(item["event_token"], "click").target_id for item in results] == [str(item["id"]) for item in results]
    assert post(client, report_of([item["event_token"] for item in results], "click")).status_code == 204
    assert sorted(Event.objects.values_list("position", flat=True)) == [1, 2, 3]


# --- statistics ---


def test_the_wilson_interval_against_hand_computed_values():
    interval = stats.wilson_interval(10, 100)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0552, 0.1744)
    # 0 of 10: p = 0, centre = z²/2n / (1 + z²/n) = 0.1611, half the same: (0, 0.2775).
    zero = stats.wilson_interval(0, 10)
    assert (round(zero.low, 4), round(zero.high, 4)) == (0.0, 0.2775)
    assert stats.wilson_interval(5, 0) is None
    assert stats.wilson_interval(12, 10) == stats.wilson_interval(10, 10)  # clicks without impressions are capped


def test_the_difference_of_two_rates_against_hand_computed_values():
    # 10/100 and 20/100: d = 0.1, se = sqrt(0.09/100 + 0.16/100) = 0.05, d ± 1.96 se = (0.002, 0.198).
    difference, interval = stats.difference_interval(10, 100, 20, 100)
    assert difference == pytest.approx(0.1)
    assert (round(interval.low, 3), round(interval.high, 3)) == (0.002, 0.198)
    assert stats.difference_interval(1, 0, 1, 10) is None


def test_the_verdicts():
    _, clear = stats.difference_interval(10, 100, 20, 100)
    _, unclear = stats.difference_interval(10, 100, 12, 100)
    _, worse = stats.difference_interval(200, 1000, 100, 1000)
    assert stats.verdict("a", 99, "b", 100, clear) == "not enough data yet"
    assert stats.verdict("a", 100, "b", 100, unclear) == "no clear difference"
    assert stats.verdict("a", 100, "b", 100, clear) == "b is better"
    assert stats.verdict("a", 1000, "b", 1000, worse) == "a is better"


# --- the report ---


@pytest.fixture
def seeded(settings):
    """Events of known counts: positions 1-3, two partitions, a pin, a deleted rule, two arms, and old ones."""
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": EXPERIMENT}
    content_type = ContentType.objects.get_for_model(Product)
    rule = Rule.objects.create(content_type=content_type, kind="pin", source_id="1", target_id="9", position=1)
    make_events(100, position=1, arm="a", experiment="rules-vs-plain")
    make_events(10, position=1, arm="a", experiment="rules-vs-plain", kind="click")
    make_events(100, position=2, arm="b", experiment="rules-vs-plain", partition="Women")
    make_events(20, position=2, arm="b", experiment="rules-vs-plain", partition="Women", kind="click")
    make_events(40, position=3, origin="pinned", rule_id=rule.pk)
    make_events(2, position=3, origin="pinned", rule_id=rule.pk, kind="click")
    make_events(10, position=3, rule_id=99)  # a rule deleted since
    make_events(500, position=4, age=timedelta(days=20), arm="a", experiment="rules-vs-plain")  # only in 30 and 90 days
    make_events(50, position=5, age=timedelta(days=100))  # in no period
    return rule


def test_the_report_counts_in_the_database(seeded, django_assert_num_queries):
    with django_assert_num_queries(7):  # total, positions, partitions, origins, rules (+ their names), arms
        report = reports.build(7)
    assert report.total == reports.Row("All cards", 250, 32)
    assert [(row.label, row.impressions, row.clicks) for row in report.positions] == [("1", 100, 10), ("2", 100, 20), ("3", 50, 2)]
    assert [(row.label, row.impressions) for row in report.partitions] == [("Men", 150), ("Women", 100)]
    assert [(row.label, row.impressions, row.clicks) for row in report.origins] == [
        ("pinned by a rule", 40, 2),
        ("visual neighbour", 210, 30),
    ]
    assert [(row.label, row.impressions) for row in report.rules] == [(str(seeded), 40), ("deleted rule #99", 10)]
    (experiment,) = report.experiments
    assert [(arm.label, arm.impressions, arm.clicks) for arm in experiment.arms] == [("a", 100, 10), ("b", 100, 20)]
    assert (round(experiment.arms[0].interval.low, 4), round(experiment.arms[0].interval.high, 4)) == (0.0552, 0.1744)
    (comparison,) = experiment.comparisons
    assert (comparison.baseline, comparison.arm, comparison.verdict) == ("a", "b", "b is better")
    assert (round(comparison.interval.low, 3), round(comparison.interval.high, 3)) == (0.002, 0.198)
    assert [row.impressions for row in reports.build(30).positions] == [100, 100, 50, 500]
    assert reports.build(90).total.impressions == 750


def test_the_chart_has_a_bar_per_position_proportional_to_its_rate(seeded):
    bars = reports.build(7).chart.bars
    assert [bar.label for bar in bars] == ["1", "2", "3"]
    assert bars[1].height == reports.PLOT_HEIGHT  # 20%: the highest fills the plot
    assert bars[0].height == pytest.approx(reports.PLOT_HEIGHT / 2)  # 10%
    assert bars[2].height == pytest.approx(reports.PLOT_HEIGHT / 5)  # 4%
    assert {bar.y + bar.height for bar in bars} == {reports.TOP_MARGIN + reports.PLOT_HEIGHT}  # one baseline
    assert bars[0].title == "Position 1: 10.0% click-through (10 clicks of 100 impressions)"
    assert reports.chart([]).bars == [] and reports.chart([reports.Row("1", 5, 0)]).bars[0].height == 0


def test_the_report_page_shows_the_chart_and_the_tables(admin_client, seeded):
    changelist = admin_client.get(reverse("admin:visual_recs_event_changelist")).content.decode()
    report_url = reverse("admin:visual_recs_event_report")
    assert f'href="{report_url}"' in changelist and "Recommendation performance" in changelist
    html = admin_client.get(report_url, {"days": 7}).content.decode()
    assert html.count('<rect class="bar"') == 3
    assert html.count("<title>Position ") == 3
    assert "<title>Position 2: 20.0% click-through (20 clicks of 100 impressions)</title>" in html
    assert 'role="img"' in html and "<script" not in html.split("<svg")[1].split("</svg>")[0]
    assert "5.5% … 17.4%" in html  # arm a's Wilson interval
    assert "+10.0%" in html and "+0.2% … +19.8%" in html and "b is better" in html
    assert "deleted rule #99" in html and "(no partition)" not in html
    assert admin_client.get(report_url, {"days": 30}).content.decode().count('<rect class="bar"') == 4
    assert admin_client.get(report_url, {"days": "junk"}).status_code == 200  # the default period


def test_the_report_needs_the_view_event_permission(client, seeded):
    staff = User.objects.create_user("merchandiser", password="pw", is_staff=True)
    client.force_login(staff)
    report_url = reverse("admin:visual_recs_event_report")
    assert client.get(report_url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_event", content_type__app_label="visual_recs"))
    assert client.get(report_url).status_code == 200
    assert client.get(reverse("admin:visual_recs_event_add")).status_code == 403  # read-only
    client.logout()
    assert client.get(report_url).status_code == 302  # to the admin's login


def test_with_no_events_the_report_says_so(admin_client):
    html = admin_client.get(reverse("admin:visual_recs_event_report")).content.decode()
    assert "No impressions in this period." in html and 'class="visual-recs-chart"' not in html
    assert "No visitor was in an experiment" in html

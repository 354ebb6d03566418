"""Impressions and clicks of the strip: signed tokens out, batched reports in, old rows swept.

A page with ``EVENTS`` on gives each card a token signed with ``django.core.signing`` (a salt
of its own) that carries what the server rendered: the product, the item, its position,
partition, origin, rule, experiment and arm, a random nonce, and (the signer's timestamp)
when it was issued. The browser sends a token back with only the kind of event, so nothing a
client says but "impression" or "click" is believed: a forged or altered token fails the
signature, an old one fails ``EVENT_TOKEN_MAX_AGE``, and a replayed one meets the unique
(kind, nonce) constraint. Every such report is dropped without a word (the endpoint answers
204 either way), so a client learns nothing from probing.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.core.cache import cache
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import registry
from .conf import app_settings
from .experiments import Arm
from .indexing import Recommendations
from .models import Event

logger = logging.getLogger(__name__)

SALT = "visual_recs.events"
URL_NAME = "visual_recs:events"
#: Largest request body read, by its declared length (50 tokens of ~250 characters fit).
MAX_BODY_BYTES = 16 * 1024
#: Events read from one request; the rest are dropped.
MAX_EVENTS_PER_REQUEST = 50
#: Longer strings are not tokens of ours: dropped before any signature is computed.
MAX_TOKEN_LENGTH = 1024
KINDS = frozenset(Event.Kind.values)

#: User agents that are not shoppers: search engines, link previews, monitors, HTTP libraries.
#: "bot" is matched anywhere but in "cubot" (a phone brand). Headless browsers are NOT
#: matched: "HeadlessChrome" is what Chromium sends when driven by Selenium or Puppeteer, as
#: in this project's own browser tests, and a shop's scripted checkout tests would be dropped too.
#: An empty user agent is a bot: every browser sends one.
BOT_PATTERN = re.compile(
    r"(?<!cu)bot|crawl|spider|slurp|scrap|preview|facebookexternalhit|embedly|lighthouse|pingdom|uptime"
    r"|python-|curl/|wget/|go-http-client|java/|okhttp|libwww|httpclient|axios/|node-fetch",
    re.IGNORECASE,
)

# Token keys: short, as a page carries one token per card.
_ORIGIN_CODES = {origin: origin[0] for origin in Event.Origin.values}  # visual: v, pinned: p, fallback: f, shop: s
_ORIGINS = {code: origin for origin, code in _ORIGIN_CODES.items()}
_missing_url_logged = False


class BadRequest(ValueError):
    """A body that is not ``{"events": [...]}`` in JSON; the message is for the sender."""


def is_bot(request: HttpRequest) -> bool:
    """Whether the request's user agent is a bot's (``BOT_PATTERN``), or missing."""
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    return not user_agent or BOT_PATTERN.search(user_agent) is not None


def endpoint_url() -> str | None:
    """The events endpoint's URL; None (logged once a process) when the shop did not include ``visual_recs.urls``."""
    global _missing_url_logged
    try:
        return reverse(URL_NAME)
    except NoReverseMatch:
        if not _missing_url_logged:
            _missing_url_logged = True
            logger.warning(
                "visual_recs: EVENTS is on but the URL %r does not exist, so no events are recorded: add "
                'path("visual-recs/", include("visual_recs.urls")) to your URLs (docs/measurement.md).',
                URL_NAME,
            )
        return None


# --- out: a token per card ---


def tokens_for(
    request: HttpRequest | None, product: models.Model, found: Recommendations, arm: Arm | None
) -> list[str] | None:
    """A signed token for each of ``found.items``, in order; None when no events are to be sent.

    None when ``EVENTS`` is off, there is no request (a template rendered outside one), the
    visitor is a bot, or the endpoint's URL is not included. About 0.1 ms for a strip of 5 to
    10 cards (docs/measurement.md).
    """
    if not found.items or not app_settings.EVENTS or request is None or is_bot(request) or endpoint_url() is None:
        return None
    common: dict[str, Any] = {"c": registry.for_model(product).content_type.pk, "s": str(product.pk)}
    if found.partition:
        common["g"] = found.partition
    if arm is not None:
        common["x"], common["a"] = arm.experiment, arm.name
    signer = signing.TimestampSigner(salt=SALT)
    tokens = []
    for position, item in enumerate(found.items, 1):
        fields = {**common, "t": str(item.object.pk), "p": position, "n": secrets.token_urlsafe(12)}
        if item.origin != Event.Origin.VISUAL:
            fields["o"] = _ORIGIN_CODES.get(item.origin, item.origin)
        if item.rule_id is not None:
            fields["r"] = item.rule_id
        tokens.append(signer.sign_object(fields))
    return tokens


def read_token(token: str, kind: str) -> Event | None:
    """The unsaved event a token reports as ``kind``; None when it is forged, altered, expired or not ours."""
    try:
        fields = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=app_settings.EVENT_TOKEN_MAX_AGE)
        rule_id = fields.get("r")
        event = Event(
            kind=kind,
            content_type=ContentType.objects.get_for_id(int(fields["c"])),
            source_id=str(fields["s"]),
            target_id=str(fields["t"]),
            position=int(fields["p"]),
            partition=str(fields.get("g", "")),
            # An origin this version does not know (a newer read path's) is kept as it came.
            origin=_ORIGINS.get(fields.get("o", "v"), str(fields.get("o"))[:10]),
            rule_id=None if rule_id is None else int(rule_id),
            experiment=str(fields.get("x", "")),
            arm=str(fields.get("a", "")),
            nonce=str(fields["n"]),
        )
    # A bad signature, an expired token, and (signed by another version of the app) missing
    # keys, wrong types or a content type deleted since.
    except (signing.BadSignature, ValueError, KeyError, TypeError, AttributeError, ContentType.DoesNotExist):
        return None
    return event


# --- in: the endpoint's work ---


def parse_body(body: bytes) -> list:
    """The ``events`` list of a request body ``{"events": [{"token": ..., "kind": ...}, ...]}``.

    Raises ``BadRequest`` for anything else. sendBeacon sends it as text/plain, so the
    declared content type is not looked at.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]] 10,000 deep
        raise BadRequest(_('The body must be JSON: {"events": [{"token": "...", "kind": "impression"}]}.')) from exc
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise BadRequest(_('The body must be an object with a list "events": {"events": [{"token": "...", "kind": "click"}]}.'))
    return data["events"]


def within_rate(client: str, count: int) -> int:
    """How many of ``count`` events from ``client`` (``utils.client_id``) fit in ``EVENTS_RATE`` this minute.

    The rest are dropped. A plain integer counter per client and minute, made with ``add`` and moved with ``incr``
    (atomic in Redis and Memcached): nothing pickled is read back from the cache.
    """
    if count <= 0:
        return 0
    key = f"visual_recs:events:{client}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=120)
    try:
        total = cache.incr(key, count)
    except ValueError:  # expired between add and incr
        cache.add(key, count, timeout=120)
        total = count
    already = total - count
    return max(0, min(count, app_settings.EVENTS_RATE - already))


def events_from(items: Iterable[Any]) -> list[Event]:
    """The valid reports of ``items`` as unsaved events, each (kind, nonce) once; the rest dropped."""
    found: dict[tuple[str, str], Event] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        kind, token = item.get("kind"), item.get("token")
        if not isinstance(kind, str) or kind not in KINDS or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            continue
        event = read_token(token, kind)
        if event is not None:
            found.setdefault((kind, event.nonce), event)
    return list(found.values())


def record(items: Iterable[Any]) -> int:
    """Store the valid reports of ``items`` in one batched write; returns how many were valid.

    A report already stored (same kind and nonce) is dropped by the database.
    """
    events = events_from(items)
    if events:
        Event.objects.bulk_create(events, ignore_conflicts=True)
    return len(events)


# --- retention ---

#: Rows deleted per statement, and statements per sweep: a long backlog is worked off over several sweeps.
PRUNE_BATCH = 5000
PRUNE_BATCHES_PER_RUN = 20


def prune(now=None) -> int:
    """Delete events older than ``EVENT_RETENTION_DAYS``, at most ``PRUNE_BATCH`` rows a statement
    and ``PRUNE_BATCHES_PER_RUN`` statements; returns how many were deleted.

    Small statements keep each transaction (and SQLite's write lock) short, so page views and
    the endpoint are never held up by the sweep.
    """
    cutoff = (now or timezone.now()) - timedelta(days=app_settings.EVENT_RETENTION_DAYS)
    deleted = 0
    for _ in range(PRUNE_BATCHES_PER_RUN):
        ids = list(Event.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:PRUNE_BATCH])
        if not ids:
            break
        deleted += Event.objects.filter(id__in=ids).delete()[0]
        if len(ids) < PRUNE_BATCH:
            break
    return deleted

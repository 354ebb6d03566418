"""The events endpoint: a plain Django view (no DRF), so a shop without the API extra records events too."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import events
from .conf import app_settings
from .utils import client_id

logger = logging.getLogger(__name__)


def _detail(message: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


# CSRF-exempt: sendBeacon cannot carry a CSRF token, and nothing here acts for the visitor.
# What is stored comes only from tokens the server signed for the cards it rendered (a forged
# or altered one fails the signature); a page elsewhere that makes a browser post them can
# report no more than the browser's own tokens would.
@csrf_exempt
@require_POST
def record_events(request: HttpRequest) -> HttpResponse:
    """``POST {"events": [{"token": "...", "kind": "impression" | "click"}, ...]}``: 204, whatever was kept.

    413 for a body declared over 16 KB (refused before it is read), 400 for one that is not
    that JSON; invalid, expired or replayed tokens, bots, events past the 50th and past the
    client's ``EVENTS_RATE`` are dropped without a word.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _detail(_("Content-Length is not a number."), 400)
    if declared > events.MAX_BODY_BYTES:
        return _detail(_("The body may be at most %(bytes)d bytes.") % {"bytes": events.MAX_BODY_BYTES}, 413)
    if not app_settings.EVENTS or events.is_bot(request):
        return HttpResponse(status=204)
    try:
        items = events.parse_body(request.body)[: events.MAX_EVENTS_PER_REQUEST]
    except events.BadRequest as exc:
        return _detail(str(exc), 400)
    # REMOTE_ADDR, or behind NUM_PROXIES proxies the address they saw (docs/deploy.md); an IPv6 /64 is one client.
    allowed = events.within_rate(client_id(request), len(items))
    try:
        events.record(items[:allowed])
    except DatabaseError:
        # The page never waits on this, and the browser does not retry: say so in the log, not with a 500.
        logger.exception("visual_recs: events could not be stored")
        return _detail(_("Events cannot be stored now."), 503)
    return HttpResponse(status=204)

/* visual_recs: impressions and clicks of the similar-items strip (docs/measurement.md).
 *
 * Each card carries a token the server signed (data-visual-recs-event); this script only says
 * which tokens were seen or clicked. Cards half in view are impressions: an IntersectionObserver
 * hands over every card that came into view in the same frame, sent as one request (so a strip
 * shown at once is one request); without the observer every card counts as seen on load. A
 * click goes by navigator.sendBeacon, which outlives the page and never holds up the link.
 * No dependencies, no cookies read, nothing sent but the tokens.
 */
(function () {
  "use strict";
  // Every strip of a page includes the script: it runs once and finds all their cards.
  if (window.visualRecsEvents) return;
  window.visualRecsEvents = true;

  var script = document.currentScript;
  var endpoint = script && script.getAttribute("data-endpoint");
  var ATTRIBUTE = "data-visual-recs-event";
  var MAX_PER_REQUEST = 50; // what the endpoint reads from one request
  var cards = Array.prototype.slice.call(document.querySelectorAll("[" + ATTRIBUTE + "]"));
  if (!endpoint || !cards.length) return;

  function send(events) {
    for (var start = 0; start < events.length; start += MAX_PER_REQUEST) {
      // A string goes as text/plain: no CORS preflight, which the endpoint accepts.
      var body = JSON.stringify({ events: events.slice(start, start + MAX_PER_REQUEST) });
      if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body)) continue;
      if (window.fetch) {
        fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "same-origin" }).catch(function () {});
      }
    }
  }

  function report(seen, kind) {
    send(seen.map(function (card) { return { token: card.getAttribute(ATTRIBUTE), kind: kind }; }));
  }

  cards.forEach(function (card) {
    var clicked = false;
    function onClick(event) {
      // A left click, or a middle click (a new tab); each card's click is reported once.
      if (clicked || (event.type === "auxclick" && event.button !== 1)) return;
      clicked = true;
      report([card], "click");
    }
    card.addEventListener("click", onClick);
    card.addEventListener("auxclick", onClick);
  });

  if (!("IntersectionObserver" in window)) {
    report(cards, "impression");
    return;
  }
  var observer = new IntersectionObserver(function (entries) {
    var seen = [];
    entries.forEach(function (entry) {
      // isIntersecting alone is true for a sliver: half the card must be in view.
      if (entry.isIntersecting && entry.intersectionRatio >= 0.5) {
        seen.push(entry.target);
        observer.unobserve(entry.target);
      }
    });
    if (seen.length) report(seen, "impression");
  }, { threshold: 0.5 });
  cards.forEach(function (card) { observer.observe(card); });
})();

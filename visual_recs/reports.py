"""The "Recommendation performance" report: click-through of the strip, counted in the database.

Each table is one grouped query over the period's events (``values(...).annotate(Count(...,
filter=Q(kind=...)))``), so the report costs a handful of queries whatever the traffic. The
statistics are ``visual_recs.stats``; the chart's geometry is computed here and drawn by the
template as an SVG (no script, nothing fetched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext

from . import experiments, stats
from .models import Event, Rule

#: The periods the report offers, in days, and the one it opens with.
PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


@dataclass(frozen=True)
class Row:
    """Impressions and clicks of one group of events (a position, a partition, an arm...)."""

    label: str
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float | None:
        return stats.rate(self.clicks, self.impressions)

    @property
    def ctr_display(self) -> str:
        return percent(self.ctr)


@dataclass(frozen=True)
class ArmRow(Row):
    """One arm of an experiment, with the 95% interval of its click-through."""

    interval: stats.Interval | None = None

    @property
    def interval_display(self) -> str:
        return interval_display(self.interval)


@dataclass(frozen=True)
class Comparison:
    """An arm against the experiment's first arm: the difference of their rates, its 95% interval, the verdict."""

    baseline: str
    arm: str
    difference: float | None
    interval: stats.Interval | None
    verdict: str

    @property
    def difference_display(self) -> str:
        return percent(self.difference, signed=True)

    @property
    def interval_display(self) -> str:
        return interval_display(self.interval, signed=True)


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    arms: list[ArmRow]
    comparisons: list[Comparison]


@dataclass(frozen=True)
class Bar:
    """One bar of the chart, in SVG user units: its box, where its texts go, and its accessible title."""

    label: str
    x: float
    y: float
    width: float
    height: float
    value_label: str
    title: str

    @property
    def centre(self) -> float:
        return self.x + self.width / 2

    @property
    def value_y(self) -> float:
        """The baseline of the value written over the bar."""
        return self.y - VALUE_OFFSET


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    axis_y: float  # the bars' common baseline
    bars: list[Bar] = field(default_factory=list)

    @property
    def label_y(self) -> float:
        """The baseline of the positions written under the bars."""
        return self.height - VALUE_OFFSET


@dataclass(frozen=True)
class Report:
    days: int
    since: datetime
    total: Row
    positions: list[Row]
    partitions: list[Row]
    origins: list[Row]
    rules: list[Row]
    experiments: list[ExperimentReport]
    chart: Chart


def percent(value: float | None, *, signed: bool = False) -> str:
    """``value`` (a proportion) in percent to one decimal; a dash for None."""
    if value is None:
        return "—"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def interval_display(interval: stats.Interval | None, *, signed: bool = False) -> str:
    if interval is None:
        return "—"
    return f"{percent(interval.low, signed=signed)} … {percent(interval.high, signed=signed)}"


def period(value: str | None) -> int:
    """The report's period in days from a query parameter: one of ``PERIODS``, else ``DEFAULT_PERIOD``."""
    try:
        days = int(value or DEFAULT_PERIOD)
    except ValueError:
        return DEFAULT_PERIOD
    return days if days in PERIODS else DEFAULT_PERIOD


def _counts() -> dict[str, Count]:
    return {
        "impressions": Count("id", filter=Q(kind=Event.Kind.IMPRESSION)),
        "clicks": Count("id", filter=Q(kind=Event.Kind.CLICK)),
    }


def counted(events: models.QuerySet, *fields: str) -> list[dict]:
    """Impressions and clicks of ``events`` grouped by ``fields``: one query, ordered by them."""
    return list(events.values(*fields).annotate(**_counts()).order_by(*fields))


def build(days: int, now: datetime | None = None) -> Report:
    """The report of the last ``days`` days."""
    since = (now or timezone.now()) - timedelta(days=days)
    events = Event.objects.filter(created_at__gte=since)
    total = events.aggregate(**_counts())
    positions = [Row(str(row["position"]), row["impressions"], row["clicks"]) for row in counted(events, "position")]
    return Report(
        days=days,
        since=since,
        total=Row(gettext("All cards"), total["impressions"], total["clicks"]),
        positions=positions,
        partitions=[
            Row(row["partition"] or gettext("(no partition)"), row["impressions"], row["clicks"])
            for row in counted(events, "partition")
        ],
        origins=_by_origin(events),
        rules=_by_rule(events),
        experiments=_by_experiment(events),
        chart=chart(positions),
    )


def _by_origin(events: models.QuerySet) -> list[Row]:
    labels = dict(Event.Origin.choices)
    return [
        Row(str(labels.get(row["origin"], row["origin"])), row["impressions"], row["clicks"])
        for row in counted(events, "origin")
    ]


def _by_rule(events: models.QuerySet) -> list[Row]:
    """Items a rule pinned or boosted, by rule: its description, or "deleted rule #id"."""
    rows = counted(events.filter(rule_id__isnull=False), "rule_id")
    rules = Rule.objects.in_bulk([row["rule_id"] for row in rows])
    return [
        Row(
            str(rules[row["rule_id"]]) if row["rule_id"] in rules else gettext("deleted rule #%(id)d") % {"id": row["rule_id"]},
            row["impressions"],
            row["clicks"],
        )
        for row in rows
    ]


def _by_experiment(events: models.QuerySet) -> list[ExperimentReport]:
    """Each experiment of the period, its arms in the setting's order (else by name), each compared with the first."""
    by_name: dict[str, list[ArmRow]] = {}
    for row in counted(events.exclude(arm=""), "experiment", "arm"):
        interval = stats.wilson_interval(row["clicks"], row["impressions"])
        by_name.setdefault(row["experiment"], []).append(ArmRow(row["arm"], row["impressions"], row["clicks"], interval))
    current = experiments.configured()
    reports = []
    for name, arms in by_name.items():
        if current is not None and current.name == name:
            order = list(current.arms)
            arms.sort(key=lambda arm: (order.index(arm.label) if arm.label in order else len(order), arm.label))
        reports.append(ExperimentReport(name, arms, [compare(arms[0], arm) for arm in arms[1:]]))
    return reports


def compare(baseline: Row, arm: Row) -> Comparison:
    """``arm`` against ``baseline``: the difference of their click-through (arm - baseline), its interval, the verdict."""
    found = stats.difference_interval(baseline.clicks, baseline.impressions, arm.clicks, arm.impressions)
    difference, interval = found if found is not None else (None, None)
    return Comparison(
        baseline=baseline.label,
        arm=arm.label,
        difference=difference,
        interval=interval,
        verdict=stats.verdict(baseline.label, baseline.impressions, arm.label, arm.impressions, interval),
    )


# The chart's geometry, in SVG user units (the SVG scales to its box).
PLOT_HEIGHT = 160
BAR_WIDTH = 40
BAR_GAP = 16
TOP_MARGIN = 20  # room for the value over the tallest bar
BOTTOM_MARGIN = 24  # room for the position under the bars
VALUE_OFFSET = 6


def chart(rows: list[Row]) -> Chart:
    """One bar per row, its height proportional to its click-through (the highest fills the plot)."""
    highest = max((row.ctr or 0.0 for row in rows), default=0.0)
    bars = []
    axis_y = TOP_MARGIN + PLOT_HEIGHT
    for index, row in enumerate(rows):
        height = PLOT_HEIGHT * (row.ctr or 0.0) / highest if highest > 0 else 0.0
        bars.append(
            Bar(
                label=row.label,
                x=BAR_GAP + index * (BAR_WIDTH + BAR_GAP),
                y=axis_y - height,
                width=BAR_WIDTH,
                height=height,
                value_label=row.ctr_display,
                title=gettext(
                    "Position %(position)s: %(ctr)s click-through (%(clicks)d clicks of %(impressions)d impressions)"
                )
                % {"position": row.label, "ctr": row.ctr_display, "clicks": row.clicks, "impressions": row.impressions},
            )
        )
    width = BAR_GAP + len(rows) * (BAR_WIDTH + BAR_GAP)
    return Chart(width=width, height=axis_y + BOTTOM_MARGIN, axis_y=axis_y, bars=bars)

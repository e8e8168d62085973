"""Line charts drawn on the server as inline SVG (no JavaScript, no charting library), and the
number formats of the monitoring page."""

import math
from dataclasses import dataclass

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from predictions.monitoring import Counts, VersionStats

register = template.Library()

WIDTH, HEIGHT = 480, 200
# The plot area inside the SVG; the margins hold the title, legend and axis labels.
LEFT, RIGHT, TOP, BOTTOM = 52, WIDTH - 12, 34, HEIGHT - 26
BLUE, PURPLE, AMBER, RED, GREEN = "#2563eb", "#9333ea", "#d97706", "#b42318", "#067647"


@dataclass
class Series:
    name: str
    values: list[float | None]  # one per x position; None leaves a gap
    color: str


@register.filter
def number(value: float | None) -> str:
    """12,345 / 123 / 12.3 / 0.0167; a dash for no value."""
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


@register.filter
def ms(value: float | None) -> str:
    """A latency: 0.25 ms / 12.3 ms / 450 ms / 1.5 s."""
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.3g} ms"


@register.filter
def percent(value: float | None) -> str:
    """A share from 0 to 1 as 0% / 0.15% / 33.3% / 100%."""
    if value is None:
        return "–"
    return f"{value * 100:.3g}%"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def line_chart(
    *,
    title: str,
    series: list[Series],
    x_labels: tuple[str, str],
    y_format=number,
    description: str = "",
) -> SafeString:
    """An SVG chart from y = 0 up to a round maximum: one line per series, labelled axes.

    Each run of known values is a polyline (a lone value, a dot); None values leave gaps.
    """
    count = max(len(s.values) for s in series)
    known = [v for s in series for v in s.values if v is not None]
    y_max = nice_ceiling(max(known, default=0))

    def x(i: int) -> float:
        return LEFT + (RIGHT - LEFT) * i / max(count - 1, 1)

    def y(value: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * value / y_max

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(description or title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(description or title)}</title>",
        _text(LEFT - 44, 16, title, weight="600", size=13),
        # Grid lines at the maximum and half of it, then the axes.
        f'<path d="M{LEFT} {TOP}H{RIGHT}M{LEFT} {y(y_max / 2):.1f}H{RIGHT}" stroke="#e4e7eb"/>',
        f'<path d="M{LEFT} {TOP - 4}V{BOTTOM}H{RIGHT}" stroke="#9aa5b1" fill="none"/>',
        _text(LEFT - 6, TOP + 4, y_format(y_max), anchor="end"),
        _text(LEFT - 6, y(y_max / 2) + 4, y_format(y_max / 2), anchor="end"),
        _text(LEFT - 6, BOTTOM + 4, y_format(0), anchor="end"),
        _text(LEFT, BOTTOM + 18, x_labels[0]),
        _text(RIGHT, BOTTOM + 18, x_labels[1], anchor="end"),
    ]
    if len(series) > 1:
        parts += _legend(series)
    if not known:
        parts.append(_text((LEFT + RIGHT) / 2, (TOP + BOTTOM) / 2, "no data", anchor="middle"))
    for line in series:
        for run in _runs(line.values):
            points = [(x(i), y(value)) for i, value in run]
            if len(points) == 1:  # a lone value between gaps: a dot, as a line needs two points
                px, py = points[0]
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{line.color}"/>')
            else:
                coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{line.color}" '
                    'stroke-width="1.75" stroke-linejoin="round"/>'
                )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text above went through escape()


def _text(x: float, y: float, content: str, *, anchor="start", weight="400", size=11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}" fill="#3e4c59">{escape(content)}</text>'
    )


def _legend(series: list[Series]) -> list[str]:
    """Series names with a colour swatch, right-aligned above the plot."""
    parts = []
    right = RIGHT
    for line in reversed(series):
        width = 14 + 7 * len(line.name)
        parts.append(_text(right, 16, line.name, anchor="end"))
        start = right - width
        parts.append(f'<path d="M{start} 12H{start + 10}" stroke="{line.color}" stroke-width="3"/>')
        right = start - 10
    return parts


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive known values, as (index, value) pairs."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        runs.append(current)
    return runs


# What each chart of a model version shows: title, number format, and per line its name,
# colour and the Counts attribute it plots.
METRICS = {
    "requests": ("Requests per minute", number, [("requests", BLUE, "requests_per_minute")]),
    "latency": ("Latency", ms, [("p50", BLUE, "p50_ms"), ("p99", PURPLE, "p99_ms")]),
    "errors": (
        "Error rate",
        percent,
        [("4xx", AMBER, "client_error_rate"), ("5xx", RED, "server_error_rate")],
    ),
    "rows": ("Rows scored per minute", number, [("rows", GREEN, "rows_scored_per_minute")]),
}


@register.simple_tag
def metric_chart(stats: VersionStats, metric: str) -> SafeString:
    """`{% metric_chart version "latency" %}`: one chart of a version's buckets."""
    title, y_format, lines = METRICS[metric]
    series = [
        Series(name, [getattr(bucket, attribute) for bucket in stats.buckets], color)
        for name, color, attribute in lines
    ]
    return line_chart(
        title=title,
        series=series,
        x_labels=_time_labels(stats.buckets[0], stats.buckets[-1]),
        y_format=y_format,
        description=f"{stats.label}: {title.lower()}",
    )


def _time_labels(first: Counts, last: Counts) -> tuple[str, str]:
    if first.start.date() == last.start.date():
        return first.start.strftime("%H:%M"), last.start.strftime("%H:%M UTC")
    return first.start.strftime("%b %d %H:%M"), last.start.strftime("%b %d %H:%M UTC")

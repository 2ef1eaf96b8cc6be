"""Bar charts as inline SVG, rendered on the server: no chart library, no script, no inline
style (the Content-Security-Policy allows neither); colours come from classes in app.css.

Labels and values are escaped (they can be customer names); each bar has a `<title>` so a
pointer shows the exact figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    #: the value as the page shows it (formatted for the locale)
    shown: str
    #: a CSS class for the bar (e.g. "neg" for what customers owe)
    tone: str = ""


def bar_chart(bars: Sequence[Bar], *, title: str, width: int = 640) -> Markup:
    """Horizontal bars, one per row, scaled to the largest absolute value (an empty Markup
    when there is nothing to draw)."""
    if not bars:
        return Markup("")
    label_width = 190
    value_width = 120
    row = 26
    top = 8
    height = top + row * len(bars) + 4
    span = width - label_width - value_width - 16
    largest = max((abs(b.value) for b in bars), default=Decimal(0)) or Decimal(1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, bar in enumerate(bars):
        y = top + i * row
        length = int(span * abs(bar.value) / largest) if bar.value else 0
        tone = f" {escape(bar.tone)}" if bar.tone else ""
        label = bar.label if len(bar.label) <= 28 else bar.label[:27] + "…"
        parts.append(
            f'<text class="chart-label" x="{label_width - 8}" y="{y + 17}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect class="chart-bar{tone}" x="{label_width}" y="{y + 4}" '
            f'width="{max(length, 1)}" height="{row - 8}" rx="2">'
            f"<title>{escape(bar.label)}: {escape(bar.shown)}</title></rect>"
        )
        parts.append(
            f'<text class="chart-value" x="{label_width + max(length, 1) + 6}" y="{y + 17}">'
            f"{escape(bar.shown)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))

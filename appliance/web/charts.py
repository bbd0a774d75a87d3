"""Bar charts drawn on the server as SVG: no chart library, no script (the CSP forbids inline JS)."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 180, 36, 20, 8


@dataclass
class Bucket:
    label: str  # shown under some bars and in the tooltip
    values: dict[str, int]  # series name → count


def bar_chart(buckets: list[Bucket], series: tuple[str, ...], title: str, label_every: int = 1) -> Markup:
    """Draw grouped bars (one per series) for each bucket, with a y axis scaled to the largest value."""
    peak = max([b.values.get(s, 0) for b in buckets for s in series] + [1])
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(buckets), 1)
    bar = max(slot * 0.8 / len(series), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{round(peak * fraction)}</text>'
        )
    for i, bucket in enumerate(buckets):
        x0 = LEFT + i * slot + slot * 0.1
        for j, name in enumerate(series):
            value = bucket.values.get(name, 0)
            h = plot_h * value / peak
            parts.append(
                f'<rect class="{name}" x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(bucket.label)}: {value} '
                f"{name}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(f'<text x="{x0:.1f}" y="{HEIGHT - 6}">{escape(bucket.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

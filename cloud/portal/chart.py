"""Inline SVG for the device page: counter history as a line chart, supplies as bars.

Only numbers computed here and escaped text go into the markup."""
from markupsafe import Markup, escape

from cloud.export import iso

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 640, 220, 72, 28, 12, 12
SUPPLY_COLOURS = {"black", "cyan", "magenta", "yellow"}


def counter_chart(history):
    """The `total` counter over time from readings (newest first, as cloud.readapi.history gives
    them); None when fewer than one reading has a total."""
    pts = sorted((r.get("collected_at"), (r.get("counters") or {}).get("total")) for r in history
                 if r.get("collected_at") is not None and isinstance((r.get("counters") or {}).get("total"), int))
    if not pts:
        return None
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    span_t, span_v = max(t1 - t0, 1), max(hi - lo, 1)
    iw, ih = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(t, v):
        return PAD_L + (t - t0) * iw / span_t, PAD_T + ih - (v - lo) * ih / span_v

    coords = " ".join("%.1f,%.1f" % xy(t, v) for t, v in pts)
    dots = "".join('<circle cx="%.1f" cy="%.1f" r="2.5"><title>%s: %d</title></circle>'
                   % (xy(t, v) + (escape(iso(t)), v)) for t, v in pts[-200:])
    base = PAD_T + ih
    svg = ('<svg class="chart" role="img" aria-label="total pages over time" viewBox="0 0 %d %d" '
           'width="%d" height="%d" data-points="%d">' % (W, H, W, H, len(pts))
           + '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>' % (PAD_L, PAD_T, PAD_L, base)
           + '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>' % (PAD_L, base, W - PAD_R, base)
           + '<text x="%d" y="%d" class="tick" text-anchor="end">%d</text>' % (PAD_L - 6, PAD_T + 10, hi)
           + '<text x="%d" y="%d" class="tick" text-anchor="end">%d</text>' % (PAD_L - 6, base, lo)
           + '<text x="%d" y="%d" class="tick">%s</text>' % (PAD_L, H - 8, escape(iso(t0)[:16].replace("T", " ")))
           + '<text x="%d" y="%d" class="tick" text-anchor="end">%s</text>'
           % (W - PAD_R, H - 8, escape(iso(t1)[:16].replace("T", " ")))
           + '<polyline class="line" points="%s"/>' % coords + dots + "</svg>")
    return Markup(svg)


def supply_bars(supplies):
    """[{label, percent (None: unknown), colour class, state}] for the device page's bars."""
    out = []
    for s in supplies:
        pct = s.get("percent")
        colour = (s.get("color") or "").lower()
        out.append({"label": s.get("description") or s.get("kind") or "supply",
                    "percent": max(0, min(100, int(pct))) if isinstance(pct, (int, float)) else None,
                    "colour": colour if colour in SUPPLY_COLOURS else "other",
                    "state": s.get("state") or "", "kind": s.get("kind") or ""})
    return out

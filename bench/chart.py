#!/usr/bin/env python3
"""Turn a bench/run results JSON into a hand-written SVG chart.

    python3 bench/chart.py bench/results/latest.json bench/results/latest.svg

One small panel per table row, one horizontal bar per proxy, bars scaled to
the row's largest value and labelled with the value in the row's unit.
Failed or skipped cells are written out instead of drawn, so a proxy that
failed never shows up as a short (good-looking) bar. Standard library only.
"""

import json
import sys
from xml.sax.saxutils import escape

COLORS = {"direct": "#9e9e9e", "ringway": "#d9480f", "squid": "#1c7ed6",
          "tinyproxy": "#2b8a3e", "go": "#00a5c8", "hyper": "#7048e8",
          "ringway-epoll": "#f08c00", "ringway-mitm": "#a61e4d", "squid-bump": "#364fc7",
          "mitmdump": "#5c940d", "go-mitm": "#0b7285"}
# the zero-work ceiling relays (bench/uring-ceiling): greys, as they are references, not peers
COLORS.update({"ceiling-uring": "#343a40", "ceiling-epoll": "#adb5bd"})
PANEL_W, COLS, BAR_H, GAP, LABEL_W, PAD = 480, 2, 15, 4, 90, 16


def fmt(row, value):
    if row["unit"] == "%":
        return f"{value:.0%}"
    return row["format"].format(value) + ("" if row["unit"] in ("%",) else f" {row['unit']}")


def panel(row, proxies, x, y):
    out = []
    title = row["label"]
    suffix = ": " + row["unit"]
    if title.endswith(suffix):
        title = title[: -len(suffix)]
    hint = {True: "higher is better", False: "lower is better"}.get(row["higher_is_better"], "")
    out.append(f'<text x="{x}" y="{y + 12}" class="t">{escape(title)}</text>')
    if hint:
        out.append(f'<text x="{x + PANEL_W}" y="{y + 12}" class="h2">{hint}</text>')
    values = [c["value"] for c in row["cells"].values() if "value" in c]
    top = max(values) if values else 1.0
    span = PANEL_W - LABEL_W - 90
    for i, p in enumerate(proxies):
        by = y + 20 + i * (BAR_H + GAP)
        cell = row["cells"][p]
        out.append(f'<text x="{x + LABEL_W - 6}" y="{by + BAR_H - 3}" class="l">{escape(p)}</text>')
        if "value" in cell:
            w = max(1.0, span * cell["value"] / top) if top else 1.0
            out.append(f'<rect x="{x + LABEL_W}" y="{by}" width="{w:.1f}" height="{BAR_H}" '
                       f'fill="{COLORS.get(p, "#666")}"/>')
            out.append(f'<text x="{x + LABEL_W + w + 4:.1f}" y="{by + BAR_H - 3}" class="v">'
                       f'{escape(fmt(row, cell["value"]))}</text>')
        else:
            if cell.get("na"):
                word, cls = "n/a", "n"
            elif cell.get("failed", "").startswith("skipped"):
                word, cls = "skipped (see the table's notes)", "n"
            else:
                word, cls = "FAILED (see the table's notes)", "f"
            out.append(f'<text x="{x + LABEL_W}" y="{by + BAR_H - 3}" class="{cls}">{word}</text>')
    return out


def render(report):
    proxies = report["proxies"]
    rows = report["rows"]
    panel_h = 20 + len(proxies) * (BAR_H + GAP) + PAD
    nrows = (len(rows) + COLS - 1) // COLS
    idle = report.get("idle_check")
    header = 60 if idle else 46
    width = COLS * PANEL_W + (COLS + 1) * PAD
    height = header + nrows * panel_h + PAD
    m = report["machine"]
    threads = report["settings"].get("ringway_threads", 1)
    layout = ("proxy pinned to one core" if threads == 1 else
              f"ringway {threads} threads on both CPUs (shared with the load), peers on one core")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
           "<style>.t{font-size:12px;font-weight:bold;fill:#222}.l{font-size:11px;fill:#333;text-anchor:end}"
           ".v{font-size:11px;fill:#222}.f{font-size:11px;fill:#c92a2a;font-weight:bold}"
           ".h{font-size:14px;font-weight:bold}.s{font-size:11px;fill:#555}.n{font-size:11px;fill:#888}"
           ".h2{font-size:10px;fill:#888;text-anchor:end}</style>",
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{PAD}" y="20" class="h">Ringway side-by-side benchmark — {escape(layout)}</text>',
           f'<text x="{PAD}" y="36" class="s">{escape(report["command"])} · {escape(report["date"])} · '
           f'{m["nproc"]} CPUs {escape(m["cpu"])} · kernel {escape(m["kernel"])} · medians of '
           f'{report["settings"]["repeat"]}</text>']
    if idle:
        busy = ", ".join(f"cpu{c} {b:.0%}" for c, b in idle["before"].items())
        after = ", ".join(f"cpu{c} {b:.0%}" for c, b in idle["after"].items())
        warn = max(list(idle["before"].values()) + list(idle["after"].values())) > 0.10
        out.append(f'<text x="{PAD}" y="50" class="{"f" if warn else "s"}">other load (CPU busy while '
                   f'the benchmark idles): before {busy}; after {after}'
                   f'{" — disturbed run: ratios only" if warn else ""}</text>')
    for i, row in enumerate(rows):
        col, line = i % COLS, i // COLS
        out += panel(row, proxies, PAD + col * (PANEL_W + PAD), header + line * panel_h)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULTS.json OUT.svg")
    with open(sys.argv[1]) as f:
        report = json.load(f)
    with open(sys.argv[2], "w") as f:
        f.write(render(report))


if __name__ == "__main__":
    main()

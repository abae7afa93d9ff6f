"""Flame graphs from Java Flight Recorder samples, without outside tools.

`collapse(events)` turns `jfr print --json` execution samples into collapsed stacks
(`root;caller;callee count`, the format of Brendan Gregg's flamegraph.pl), `svg(stacks)` draws
them as a self-contained SVG (hover a box for its frame and share), and `inclusive(stacks, names)`
gives the share of samples that pass through each named frame (what a step costs, callees
included)."""
from __future__ import annotations

import html
import zlib


def frames_of(ev: dict) -> list[str]:
    """The frames of one sample, outermost first, as `Type.method`."""
    frames = ((ev.get("values") or {}).get("stackTrace") or {}).get("frames") or []
    names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
    names.reverse()
    return names


def collapse(events: list[dict], thread_prefix: str = "executor-thread", start_at: str | None = None) -> dict[str, int]:
    """Collapsed stacks of the samples taken on threads named `thread_prefix...`. With
    `start_at`, each stack starts at the outermost frame whose name starts with it (samples
    without such a frame are kept whole under `[other]`)."""
    out: dict[str, int] = {}
    for ev in events:
        thread = ((ev.get("values") or {}).get("sampledThread") or {}).get("javaName") or ""
        if not thread.startswith(thread_prefix):
            continue
        names = frames_of(ev)
        if start_at is not None:
            idx = next((i for i, n in enumerate(names) if n.startswith(start_at)), None)
            names = names[idx:] if idx is not None else ["[other]"]
        key = ";".join(n.replace(";", ":") for n in names) or "[unknown]"
        out[key] = out.get(key, 0) + 1
    return out


def inclusive(stacks: dict[str, int], prefixes: list[str]) -> dict[str, int]:
    """Samples passing through a frame starting with each prefix (a sample counts once per prefix)."""
    out = {p: 0 for p in prefixes}
    for stack, n in stacks.items():
        frames = stack.split(";")
        for p in prefixes:
            if any(f.startswith(p) for f in frames):
                out[p] += n
    return out


def write_collapsed(stacks: dict[str, int], path) -> None:
    with open(path, "w") as f:
        for stack, n in sorted(stacks.items()):
            f.write(f"{stack} {n}\n")


def _colour(name: str) -> str:
    h = zlib.crc32(name.encode())
    if name.startswith("dev.freshtoken"):
        return f"rgb({200 + h % 55},{90 + h % 60},{40 + h % 40})"  # ours: orange-red
    if name.startswith(("org.keycloak", "io.quarkus", "org.jboss")):
        return f"rgb({80 + h % 60},{150 + h % 60},{200 + h % 55})"  # Keycloak/Quarkus: blue
    return f"rgb({200 + h % 55},{180 + h % 60},{60 + h % 50})"  # rest: yellow


def svg(stacks: dict[str, int], title: str, width: int = 1200, row: int = 16, min_px: float = 0.3) -> str:
    """A flame graph (root at the bottom) of collapsed stacks."""
    tree: dict = {"n": 0, "c": {}}
    for stack, n in stacks.items():
        node = tree
        node["n"] += n
        for f in stack.split(";"):
            node = node["c"].setdefault(f, {"n": 0, "c": {}})
            node["n"] += n
    total = tree["n"] or 1

    def depth(node) -> int:
        return 1 + max((depth(c) for c in node["c"].values()), default=0)

    levels = depth(tree)
    height = (levels + 2) * row + 30
    boxes: list[str] = []

    def draw(node, name, x, level):
        w = node["n"] / total * (width - 20)
        if w < min_px:
            return
        y = height - (level + 1) * row - 10
        share = 100.0 * node["n"] / total
        label = name.rsplit(".", 2)
        short = ".".join(label[-2:]) if len(label) > 1 else name
        text = short if w > 7 * len(short) else (short[: int(w / 7) - 2] + ".." if w > 30 else "")
        boxes.append(f'<g><title>{html.escape(name)} ({node["n"]} samples, {share:.2f} %)</title>'
                     f'<rect x="{x + 10:.1f}" y="{y}" width="{max(w - 0.5, 0.1):.1f}" height="{row - 1}" '
                     f'fill="{_colour(name)}" rx="2"/>'
                     f'<text x="{x + 13:.1f}" y="{y + row - 4}">{html.escape(text)}</text></g>')
        cx = x
        for cname, child in sorted(node["c"].items()):
            draw(child, cname, cx, level + 1)
            cx += child["n"] / total * (width - 20)

    cx = 0.0
    for cname, child in sorted(tree["c"].items()):
        draw(child, cname, cx, 0)
        cx += child["n"] / total * (width - 20)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="monospace" font-size="11">'
            f'<rect width="100%" height="100%" fill="#fdfdfd"/>'
            f'<text x="10" y="18" font-size="14">{html.escape(title)} ({total} samples; hover a box)</text>'
            + "".join(boxes) + "</svg>\n")

"""``report.html``: a self-contained page (images embedded) built from a run directory.

The pipeline writes ``results.json`` with a list of *sections*; each section is a small typed
block, so the report knows nothing about model families or analyzers:

* ``{"type": "lines", "title", "x": [...], "series": {name: [...]}, "xlabel", "ylabel"}``
* ``{"type": "bars", "title", "labels": [...], "series": {name: [...]}, "ylabel"}``
* ``{"type": "table", "title", "columns": [...], "rows": [[...], ...]}``
* ``{"type": "images", "title", "array": "<key in arrays.npz>", "labels": [...],
  "cmap": "gray"}`` — an (N, H, W) array drawn as a grid
* ``{"type": "text", "title", "text": "..."}``

Every plot is also written as a PNG file under ``run_dir/plots/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuroplex.errors import ConfigError

__all__ = ["build_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d232a;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #dde;padding-bottom:.3rem}table{border-collapse:collapse;margin:.5rem 0;
font-size:.9rem}td,th{border:1px solid #ccd;padding:.25rem .6rem;text-align:right}
th{background:#f2f4f8}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.meta{color:#556;font-size:.9rem}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _figure_png(section: Mapping[str, Any], arrays: Mapping[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kind = section["type"]
    if kind == "images":
        key = section["array"]
        if key not in arrays:
            raise ConfigError(f"report section {section.get('title')!r}: no array {key!r}")
        images = np.asarray(arrays[key])
        if images.ndim == 4 and images.shape[1] in (1, 3):
            images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
        n = len(images)
        cols = min(n, 8)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows), squeeze=False)
        labels = list(section.get("labels") or [])
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                ax.imshow(images[i], cmap=section.get("cmap", "gray"))
                if i < len(labels):
                    ax.set_title(str(labels[i]), fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        series: Mapping[str, Sequence[float]] = section.get("series", {})
        if kind == "lines":
            x = section.get("x")
            for name, values in series.items():
                xs = x if x is not None and len(x) == len(values) else range(1, len(values) + 1)
                ax.plot(
                    list(xs),
                    [np.nan if v is None else v for v in values],
                    marker="o",
                    markersize=3,
                    label=name,
                )
            ax.set_xlabel(section.get("xlabel", ""))
        else:  # bars
            labels = [str(v) for v in section.get("labels", [])]
            width = 0.8 / max(len(series), 1)
            for k, (name, values) in enumerate(series.items()):
                pos = np.arange(len(values)) + k * width
                ax.bar(pos, values, width=width, label=name)
            ax.set_xticks(
                np.arange(len(labels)) + 0.4 - width / 2,
                labels,
                rotation=45,
                ha="right",
                fontsize=7,
            )
        ax.set_ylabel(section.get("ylabel", ""))
        ax.grid(alpha=0.3)
        if len(series) > 1 or kind == "lines":
            ax.legend(fontsize=8)
    fig.suptitle(section.get("title", ""), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _table_html(section: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in section.get("columns", []))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in section.get("rows", [])
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/plots/*.png``); return the page's path."""
    run = Path(run_dir)
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ConfigError(f"{run} is not a run directory: no results.json (run neuroplex run)")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{results_path}: unreadable results: {exc}") from None
    arrays: dict[str, Any] = {}
    if (run / "arrays.npz").is_file():
        import numpy as np

        with np.load(run / "arrays.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    title = html.escape(str(results.get("title", run.name)))
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>",
        f"<p class='meta'>{html.escape(str(results.get('subtitle', '')))}</p>",
    ]
    for index, section in enumerate(results.get("sections", [])):
        heading = html.escape(str(section.get("title", "")))
        parts.append(f"<h2>{heading}</h2>")
        kind = section.get("type")
        if kind in ("lines", "bars", "images"):
            png = _figure_png(section, arrays)
            (plots / f"{index:02d}-{_slug(section.get('title', ''))}.png").write_bytes(png)
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{heading}' src='data:image/png;base64,{data}'>")
        elif kind == "table":
            parts.append(_table_html(section))
        elif kind == "text":
            parts.append(f"<p>{html.escape(str(section.get('text', '')))}</p>")
        else:
            raise ConfigError(f"report section {index} has unknown type {kind!r}")
    parts.append("</body></html>")
    out = run / "report.html"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out)
    return out

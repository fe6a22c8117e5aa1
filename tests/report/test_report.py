"""report.html: self-contained, every plot embedded and saved, renders in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from neuroplex import ConfigError
from neuroplex.report import build_report

SECTIONS = [
    {"type": "text", "title": "Summary", "text": "digits-cnn <ok> & done"},
    {
        "type": "lines",
        "title": "Training curves",
        "x": [1, 2, 3],
        "series": {"train_loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, None]},
        "xlabel": "epoch",
    },
    {
        "type": "bars",
        "title": "Dead neurons per layer",
        "labels": ["conv1", "conv2"],
        "series": {"fraction": [0.0, 0.25]},
    },
    {"type": "table", "title": "ONNX parity", "columns": ["batch", "max_abs"], "rows": [[1, 1e-7]]},
    {"type": "images", "title": "Saliency", "array": "saliency", "labels": ["0", "1", "2"]},
]


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"title": "t", "sections": SECTIONS}))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "arrays.npz", saliency=rng.random((3, 8, 8)).astype(np.float32))
    return tmp_path


def test_report_embeds_every_plot_and_writes_pngs(run_dir) -> None:
    page = build_report(run_dir).read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    assert "digits-cnn &lt;ok&gt; &amp; done" in page  # escaped
    assert "<td>1e-07</td>" in page
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert pngs == ["01-training-curves.png", "02-dead-neurons-per-layer.png", "04-saliency.png"]
    assert all((run_dir / "plots" / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert "http" not in page  # nothing fetched from anywhere


def test_missing_results_and_bad_sections_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not a run directory: no results.json"):
        build_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"sections": [{"type": "pie"}]}))
    with pytest.raises(ConfigError, match="section 0 has unknown type 'pie'"):
        build_report(tmp_path)
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(ConfigError, match="unreadable results"):
        build_report(tmp_path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const origError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); origError(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.title = 'PROBE' + JSON.stringify({images: imgs.length, broken: broken,
                                              errors: window.__errors});
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path_factory) -> None:
    page = build_report(run_dir).read_text()
    probed = run_dir / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    profile = tmp_path_factory.mktemp("profile")
    out = _chromium(
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    )
    match = re.search(r"<title>PROBE(.*?)</title>", out.stdout)
    assert match, f"page did not load: {out.stderr[-2000:]}"
    state = json.loads(match.group(1).replace("&quot;", '"'))
    assert state == {"images": 3, "broken": 0, "errors": []}
    console_errors = [
        line for line in out.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()
    ]
    assert console_errors == []
    shot = run_dir / "report.png"
    _chromium(
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        (run_dir / "report.html").as_uri(),
    )
    assert shot.read_bytes().startswith(b"\x89PNG")

"""``neuroplex analyze MODEL.onnx -a NAME ... --data DATA``: the analyze stage on an ONNX file
alone (no Python model object), writing the same ``results.json`` and ``report.html`` as a run.

Data: a ``.npz`` with ``X`` (and ``y``), or a registered dataset name, split as the run that
exported the file split it (its ``spec.json`` beside the file: dataset, seed and fractions; else
seed 0 and the spec format's default fractions) so that ``split`` (``test``, the default, or
``val``) is the same held-out data the run evaluated on. Options: ``KEY=VALUE`` for every
analyzer named, ``NAME.KEY=VALUE`` for one (``VALUE`` read as JSON when it parses, else a
string), e.g. ``epsilon=0.1`` or ``autoattack.version=standard``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from neuroplex.analysis.robustness import robustness_rows, robustness_section
from neuroplex.analysis.shard import analyze_sharded, require_shardable
from neuroplex.atomic import write_json
from neuroplex.config import DataConfig
from neuroplex.errors import ConfigError
from neuroplex.mechanic import to_plain
from neuroplex.ranges import check_input_range
from neuroplex.registry import create_analyzer, create_dataset
from neuroplex.run.analyze import SPLITS
from neuroplex.run.data import _xy

if TYPE_CHECKING:
    from neuroplex.training.distributed import Strategy

__all__ = ["FileAnalysis", "analyze_file", "parse_options"]


@attrs.frozen(kw_only=True)
class FileAnalysis:
    """What :func:`analyze_file` found: each analyzer's result, where it was evaluated, the
    robustness rows, and the files written (``None`` without an output directory)."""

    analyses: dict[str, Any]
    evaluations: dict[str, dict[str, Any]]
    robustness: list[dict[str, Any]]
    results_path: Path | None = None
    report_path: Path | None = None


def parse_options(items: Sequence[str], analyzers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{analyzer: {key: value}}`` from ``KEY=VALUE`` (every analyzer) and ``NAME.KEY=VALUE``
    (analyzer ``NAME``, one of ``analyzers``) items; a later item wins."""
    out: dict[str, dict[str, Any]] = {name: {} for name in analyzers}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--option {item!r} is not KEY=VALUE; e.g. --option epsilon=0.1 or "
                "--option autoattack.norm=l2",
                path="--option",
            )
        name, dot, field = key.rpartition(".")
        if dot and name not in out:
            raise ConfigError(
                f"--option {item!r} names analyzer {name!r}, which is not among the -a "
                f"analyzers ({', '.join(analyzers)})",
                path="--option",
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        for target in [name] if dot else list(out):
            out[target][field] = value
    return out


def analyze_file(
    onnx: Path,
    analyzers: Sequence[str],
    data: str,
    *,
    split: str | None = None,
    n_samples: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    output: Path | None = None,
    input_range: Any = None,
    group: Strategy | None = None,
    check_only: bool = False,
) -> FileAnalysis:
    """Run ``analyzers`` on ``onnx`` over the held-out data (see the module doc); with
    ``output`` write ``results.json`` and ``report.html`` there. ``input_range``
    (``--input-range MIN MAX``, or per channel ``MIN_0,MIN_1,... MAX_0,MAX_1,...``, see
    :mod:`neuroplex.ranges`) overrides the file's metadata; files from other tools have none,
    and attacks then need it.

    ``group`` (a ``torchrun`` group of several processes): each analyzer, which must be a
    :class:`~neuroplex.protocols.ShardableAnalyzer`, evaluates this rank's whole batches and
    rank 0 merges them (:mod:`neuroplex.analysis.shard`); only rank 0 returns the results and
    writes, the others return an empty :class:`FileAnalysis`. ``check_only``: stop once the
    file, the data and every analyzer's options were checked (nothing runs)."""
    from neuroplex.onnx import load_onnx

    if n_samples is not None and n_samples < 1:
        raise ConfigError(f"--n-samples must be >= 1, got {n_samples}", path="--n-samples")
    if input_range is not None:
        input_range = check_input_range(input_range)  # before loading: a bad value fails fast
    module = load_onnx(onnx, input_range=input_range)
    x, y, where = _load_inputs(onnx, data, split)
    n = len(x) if n_samples is None else min(n_samples, len(x))
    analyses: dict[str, Any] = {}
    evaluations: dict[str, dict[str, Any]] = {}
    options = options or {}
    started = time.perf_counter()
    shared = group if group is not None and group.world_size > 1 else None
    built: list[tuple[str, Any]] = []
    for name in analyzers:
        # analyzers read the input range from the OnnxModule's metadata themselves
        analyzer = create_analyzer(name, module, **dict(options.get(name, {})))
        built.append((name, analyzer if shared is None else require_shardable(analyzer, name)))
    if check_only:
        return FileAnalysis(analyses={}, evaluations={}, robustness=[])
    for name, analyzer in built:
        xs, ys = x[:n], None if y is None else y[:n]
        evaluated = {"analyzer": name, **where, "n": n, "backend": "onnx"}
        if shared is not None:
            found = analyze_sharded(analyzer, xs, ys, shared)
            if found is None:  # a rank > 0: rank 0 holds the result
                continue
            analyses[name] = found
            evaluated["processes"] = shared.world_size
        else:
            analyses[name] = analyzer.analyze(xs, ys)
        evaluations[name] = evaluated
    seconds = time.perf_counter() - started
    if group is not None and group.rank != 0:
        return FileAnalysis(analyses={}, evaluations={}, robustness=[])
    rows = robustness_rows(analyses, evaluations)
    result = FileAnalysis(analyses=analyses, evaluations=evaluations, robustness=rows)
    if output is None:
        return result
    return _write(result, onnx, output, seconds)


def _write(result: FileAnalysis, onnx: Path, output: Path, seconds: float) -> FileAnalysis:
    from neuroplex.report import build_report
    from neuroplex.run.report import _sections_of

    output.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    sections: list[dict[str, Any]] = [
        {"type": "text", "title": "Summary", "text": f"analyzers on {onnx}"},
        *robustness_section(result.robustness),
    ]
    for key, value in result.analyses.items():
        sections.extend(_sections_of(key, value, arrays))
    results = {
        "title": f"neuroplex analyze: {onnx.name}",
        "subtitle": f"model {onnx}",
        "test_metrics": {},
        "rounds": [],
        "robustness": result.robustness,
        "evaluations": result.evaluations,
        "analyses": {k: to_plain(v) for k, v in result.analyses.items()},
        "stage_seconds": {"analyze": seconds},
        "sections": sections,
    }
    if arrays:
        np.savez_compressed(output / "arrays.npz", **arrays)
    path = output / "results.json"
    write_json(path, to_plain(results))
    report = build_report(output)
    return attrs.evolve(result, results_path=path, report_path=report)


def _load_inputs(
    onnx: Path, data: str, split: str | None
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    path = Path(data)
    if path.suffix == ".npz":
        if split is not None:
            raise ConfigError(
                f"--split applies to a dataset name, not to the file {path} (a .npz is "
                "evaluated as it is)",
                path="--split",
            )
        if not path.is_file():
            raise ConfigError(f"--data: file not found: {path}", path="--data")
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays.files:
                raise ConfigError(
                    f"--data: {path} has no array 'X' (found: {arrays.files})", path="--data"
                )
            x = torch.from_numpy(arrays["X"].astype(np.float32))
            y = torch.from_numpy(arrays["y"].astype(np.int64)) if "y" in arrays.files else None
        return x, y, {"data": str(path), "split": path.name}
    split = split or "test"
    if split not in SPLITS:
        raise ConfigError(
            f"--split {split!r} is not a held-out split; choose {' or '.join(SPLITS)}",
            path="--split",
        )
    seed, val_fraction, test_fraction, source = _split_of(onnx, data)
    splits = create_dataset(data, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    x, y = _xy(splits.test if split == "test" else splits.val)
    where = {
        "data": data,
        "split": split,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "split_from": source,
    }
    return x, y, where


def _split_of(onnx: Path, data: str) -> tuple[int, float, float, str]:
    """Seed and fractions of the run that exported ``onnx`` (its ``spec.json``) when it used
    dataset ``data``; else seed 0 and the spec format's defaults."""
    spec_path = onnx.parent / "spec.json"
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
            if spec["data"]["name"] == data:
                return (
                    int(spec["training"]["seed"]),
                    float(spec["data"]["val_fraction"]),
                    float(spec["data"]["test_fraction"]),
                    str(spec_path),
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not a run's spec: fall back to the defaults below
    default = DataConfig(name=data)
    return 0, default.val_fraction, default.test_fraction, "defaults"

"""The ``neuroplex`` command line.

``--help``, ``plugins``, ``list`` and ``doctor`` never import torch: they read entry points and
records only. User errors print one line and exit 2 (3 when a policy rejects the run: a CI
gate); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from neuroplex import __version__
from neuroplex._cli_parser import EXIT_REJECTED, EXIT_USER_ERROR, protect_ranges
from neuroplex._cli_parser import build_parser as _build_parser
from neuroplex.errors import ConfigError, NeuroplexError, RunRejected
from neuroplex.records import KINDS

__all__ = ["main"]


def _manager(args: argparse.Namespace) -> Any:
    from neuroplex.plugins import get_plugin_manager

    if getattr(args, "strict_plugins", False):
        os.environ["NEUROPLEX_STRICT_PLUGINS"] = "1"
    return get_plugin_manager()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------- commands
def cmd_plugins(args: argparse.Namespace) -> int:
    manager = _manager(args)
    infos = manager.plugins()
    if args.kind:
        _check_kind(args.kind)
        infos = [p for p in infos if args.kind in p.components or p.status != "ok"]
    if args.json:
        print(json.dumps([p.to_dict() for p in infos], indent=2))
        return 0
    if not infos:
        from neuroplex.catalog import distributions_for_kind

        example = " ".join(distributions_for_kind("model")[:1]) or "a neuroplex plugin"
        print(f"no neuroplex plugins installed; install e.g.: pip install {example}")
        return 0
    rows = [("plugin", "distribution", "version", "status", "components")]
    for p in infos:
        kinds = [args.kind] if args.kind else list(KINDS)
        comps = "; ".join(f"{k}: {', '.join(p.components[k])}" for k in kinds if k in p.components)
        rows.append((p.name, p.distribution, p.version, p.status, comps or (p.error or "-")))
    _print_table(rows)
    if args.debug:
        for p in infos:
            if p.detail:
                print(f"\n--- {p.name} ---\n{p.detail}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from neuroplex.registry import FIRST_PARTY, list_components, plural

    _manager(args)
    _check_kind(args.kind)
    records = list_components(args.kind, args.pattern)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    if not records:
        dists = " ".join(FIRST_PARTY[args.kind])
        print(
            f"no {args.kind} matches {args.pattern!r}; {plural(args.kind)} come from plugins, "
            f"e.g.: pip install {dists}"
        )
        return 0
    rows = [("name", "summary", "capabilities")]
    rows += [(r.name, r.summary, ", ".join(sorted(r.capabilities))) for r in records]
    _print_table(rows)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    manager = _manager(args)
    problems = 0
    print(f"neuroplex {__version__} (python {sys.version.split()[0]})")
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        print(f"  {dist}: {_dist_version(dist)}")
    if _dist_version("onnxruntime") != "not installed" and (
        _dist_version("onnxruntime-gpu") != "not installed"
    ):
        problems += 1
        print(
            "  problem: onnxruntime and onnxruntime-gpu are both installed; the CPU package "
            "hides the CUDA provider. Fix: pip uninstall -y onnxruntime onnxruntime-gpu && "
            "pip install onnxruntime-gpu"
        )
    infos = manager.plugins()
    print(f"plugins: {len(infos)} ({sum(p.status == 'ok' for p in infos)} ok)")
    for p in manager.failures():
        problems += 1
        print(f"  {p.failure_line()}")
    for conflict in manager.conflicts():
        problems += 1
        print(f"  conflict: {conflict.message()}")
    from neuroplex.registry import FIRST_PARTY

    for kind in KINDS:
        names = [r.record.name for r in manager.registrations(kind)]
        if names:
            more = ", ..." if len(names) > 8 else ""
            print(f"  {kind}: {len(names)} ({', '.join(names[:8])}{more})")
        else:
            print(f"  {kind}: none — pip install {' '.join(FIRST_PARTY[kind])}")
    print("ok" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1


def cmd_run(args: argparse.Namespace) -> int:
    from neuroplex.launch import launch, plan_launch

    plan = plan_launch(args)
    if plan.distributed and "LOCAL_RANK" not in os.environ:
        return launch(args, plan)
    from neuroplex.run import run

    result = run(
        args.spec,
        output=args.output,
        resume=args.resume,
        overwrite=args.overwrite,
        epochs=args.epochs,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
        print(f"run {result.run_id}: {result.status}; test {metrics}")
        print(f"run directory: {result.run_dir}")
        if result.report:
            print(f"report: {result.report}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neuroplex.run.export import export_checkpoint

    path = export_checkpoint(Path(args.checkpoint), Path(args.output))
    print(f"exported and verified: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from neuroplex.run.export import verify_against_checkpoint

    print(verify_against_checkpoint(Path(args.onnx), Path(args.against)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    path = Path(args.input)
    if not path.is_file():
        raise ConfigError(f"input file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a .npy array: {exc}") from None
    import torch

    from neuroplex.onnx import load_onnx

    module = load_onnx(Path(args.onnx))
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    if args.output:
        np.save(args.output, out)
        print(f"wrote {args.output} {out.shape}")
    else:
        pred = out.argmax(axis=-1) if out.ndim == 2 else out
        print(json.dumps(pred.tolist()))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from neuroplex.launch import launch_analyze, torchrun_world_size
    from neuroplex.ranges import parse_range_arg
    from neuroplex.run.analyze_file import analyze_file, parse_options

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}", path="--nproc")
    items = list(args.option)
    if args.epsilon is not None:
        items.insert(0, f"epsilon={args.epsilon}")
    if args.norm is not None:
        items.insert(0, f"norm={json.dumps(args.norm)}")
    call: dict[str, Any] = {
        "split": args.split,
        "n_samples": args.n_samples,
        "options": parse_options(items, args.analyzer),
        "output": None if args.output is None else Path(args.output),
        "input_range": None
        if args.input_range is None
        else tuple(parse_range_arg(side) for side in args.input_range),
    }
    onnx = Path(args.onnx)
    world = torchrun_world_size()
    if args.nproc > 1 and world is None:  # check everything here, then start torchrun
        from neuroplex.analysis.shard import require_shardable_record

        for name in args.analyzer:
            require_shardable_record(name)
        analyze_file(onnx, args.analyzer, args.data, check_only=True, **call)
        return launch_analyze(args.argv, args.nproc)
    if world is not None and world > 1:  # a torchrun worker: this rank's share
        from neuroplex.analysis.shard import analysis_group

        with analysis_group(args.timeout) as group:
            found = analyze_file(onnx, args.analyzer, args.data, group=group, **call)
            if group.rank != 0:
                return 0
    else:
        found = analyze_file(onnx, args.analyzer, args.data, **call)
    if args.json:
        from neuroplex.mechanic import to_plain

        print(json.dumps(to_plain(found.analyses), indent=2, default=str))
    for row in found.robustness:
        print(
            f"{row['attack']} ({row['strength']}) {row['norm']} eps={row['epsilon']:g} "
            f"n={row['n']} split={row['split']} [{row['backend']}]: clean "
            f"{row['clean_accuracy']:.4f}, robust {row['robust_accuracy']:.4f}"
        )
    if found.results_path is not None:
        print(f"wrote {found.results_path} and {found.report_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neuroplex.report import build_report

    print(build_report(Path(args.run_dir)))
    return 0


# ---------------------------------------------------------------------------- helpers
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise NeuroplexError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}{hint}")


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        print(line.rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    """The ``neuroplex`` argument parser, each command bound to its handler here."""
    return _build_parser(
        {
            "plugins": cmd_plugins,
            "list": cmd_list,
            "doctor": cmd_doctor,
            "run": cmd_run,
            "export": cmd_export,
            "verify": cmd_verify,
            "predict": cmd_predict,
            "analyze": cmd_analyze,
            "report": cmd_report,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(protect_ranges(argv))
    args.argv = argv  # for a torchrun relaunch
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except NeuroplexError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"neuroplex: error: {exc}", file=sys.stderr)
        return EXIT_REJECTED if isinstance(exc, RunRejected) else EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("neuroplex: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

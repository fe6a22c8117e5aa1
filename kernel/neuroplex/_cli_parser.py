"""The ``neuroplex`` command line's argument parser (the commands' handlers are in
:mod:`neuroplex.cli`, which passes them in)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from neuroplex import __version__
from neuroplex.records import KINDS

__all__ = ["EXIT_REJECTED", "EXIT_USER_ERROR", "build_parser", "protect_ranges"]

EXIT_USER_ERROR = 2
EXIT_REJECTED = 3  # a policy (e.g. early_reject) failed the run: a CI gate

#: a command's handler: the parsed arguments in, the exit status out
Handler = Callable[[argparse.Namespace], int]


def _versions() -> str:
    from neuroplex.plugins import get_plugin_manager

    lines = [f"neuroplex {__version__}"]
    seen = set()
    for p in get_plugin_manager().plugins():
        if p.distribution not in seen:
            seen.add(p.distribution)
            lines.append(f"{p.distribution} {p.version}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show kernel and plugin versions")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        print(_versions())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(EXIT_USER_ERROR, f"neuroplex: error: {message} (see: {self.prog} --help)\n")


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """The ``neuroplex`` argument parser; ``handlers`` maps each command to its function."""
    parser = _Parser(
        prog="neuroplex",
        description="Plugin-based deep learning: train, export to ONNX, explain and attack.",
    )
    parser.add_argument("--version", action=_VersionAction)
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks")
    common.add_argument(
        "--strict-plugins", action="store_true", help="treat any plugin failure as an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("plugins", parents=[common], help="list installed plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--kind", choices=KINDS, help="only plugins providing this kind")
    p.set_defaults(func=handlers["plugins"])

    p = sub.add_parser("list", parents=[common], help="list components of one kind")
    p.add_argument("kind", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("pattern", nargs="?", default="*", help="glob on names (default: *)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=handlers["list"])

    p = sub.add_parser("doctor", parents=[common], help="check the installation")
    p.set_defaults(func=handlers["doctor"])

    p = sub.add_parser("run", parents=[common], help="run a spec end to end")
    p.add_argument("spec", help="path to a run spec (.toml or .json)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --output (default: the newest unfinished version)",
    )
    p.add_argument("--nproc", type=int, default=1, help="processes per node (ddp, torchrun)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes of a multi-node ddp job")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0..nnodes-1")
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of node rank 0 (nnodes>1)")
    p.add_argument("--max-restarts", type=int, default=0, help="restart a failed group K times")
    p.add_argument(
        "--output",
        "-o",
        default=None,
        help="run directory (default: a new OUTPUT_DIR/NAME/version_N; OUTPUT_DIR=runs)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --output")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.set_defaults(func=handlers["run"])

    p = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="path of the .onnx file")
    p.set_defaults(func=handlers["export"])

    p = sub.add_parser("verify", parents=[common], help="verify an ONNX file against PyTorch")
    p.add_argument("onnx")
    p.add_argument("--against", required=True, help="checkpoint the model was exported from")
    p.set_defaults(func=handlers["verify"])

    p = sub.add_parser("predict", parents=[common], help="run an ONNX model on a .npy array")
    p.add_argument("onnx")
    p.add_argument("input", help="a .npy file with a batch of inputs")
    p.add_argument("--output", "-o", default=None, help="write predictions to this .npy")
    p.set_defaults(func=handlers["predict"])

    p = sub.add_parser("analyze", parents=[common], help="run analyzers on an ONNX model")
    p.add_argument("onnx")
    p.add_argument("--analyzer", "-a", action="append", required=True, help="analyzer name")
    p.add_argument("--data", required=True, help="a .npz with X (and y) or a dataset name")
    p.add_argument(
        "--split",
        default=None,
        help="held-out split of a dataset name: test (default) or val, split as the run that "
        "exported the file (its spec.json) split it",
    )
    p.add_argument(
        "--n-samples", "-n", type=int, default=None, help="first N points (default: all)"
    )
    p.add_argument(
        "--option",
        "-O",
        action="append",
        default=[],
        metavar="[NAME.]KEY=VALUE",
        help="an analyzer option (VALUE as JSON), for every analyzer or for NAME only; "
        "e.g. -O epsilon=0.1 -O autoattack.version=standard",
    )
    p.add_argument("--epsilon", "--eps", type=float, default=None, help="same as -O epsilon=X")
    p.add_argument("--norm", default=None, help="same as -O norm=NORM (linf or l2)")
    p.add_argument(
        "--output", "-o", default=None, help="write results.json and report.html to this dir"
    )
    p.add_argument("--json", action="store_true", help="print every result as JSON")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="split the evaluation over N torchrun processes (whole seeded batches each, "
        "the result of one process)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="with --nproc: seconds any process waits for the others (default 300)",
    )
    p.add_argument(
        "--input-range",
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="valid input range of the model (e.g. 0 1, 0 255), or one value per channel "
        "(axis 1) separated by commas (e.g. -2.1,-2.0,-1.8 2.2,2.4,2.6 for normalised RGB); "
        "default: the file's metadata (attacks clip to it; files from other tools have none)",
    )
    p.set_defaults(func=handlers["analyze"])

    p = sub.add_parser("report", parents=[common], help="write report.html for a run dir")
    p.add_argument("run_dir")
    p.set_defaults(func=handlers["report"])
    return parser


#: one side of ``--input-range`` that argparse would take for an option: ``-2,-1.5,0``
_NEGATIVE_LIST = re.compile(r"-[0-9.]+(?:[eE][-+]?[0-9]+)?(?:,\s*-?[0-9.]+(?:[eE][-+]?[0-9]+)?)+")


def protect_ranges(argv: Sequence[str]) -> list[str]:
    """The two values after ``--input-range`` kept as values when they are per-channel lists
    starting with a minus sign (argparse only knows plain negative numbers)."""
    out = list(argv)
    for i, token in enumerate(out):
        if token == "--input-range":
            for j in (i + 1, i + 2):
                if j < len(out) and _NEGATIVE_LIST.fullmatch(out[j]):
                    out[j] = " " + out[j]  # not an option any more; parsing strips it
    return out

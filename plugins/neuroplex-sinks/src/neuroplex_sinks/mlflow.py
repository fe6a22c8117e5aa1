"""MLflow tracking (extra ``neuroplex-sinks[mlflow]``): one MLflow run per neuroplex run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from neuroplex import Event
from neuroplex.errors import ConfigError, SinkError
from neuroplex_sinks._flatten import numeric_leaves

__all__ = ["MlflowSink"]


def _flat_params(value: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flat_params(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = json.dumps(value, default=str)[:500]
    return out


def _clean(name: str) -> str:
    """A metric or tag name MLflow accepts (alphanumerics and ``._-/ ``)."""
    return "".join(c if c.isalnum() or c in "._-/ " else "_" for c in name)


def _require_database_packages() -> None:
    """MLflow's database store needs SQLAlchemy and Alembic, which mlflow-skinny leaves out."""
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the mlflow sink's database store needs sqlalchemy and alembic: "
            "pip install 'neuroplex-sinks[mlflow]' (or set the sink's tracking_uri)",
            path="tracking_uri",
        ) from None


class MlflowSink:
    """Params from the spec, metrics per step, the ONNX model (``artifact`` events) as files.

    ``run_started`` → params (the spec, flattened ``a.b.c``); ``epoch`` → metrics
    (``train_loss``, ``metrics.accuracy``...) at step = epoch; ``metrics``/``analysis`` →
    metrics named ``<name>.<key>``; ``decision`` → tag ``decision.<policy>.<round>`` = action;
    ``artifact`` → the file at ``payload["path"]``; ``run_finished`` → run status
    (``completed`` → FINISHED, else FAILED). Failures of MLflow raise :class:`SinkError`.

    Args:
        tracking_uri: any MLflow tracking URI (default: the database store
            ``sqlite:///<run_dir>/mlflow.db``, which a plain ``MlflowClient`` or ``mlflow ui``
            reads back with that URI and no other setting).
        experiment: experiment name (default ``neuroplex``).
        run_dir: where the default database and the artifacts (``<run_dir>/mlartifacts``) go
            (default: the current directory).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "neuroplex",
        run_dir: str | None = None,
    ) -> None:
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(
                "the mlflow sink needs MLflow: pip install 'neuroplex-sinks[mlflow]'"
            ) from None
        base = Path(run_dir or ".").resolve()
        uri = tracking_uri or f"sqlite:///{(base / 'mlflow.db').as_posix()}"
        # our own database keeps its artifacts beside it; any other store decides for itself
        artifacts = (base / "mlartifacts").as_uri() if tracking_uri is None else None
        if uri.startswith("sqlite:"):
            _require_database_packages()
        self._errors: tuple[type[BaseException], ...] = (MlflowException, OSError)
        self.client = MlflowClient(tracking_uri=uri)
        self.tracking_uri = uri
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(experiment, artifact_location=artifacts)
            )
        except self._errors as exc:
            raise SinkError(f"mlflow sink: cannot use tracking URI {uri}: {exc}") from exc
        self._runs: dict[str, str] = {}

    def _run(self, event: Event) -> str:
        if event.run_id not in self._runs:
            existing = self.client.search_runs(
                [self.experiment_id], f"tags.neuroplex_run_id = '{event.run_id}'"
            )
            if existing:
                self._runs[event.run_id] = existing[0].info.run_id
            else:
                run = self.client.create_run(
                    self.experiment_id,
                    tags={"neuroplex_run_id": event.run_id},
                    run_name=event.name,
                )
                self._runs[event.run_id] = run.info.run_id
        return self._runs[event.run_id]

    def send(self, event: Event) -> None:
        try:
            self._send(event)
        except self._errors as exc:
            raise SinkError(f"mlflow sink ({self.tracking_uri}): {exc}") from exc

    def _send(self, event: Event) -> None:
        run_id = self._run(event)
        if event.kind == "run_started":
            for key, value in _flat_params(event.payload.get("spec", {})).items():
                self.client.log_param(run_id, key, value)
        elif event.kind in ("epoch", "metrics", "analysis"):
            prefix = "" if event.kind == "epoch" else f"{event.name}."
            for key, number in numeric_leaves(event.payload):
                self.client.log_metric(run_id, _clean(prefix + key), number, step=event.step)
        elif event.kind == "decision":
            p = event.payload
            tag = f"decision.{p.get('policy', event.name)}.{p.get('round', event.step)}"
            self.client.set_tag(run_id, _clean(tag), str(p.get("action", "")))
        elif event.kind == "artifact":
            path = Path(str(event.payload.get("path", "")))
            if path.is_file():
                self.client.log_artifact(run_id, str(path))
            else:
                print(f"neuroplex: mlflow sink: artifact {path} does not exist", file=sys.stderr)
        elif event.kind == "run_finished":
            status = "FINISHED" if event.payload.get("status") == "completed" else "FAILED"
            self.client.set_terminated(run_id, status=status)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

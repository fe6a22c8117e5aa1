"""``AdversarialTester``: the seed's adversarial-testing API over PyTorch or ONNX Runtime."""

from __future__ import annotations

import contextlib
import difflib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import torch
from tqdm.auto import tqdm

from neuroplex.analysis.backend import (
    ResolvedModel,
    eval_mode,
    on_device,
    require_gradients,
    resolve_device,
    resolve_model,
)
from neuroplex.analysis.inputs import as_inputs, as_labels, check_logits
from neuroplex.errors import ConfigError
from neuroplex.ranges import (
    InputRange,
    bounds_scale,
    check_input_range,
    describe_range,
    outside_bounds,
    range_bounds,
)
from neuroplex_attacks import attacks as _attacks
from neuroplex_attacks.autoattack import MIN_CLASSES, SequenceOutcome, plan, run_sequence
from neuroplex_attacks.results import (
    AdversarialDataset,
    AutoAttackResult,
    NoiseRobustnessResult,
    RobustnessCurve,
    RobustnessResult,
)

__all__ = ["AdversarialTester", "AttackShard", "EvaluationShard"]

_ALIASES = {"gaussian": "gaussian_noise", "uniform": "uniform_noise", "linf_pgd": "pgd"}


@attrs.frozen
class _Outcome:
    x_adv: torch.Tensor
    clean_correct: torch.Tensor  # bool (N,)
    adv_correct: torch.Tensor  # bool (N,)
    params: dict[str, Any]


@attrs.frozen(kw_only=True)
class AttackShard:
    """One shard of :meth:`AdversarialTester.test_robustness` (whole batches, input order)."""

    x: torch.Tensor
    x_adv: torch.Tensor
    clean_correct: torch.Tensor  # bool (n,)
    adv_correct: torch.Tensor  # bool (n,)
    params: dict[str, Any]

    def cpu(self) -> AttackShard:
        """The same shard with its tensors in host memory (to send to another process)."""
        return attrs.evolve(
            self,
            x=self.x.cpu(),
            x_adv=self.x_adv.cpu(),
            clean_correct=self.clean_correct.cpu(),
            adv_correct=self.adv_correct.cpu(),
        )


@attrs.frozen(kw_only=True)
class EvaluationShard:
    """One shard of :meth:`AdversarialTester.evaluate` (whole batches, input order)."""

    x: torch.Tensor
    x_adv: torch.Tensor
    clean_correct: torch.Tensor  # bool (n,)
    broken_by: torch.Tensor  # long (n,): attack index, -1 robust, -2 misclassified when clean
    attack_seconds: tuple[float, ...]
    seconds: float
    epsilon: float
    norm: str
    version: str
    steps: tuple[tuple[str, dict[str, Any]], ...]
    skipped: dict[str, str]
    seed: int

    def cpu(self) -> EvaluationShard:
        """The same shard with its tensors in host memory (to send to another process)."""
        return attrs.evolve(self, x=self.x.cpu(), x_adv=self.x_adv.cpu())


class _CheckedModel:
    """Calls the model; the first output is checked to be logits ``(N, C)`` (not
    probabilities) and the labels to lie in ``[0, C)``, before any loss uses them."""

    def __init__(self, model: torch.nn.Module, y: torch.Tensor) -> None:
        self.model, self.y, self.checked = model, y, False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out: Any = self.model(x)
        if isinstance(out, tuple | list):
            out = out[0]
        if not self.checked:
            out = check_logits(out, allow_probabilities=False)
            as_labels(self.y, int(self.y.shape[0]), int(out.shape[1]))
            self.checked = True
        result: torch.Tensor = out
        return result


def _attack_name(attack: str) -> str:
    if not isinstance(attack, str):
        raise ConfigError(f"attack_type must be a string, got {attack!r}", path="attack_type")
    key = attack.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _attacks.ATTACKS:
        close = difflib.get_close_matches(key, list(_attacks.ATTACKS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown attack {attack!r}{hint}; choose one of {', '.join(_attacks.ATTACKS)}",
            path="attack_type",
        )
    return key


def _check_epsilon(epsilon: Any, name: str = "epsilon") -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise ConfigError(f"{name} must be a number >= 0, got {epsilon!r}", path=name)
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ConfigError(
            f"{name} must be a finite number >= 0 (a budget in input units), got {epsilon!r}",
            path=name,
        )
    return float(epsilon)


def _check_positive(epsilon: float, attack: str) -> float:
    """The budget of the ensemble attacks: a perturbation ball needs a radius > 0."""
    if epsilon <= 0:
        raise ConfigError(
            f"epsilon must be > 0 for {attack} (the radius of the perturbation ball in input "
            f"units, e.g. 0.1 or 8/255), got {epsilon!r}",
            path="epsilon",
        )
    return epsilon


_INT_OPTIONS = ("steps", "n_queries", "n_iter", "n_restarts", "n_target_classes", "eot_iter")


def _check_options(where: str, params: dict[str, Any]) -> None:
    for key in _INT_OPTIONS:
        value = params.get(key)
        if key in params and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be an int >= 1, got {value!r}", path=key)
    if "alpha" in params and params["alpha"] is not None:
        _check_epsilon(params["alpha"], "alpha")
    if "norm" in params and params["norm"] not in ("linf", "l2"):
        raise ConfigError(
            f"norm must be 'linf' or 'l2' for {where}, got {params['norm']!r}", path="norm"
        )


def _check_params(attack: str, params: dict[str, Any]) -> None:
    allowed = _attacks.attack_parameters(attack)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"attack {attack!r} does not take {unknown}; its options are "
            f"{', '.join(allowed) or 'none'}",
            path="attack_params",
        )
    _check_options(attack, params)
    if attack == "autoattack":
        _autoattack_plan(params, gradients=True)


def _autoattack_plan(
    params: dict[str, Any], gradients: bool
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """AutoAttack's ``(steps, skipped)`` for its options; ``ConfigError`` when invalid.

    Without ``gradients`` (a forward-only ONNX file) the standard version keeps only the
    attacks that need none (``square``) and says why the others were skipped; other versions
    naming a gradient attack are refused.
    """
    version = params.get("version", "standard")
    attacks = params.get("attacks")
    if isinstance(attacks, str):
        attacks = [attacks]
    options = params.get("options") or {}
    if isinstance(options, dict) and any(
        isinstance(v, dict) and "norm" in v for v in options.values()
    ):
        raise ConfigError(
            "options must not set norm per attack: set norm once for the whole evaluation",
            path="options",
        )
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(
            f"options must map attack names to option dicts, e.g. "
            f"{{'square': {{'n_queries': 1000}}}}, got {options!r}",
            path="options",
        )
    try:
        steps = plan(version, attacks, params.get("norm", "linf"), options, gradients=True)
        for name, step in steps:
            unknown = sorted(set(step) - set(_attacks.attack_parameters(name)))
            if unknown:
                raise ValueError(
                    f"{name} does not take {unknown}; its options are "
                    f"{', '.join(_attacks.attack_parameters(name))}"
                )
            _check_options(name, step)
    except ValueError as exc:
        raise ConfigError(
            str(exc), path="version" if "version" in str(exc) else "attacks"
        ) from None
    skipped: dict[str, str] = {}
    if not gradients:
        needing = [name for name, _ in steps if name in _attacks.GRADIENT_ATTACKS]
        if needing and version != "standard":
            raise ConfigError(
                f"the model is forward-only (an ONNX file without gradient graphs), but "
                f"{', '.join(needing)} need gradients: use version 'standard' (runs square) or "
                "attacks=['square'], or re-export with gradients",
                path="attacks",
            )
        reason = "needs gradients; the ONNX file is forward-only (re-export it with gradients)"
        skipped = dict.fromkeys(needing, reason)
        steps = [(name, step) for name, step in steps if name not in skipped]
    return steps, skipped


def _effective_params(attack: str, epsilon: float, params: dict[str, Any]) -> dict[str, Any]:
    """The attack's options with defaults filled in (``alpha`` resolved)."""
    import inspect

    signature = inspect.signature(_attacks.ATTACKS[attack]).parameters
    used = {k: signature[k].default for k in _attacks.attack_parameters(attack) if k != "seed"}
    used.update({k: v for k, v in params.items() if k != "seed"})
    if "alpha" in used and used["alpha"] is None:
        used["alpha"] = 2.5 * epsilon / used["steps"]
    return used


def _fraction(mask: torch.Tensor) -> float:
    return int(mask.sum()) / int(mask.numel())


def _per_sample_norms(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = (x_adv - x).reshape(x.shape[0], -1).double()
    return d.abs().amax(dim=1), d.norm(p=2, dim=1)


@contextlib.contextmanager
def _one_torch_thread_beside_ort(resolved: Any) -> Iterator[None]:
    """PyTorch single-threaded for the duration when the model runs on ONNX Runtime's CPU
    provider (results are unchanged).

    There the model runs on ONNX Runtime's own thread pool and PyTorch only does an attack's
    bookkeeping between calls: indexing, clamps and sorts of tensors of a few thousand numbers,
    hundreds of times per attack. OpenMP's fork and join cost more than such ops: on a shared
    2-core machine ``x[idx]`` of 359 × 64 floats took 4.5 ms of CPU with 2 threads and 20 µs
    with one, and a Square query 28 ms of CPU instead of 10 (the forward pass alone: 9)."""
    device = getattr(resolved.module, "device", None)
    if resolved.backend != "onnx" or getattr(device, "type", "cpu") != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AdversarialTester:
    """Attack a classifier and measure how its accuracy holds up.

    Args:
        model: a ``torch.nn.Module`` returning logits ``(N, C)``, an ``OnnxModule`` or a path
            to a ``.onnx`` file. Outputs that are already probabilities are refused.
        device: where to run (``None``: the model's device; a string, ``torch.device`` or a
            neuroplex Device). A PyTorch model is moved there for each call and moved back.
        input_range: ``(min, max)`` of valid inputs, or per channel ``(mins, maxs)`` with one
            value per channel of the input's axis 1 (``(N, C, ...)``; see
            :mod:`neuroplex.ranges`); attacks clip to it and ``x`` must lie in it. Default:
            the ONNX module's ``input_range`` (its argument or the file's metadata); else
            ``(0, 1)``, except for files from other tools, where it is an error to leave it
            out.
        vulnerability_threshold: ``is_vulnerable`` is
            ``robust_accuracy < vulnerability_threshold × clean_accuracy`` (default 0.5: the
            attack removes more than half of the clean accuracy).
        batch_size: samples per attack batch (bounds memory).
        seed: seeds random starts, square-attack proposals, noise and dataset mixing.
        progress: show a tqdm bar (default: only when stderr is a terminal and there is more
            than one batch).

    The model's training mode and parameters' ``requires_grad`` flags are restored after
    every call.
    """

    def __init__(
        self,
        model: Any,
        device: Any = None,
        *,
        input_range: Any = None,
        vulnerability_threshold: float = 0.5,
        batch_size: int = 512,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        self._resolved: ResolvedModel = resolve_model(model)
        if self._resolved.backend == "torch":
            self.device = resolve_device(device, self._resolved.module)
        else:
            self.device = resolve_device(
                device if device is not None else self._resolved.device, torch.nn.Module()
            )
        if input_range is None:
            if self._resolved.input_range is None and self._resolved.foreign:
                raise ConfigError(
                    "input_range is unknown: this ONNX file was not exported by neuroplex and "
                    "its metadata gives no input range; pass input_range=(min, max) (CLI: "
                    "--input-range MIN MAX), the units the model's inputs are in, or one value "
                    "per channel: input_range=(mins, maxs)",
                    path="input_range",
                )
            input_range = self._resolved.input_range or (0.0, 1.0)
        self.input_range: InputRange = check_input_range(input_range)
        channels = (
            getattr(self._resolved.module, "input_channels", None)
            if self._resolved.backend == "onnx"
            else None
        )
        if channels is not None:
            check_input_range(self.input_range, channels=channels)
        if not 0.0 < float(vulnerability_threshold) <= 1.0:
            raise ConfigError(
                f"vulnerability_threshold must be in (0, 1], got {vulnerability_threshold!r}",
                path="vulnerability_threshold",
            )
        self.vulnerability_threshold = float(vulnerability_threshold)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"batch_size must be an int >= 1, got {batch_size!r}", path="batch_size"
            )
        self.batch_size = batch_size
        self.seed = int(seed)
        self.progress = progress

    @property
    def model(self) -> torch.nn.Module:
        return self._resolved.module

    @property
    def backend(self) -> str:
        return self._resolved.backend

    @property
    def tier(self) -> str:
        return self._resolved.tier

    # -- inputs --------------------------------------------------------------------------

    def _inputs(self, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = as_inputs(x, self.device)
        n = int(x.shape[0])
        bounds = range_bounds(self.input_range, x)  # checks a per-channel range's channels
        tol = 1e-6 * max(1.0, bounds_scale(bounds))
        if outside_bounds(x, bounds, tol):
            raise ConfigError(
                f"x spans [{float(x.min()):.4g}, {float(x.max()):.4g}], outside input_range "
                f"{describe_range(self.input_range)}: attacks work in the model's input units, "
                "so pass the input_range your data is scaled to",
                path="input_range",
            )
        if y is None:  # batch by batch, as the attacks see them: a shard predicts the same
            with eval_mode(self.model), on_device(self._resolved, self.device), torch.no_grad():
                y = torch.cat(
                    [
                        check_logits(self.model(x[s : s + self.batch_size])).argmax(dim=1)
                        for s in range(0, n, self.batch_size)
                    ]
                )
        return x, as_labels(y, n, None, self.device)

    def _batches(self, n: int, desc: str) -> Any:
        starts = range(0, n, self.batch_size)
        show = self.progress
        if show is None:
            show = sys.stderr.isatty() and len(starts) > 1
        return tqdm(starts, desc=desc, disable=not show, leave=False)

    # -- core ----------------------------------------------------------------------------

    def _run(
        self,
        attack: str,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilon: float,
        params: dict[str, Any],
        *,
        evaluate: bool = True,
        first_batch: int = 0,
    ) -> _Outcome:
        """Attack ``x`` batch by batch; with ``evaluate``, also classify clean and attacked.
        Batch ``i`` is seeded with ``seed + first_batch + i`` (a shard of a larger evaluation
        starts at its first batch's global index)."""
        if attack in _attacks.GRADIENT_ATTACKS:
            require_gradients(self._resolved, attack)
        if attack == "autoattack" and not self._resolved.has_gradients:
            params.setdefault("gradients", False)
            if params["gradients"] is not False:
                require_gradients(self._resolved, attack)
            _autoattack_plan(params, gradients=False)  # refuses versions that need gradients
        norm = params.get("norm", _attacks.ATTACK_NORMS[attack])
        fn = _attacks.ATTACKS[attack]
        accepts_seed = "seed" in _attacks.attack_parameters(attack)
        base_seed = int(params.pop("seed", self.seed))
        advs, clean, robust = [], [], []
        with (
            eval_mode(self.model),
            on_device(self._resolved, self.device),
            _one_torch_thread_beside_ort(self._resolved),
        ):
            for i, start in enumerate(self._batches(int(x.shape[0]), attack)):
                xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
                checked = _CheckedModel(self.model, yb)
                if evaluate:
                    with torch.no_grad():
                        clean.append(checked(xb).argmax(dim=1) == yb)
                extra = {"seed": base_seed + first_batch + i} if accepts_seed else {}
                if attack in _attacks.NORM_ATTACKS and epsilon == 0:
                    x_adv = xb.clone()  # the zero ball holds only x itself
                else:
                    x_adv = fn(
                        checked,
                        xb,
                        yb,
                        epsilon=epsilon,
                        input_range=range_bounds(self.input_range, xb),
                        **params,
                        **extra,
                    ).detach()
                self._check_bound(norm, attack, xb, x_adv, epsilon)
                advs.append(x_adv)
                if evaluate:
                    with torch.no_grad():
                        robust.append(checked(x_adv).argmax(dim=1) == yb)
        used = _effective_params(attack, epsilon, params)
        if accepts_seed:
            used["seed"] = base_seed
        empty = torch.zeros(0, dtype=torch.bool)
        return _Outcome(
            torch.cat(advs),
            torch.cat(clean) if evaluate else empty,
            torch.cat(robust) if evaluate else empty,
            used,
        )

    def _check_bound(
        self, norm: str, attack: str, x: torch.Tensor, x_adv: torch.Tensor, epsilon: float
    ) -> None:
        """Every perturbation respects the budget and every input the range (else a bug)."""
        bounds = range_bounds(self.input_range, x)
        tol = 1e-5 * max(1.0, bounds_scale(bounds), epsilon)
        linf, l2 = _per_sample_norms(x, x_adv)
        if norm == "linf" and float(linf.max()) > epsilon + tol:
            raise RuntimeError(f"{attack}: L-inf perturbation {float(linf.max())} > {epsilon}")
        if norm == "l2" and float(l2.max()) > epsilon + tol:
            raise RuntimeError(f"{attack}: L2 perturbation {float(l2.max())} > {epsilon}")
        if outside_bounds(x_adv, bounds, tol):
            raise RuntimeError(
                f"{attack}: adversarial input leaves input_range {describe_range(self.input_range)}"
            )

    def _result(
        self, attack: str, epsilon: float, x: torch.Tensor, outcome: _Outcome
    ) -> RobustnessResult:
        n = int(x.shape[0])
        clean_acc = _fraction(outcome.clean_correct)
        robust_acc = _fraction(outcome.adv_correct)
        n_correct = int(outcome.clean_correct.sum())
        flipped = int((outcome.clean_correct & ~outcome.adv_correct).sum())
        linf, l2 = _per_sample_norms(x, outcome.x_adv)
        return RobustnessResult(
            attack_type=attack,
            norm=outcome.params.get("norm", _attacks.ATTACK_NORMS[attack]),
            epsilon=epsilon,
            clean_accuracy=clean_acc,
            robust_accuracy=robust_acc,
            attack_success_rate=flipped / n_correct if n_correct else 0.0,
            mean_linf=float(linf.mean()),
            mean_l2=float(l2.mean()),
            n_samples=n,
            n_correct=n_correct,
            is_vulnerable=robust_acc < self.vulnerability_threshold * clean_acc,
            vulnerability_threshold=self.vulnerability_threshold,
            input_range=self.input_range,
            params=self._with_output_note(outcome.params),
            backend=self._resolved.backend,
            tier=self._resolved.tier,
        )

    def _with_output_note(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` plus ``model_output`` when the ONNX file's output was changed for
        analysis (a final Softmax attacked through its log-probabilities)."""
        note = self._resolved.output_note
        return {**params, "model_output": note} if note else params

    # -- public API ----------------------------------------------------------------------

    def attack(
        self, x: Any, y: Any = None, attack_type: str = "fgsm", epsilon: float = 0.1, **params: Any
    ) -> torch.Tensor:
        """Adversarial inputs of ``x`` (shape ``(N, ...)``) for labels ``y`` (default: the
        model's predictions). ``params`` are the attack's options (``steps``, ``alpha``, ...)."""
        attack = _attack_name(attack_type)
        epsilon = _check_epsilon(epsilon)
        if attack in _attacks.NORM_ATTACKS:
            _check_positive(epsilon, attack)
        _check_params(attack, params)
        xt, yt = self._inputs(x, y)
        return self._run(attack, xt, yt, epsilon, dict(params), evaluate=False).x_adv

    def test_robustness(
        self, x: Any, y: Any = None, attack_type: str = "fgsm", epsilon: float = 0.1, **params: Any
    ) -> RobustnessResult:
        """Clean vs. attacked accuracy on ``(x, y)``; see :class:`RobustnessResult`.

        ``y`` (shape ``(N,)``, ints in ``[0, C)``) defaults to the model's predictions (then
        ``clean_accuracy`` is 1). ``params`` are the attack's options: ``pgd``/``pgd_l2``:
        ``steps=10``, ``alpha=2.5ε/steps``, ``random_start=True``, ``seed``; ``square``:
        ``n_queries=200``, ``p_init=0.8``, ``seed``; noise: ``seed``.
        """
        attack = _attack_name(attack_type)
        epsilon = _check_epsilon(epsilon)
        if attack in _attacks.NORM_ATTACKS:
            _check_positive(epsilon, attack)
        _check_params(attack, params)
        xt, yt = self._inputs(x, y)
        return self._result(attack, epsilon, xt, self._run(attack, xt, yt, epsilon, dict(params)))

    def evaluate(
        self,
        x: Any,
        y: Any = None,
        epsilon: float = 0.1,
        *,
        norm: str = "linf",
        version: str = "standard",
        attacks: Sequence[str] | str | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> AutoAttackResult:
        """AutoAttack (``version`` standard, rand or custom with ``attacks``) on ``(x, y)``.

        Each attack runs, batch by batch, on the points the earlier ones left classified
        correctly; see :class:`AutoAttackResult` (per-sample flags, which attack broke each
        point, norms, seeds, times) and :mod:`neuroplex_attacks.autoattack`. ``options``
        overrides an attack's parameters (``{"square": {"n_queries": 1000}}``). On a
        forward-only ONNX file the standard version runs ``square`` alone and records why the
        gradient attacks were skipped.
        """
        part = self.evaluate_shard(
            x,
            y,
            epsilon,
            norm=norm,
            version=version,
            attacks=attacks,
            options=options,
            seed=seed,
        )
        return self.merge_evaluation([part])

    def evaluate_shard(
        self,
        x: Any,
        y: Any = None,
        epsilon: float = 0.1,
        *,
        norm: str = "linf",
        version: str = "standard",
        attacks: Sequence[str] | str | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        seed: int | None = None,
        first_batch: int = 0,
    ) -> EvaluationShard:
        """:meth:`evaluate` on one shard of a larger evaluation: ``x`` holds whole batches,
        the first of them batch ``first_batch`` of the whole (seeded ``seed + first_batch``);
        :meth:`merge_evaluation` of the shards in order is the whole evaluation's result."""
        epsilon = _check_positive(_check_epsilon(epsilon), "autoattack")
        if isinstance(attacks, str):
            attacks = [attacks]
        params: dict[str, Any] = {"norm": norm, "version": version, "attacks": attacks}
        params["options"] = options
        _check_options("autoattack", {"norm": norm})
        steps, skipped = _autoattack_plan(params, gradients=self._resolved.has_gradients)
        if not steps:
            raise ConfigError("no attack left to run", path="attacks")
        xt, yt = self._inputs(x, y)
        base_seed = self.seed if seed is None else int(seed)
        names = [name for name, _ in steps]
        outcomes: list[SequenceOutcome] = []
        started = time.perf_counter()
        with (
            eval_mode(self.model),
            on_device(self._resolved, self.device),
            _one_torch_thread_beside_ort(self._resolved),
        ):
            for i, start in enumerate(self._batches(int(xt.shape[0]), "autoattack")):
                xb, yb = xt[start : start + self.batch_size], yt[start : start + self.batch_size]
                checked = _CheckedModel(self.model, yb)
                with torch.no_grad():
                    n_classes = int(checked(xb).shape[1])
                for name in names:
                    if n_classes < MIN_CLASSES[name]:
                        raise ConfigError(
                            f"{name} needs at least {MIN_CLASSES[name]} classes; the model "
                            f"has {n_classes}: use attacks=['apgd_ce', 'fab_t', 'square']",
                            path="attacks",
                        )
                outcomes.append(
                    run_sequence(
                        checked,
                        xb,
                        yb,
                        steps,
                        epsilon=epsilon,
                        input_range=range_bounds(self.input_range, xb),
                        seed=base_seed + first_batch + i,
                    )
                )
        return EvaluationShard(
            x=xt,
            x_adv=torch.cat([o.x_adv for o in outcomes]),
            clean_correct=torch.cat([o.clean_correct for o in outcomes]).cpu(),
            broken_by=torch.cat([o.broken_by for o in outcomes]).cpu(),
            attack_seconds=tuple(sum(o.seconds[k] for o in outcomes) for k in range(len(names))),
            seconds=time.perf_counter() - started,
            epsilon=epsilon,
            norm=norm,
            version=version,
            steps=tuple((name, dict(step)) for name, step in steps),
            skipped=skipped,
            seed=base_seed,
        )

    def merge_evaluation(self, parts: Sequence[EvaluationShard]) -> AutoAttackResult:
        """The :class:`AutoAttackResult` of the shards ``parts``, in input order (times: the
        slowest shard's wall time, each attack's time summed over the shards)."""
        if not parts:
            raise ConfigError("no shard to merge: the evaluation had no input", path="x")
        first = parts[0]
        norm, names = first.norm, [name for name, _ in first.steps]
        xt = torch.cat([p.x for p in parts]) if len(parts) > 1 else first.x
        x_adv = torch.cat([p.x_adv for p in parts]) if len(parts) > 1 else first.x_adv
        clean = torch.cat([p.clean_correct for p in parts])
        broken = torch.cat([p.broken_by for p in parts])
        linf, l2 = _per_sample_norms(xt, x_adv)
        n = int(xt.shape[0])
        labels = {-1: "", -2: "clean"} | dict(enumerate(names))
        after = {
            name: int((broken == -1).sum() + (broken > k).sum()) / n for k, name in enumerate(names)
        }
        size = linf if norm == "linf" else l2
        return AutoAttackResult(
            attack="autoattack" if first.version != "custom" or len(names) > 1 else names[0],
            version=first.version,
            attacks=tuple(names),
            norm=norm,
            epsilon=first.epsilon,
            n_samples=n,
            n_correct=int(clean.sum()),
            clean_accuracy=_fraction(clean),
            robust_accuracy=_fraction(broken == -1),
            robust_accuracy_after=after,
            clean_correct=tuple(bool(v) for v in clean.tolist()),
            robust=tuple(bool(v) for v in (broken == -1).tolist()),
            broken_by=tuple(labels[int(b)] for b in broken.tolist()),
            linf=tuple(float(v) for v in linf.tolist()),
            l2=tuple(float(v) for v in l2.tolist()),
            max_perturbation=float(size.max()) if n else 0.0,
            params={name: dict(step) for name, step in first.steps},
            seed=first.seed,
            seconds=max(p.seconds for p in parts),
            attack_seconds={
                name: sum(p.attack_seconds[k] for p in parts) for k, name in enumerate(names)
            },
            skipped=first.skipped,
            batch_size=self.batch_size,
            input_range=self.input_range,
            backend=self._resolved.backend,
            tier=self._resolved.tier,
        )

    def attack_shard(
        self,
        x: Any,
        y: Any = None,
        attack_type: str = "fgsm",
        epsilon: float = 0.1,
        *,
        first_batch: int = 0,
        **params: Any,
    ) -> AttackShard:
        """:meth:`test_robustness` on one shard of a larger evaluation (whole batches, the
        first of them batch ``first_batch`` of the whole); :meth:`merge_robustness` of the
        shards in order is the whole evaluation's result."""
        attack = _attack_name(attack_type)
        epsilon = _check_epsilon(epsilon)
        if attack in _attacks.NORM_ATTACKS:
            _check_positive(epsilon, attack)
        _check_params(attack, params)
        xt, yt = self._inputs(x, y)
        outcome = self._run(attack, xt, yt, epsilon, dict(params), first_batch=first_batch)
        return AttackShard(
            x=xt,
            x_adv=outcome.x_adv,
            clean_correct=outcome.clean_correct,
            adv_correct=outcome.adv_correct,
            params=outcome.params,
        )

    def merge_robustness(
        self, attack_type: str, epsilon: float, parts: Sequence[AttackShard]
    ) -> RobustnessResult:
        """The :class:`RobustnessResult` of the shards ``parts`` (in input order)."""
        if not parts:
            raise ConfigError("no shard to merge: the evaluation had no input", path="x")
        attack = _attack_name(attack_type)
        outcome = _Outcome(
            torch.cat([p.x_adv for p in parts]),
            torch.cat([p.clean_correct for p in parts]),
            torch.cat([p.adv_correct for p in parts]),
            parts[0].params,
        )
        return self._result(attack, epsilon, torch.cat([p.x for p in parts]), outcome)

    def robustness_curve(
        self,
        x: Any,
        y: Any = None,
        epsilons: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
        attack_type: str = "pgd",
        **params: Any,
    ) -> RobustnessCurve:
        """Robust accuracy at each budget (ascending); see :class:`RobustnessCurve`."""
        attack = _attack_name(attack_type)
        eps = sorted(_check_epsilon(e, "epsilons") for e in epsilons)
        if not eps:
            raise ConfigError("epsilons must name at least one budget", path="epsilons")
        _check_params(attack, params)
        xt, yt = self._inputs(x, y)
        results, cumulative, per_eps = [], [], []
        still_correct = torch.ones(int(xt.shape[0]), dtype=torch.bool, device=xt.device)
        for e in eps:
            outcome = self._run(attack, xt, yt, e, dict(params))
            still_correct = still_correct & outcome.adv_correct & outcome.clean_correct
            cumulative.append(_fraction(still_correct))
            per_eps.append(_fraction(outcome.adv_correct))
            results.append(self._result(attack, e, xt, outcome))
        return RobustnessCurve(
            attack_type=attack,
            norm=params.get("norm", _attacks.ATTACK_NORMS[attack]),
            epsilons=tuple(eps),
            robust_accuracy=tuple(cumulative),
            per_epsilon_accuracy=tuple(per_eps),
            clean_accuracy=results[0].clean_accuracy,
            results=tuple(results),
            backend=self._resolved.backend,
            tier=self._resolved.tier,
        )

    def test_noise_robustness(
        self,
        x: Any,
        y: Any = None,
        noise_levels: Sequence[float] = (0.01, 0.05, 0.1),
        noise: str = "gaussian",
        n_trials: int = 1,
        seed: int | None = None,
    ) -> NoiseRobustnessResult:
        """Accuracy under random noise at each level; see :class:`NoiseRobustnessResult`."""
        attack = _attack_name(noise)
        if attack not in ("gaussian_noise", "uniform_noise"):
            raise ConfigError(f"noise must be 'gaussian' or 'uniform', got {noise!r}", path="noise")
        levels = tuple(_check_epsilon(v, "noise_levels") for v in noise_levels)
        if not levels:
            raise ConfigError("noise_levels must name at least one level", path="noise_levels")
        if not isinstance(n_trials, int) or n_trials < 1:
            raise ConfigError(f"n_trials must be an int >= 1, got {n_trials!r}", path="n_trials")
        base = self.seed if seed is None else int(seed)
        xt, yt = self._inputs(x, y)
        accs, clean = [], 0.0
        for level in levels:
            trial = []
            for t in range(n_trials):
                outcome = self._run(attack, xt, yt, level, {"seed": base + t})
                trial.append(_fraction(outcome.adv_correct))
                clean = _fraction(outcome.clean_correct)
            accs.append(sum(trial) / n_trials)
        return NoiseRobustnessResult(
            noise=attack.removesuffix("_noise"),
            noise_levels=levels,
            accuracy=tuple(accs),
            accuracy_drop=tuple(clean - a for a in accs),
            clean_accuracy=clean,
            n_trials=n_trials,
            seed=base,
            n_samples=int(xt.shape[0]),
            input_range=self.input_range,
            backend=self._resolved.backend,
            tier=self._resolved.tier,
        )

    def generate_adversarial_dataset(
        self,
        X: Any,
        y: Any,
        attack: str = "pgd",
        epsilon: float = 0.1,
        ratio: float = 0.5,
        seed: int | None = None,
        **params: Any,
    ) -> AdversarialDataset:
        """A dataset for adversarial retraining: ``X`` with a random ``ratio`` of its samples
        replaced by their adversarial versions (labels unchanged).

        Returns an :class:`AdversarialDataset` (a ``TensorDataset`` of ``(x, y)``, same length
        and order as ``X``; ``is_adversarial`` marks the replaced rows), on the tester's device.
        The replaced subset is drawn with ``seed`` (default: the tester's seed).
        """
        attack = _attack_name(attack)
        epsilon = _check_epsilon(epsilon)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ConfigError(f"ratio must be a number in [0, 1], got {ratio!r}", path="ratio")
        _check_params(attack, params)
        xt, yt = self._inputs(X, y)
        n = int(xt.shape[0])
        gen = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        chosen = torch.randperm(n, generator=gen)[: round(ratio * n)].to(xt.device)
        mixed = xt.clone()
        mask = torch.zeros(n, dtype=torch.bool, device=xt.device)
        if chosen.numel():
            run_params = dict(params)
            if seed is not None and "seed" in _attacks.attack_parameters(attack):
                run_params.setdefault("seed", int(seed))
            outcome = self._run(attack, xt[chosen], yt[chosen], epsilon, run_params)
            mixed[chosen] = outcome.x_adv
            mask[chosen] = True
        return AdversarialDataset(mixed, yt.clone(), mask, attack=attack, epsilon=epsilon)

"""Load COMET models once per process and score (source, hypothesis, reference) triples in batches.

Used by the ``comet`` / ``xcomet`` rewards (`trl_seqpo.rewards.quality`). Models are cached per
(resolved checkpoint path, device), put in eval mode with gradients off, and run with plain ``torch.inference_mode``
forward passes on the device accelerate picked for this process, instead of COMET's ``predict`` (which starts a
PyTorch Lightning trainer with its own device choice and worker processes on every call).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.errors import MissingDependencyError
from trl_seqpo.rewards.inputs import warn_once

COMET_INSTALL_HINT = 'pip install "trl-seqpo[comet]" && pip install --no-deps unbabel-comet==2.2.7'

_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_RESOLVED: dict[str, tuple[Path, bool]] = {}
_CACHE_LOCK = threading.Lock()


def comet_available() -> bool:
    """Whether unbabel-comet can be imported (cheap: does not import it)."""
    try:
        return importlib.util.find_spec("comet") is not None
    except (ImportError, ValueError):
        return False


def import_comet() -> Any:
    """Import unbabel-comet, turning a missing install into `MissingDependencyError` with the install hint.

    comet's ``__init__`` calls ``logging.basicConfig(level=INFO)``; when the root logger had no handlers before, the
    handler and level it adds are removed again so importing COMET does not turn on INFO logs of every library.

    Returns:
        The ``comet`` module.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import comet
    except ModuleNotFoundError as error:
        if error.name == "pkg_resources":
            raise MissingDependencyError(
                "unbabel-comet 2.2.7 (through torchmetrics<0.11) imports pkg_resources, which setuptools>=81 removed. "
                'Install it with: pip install "setuptools<81"'
            ) from error
        raise MissingDependencyError(
            f"The COMET reward needs unbabel-comet. Install it with: {COMET_INSTALL_HINT}"
        ) from error
    finally:
        if not handlers:
            for handler in list(root.handlers):
                root.removeHandler(handler)
            root.setLevel(level)
    from trl_seqpo.rewards.comet_compat import apply_comet_compat

    apply_comet_compat()
    return comet


def _hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def resolve_checkpoint(model: str | os.PathLike) -> tuple[Path, bool]:
    """Find the ``model.ckpt`` for a local path or a Hugging Face Hub name.

    Args:
        model: ``.../checkpoints/model.ckpt``, a directory in COMET's layout (``hparams.yaml`` +
            ``checkpoints/model.ckpt``), or a Hub name such as ``"Unbabel/wmt22-comet-da"``.

    Returns:
        ``(checkpoint path, local_files_only)``; the flag tells the encoder loader whether it may use the network.

    Raises:
        ValueError: If a local path does not exist or has no checkpoint, or a Hub model cannot be obtained
            (offline and not cached, no network, gated repository).
    """
    path = Path(model).expanduser()
    if path.is_file():
        return path, True
    if path.is_dir():
        checkpoint = path / "checkpoints" / "model.ckpt"
        if checkpoint.is_file():
            return checkpoint, True
        raise ValueError(
            f"{path} has no checkpoints/model.ckpt; a COMET directory holds hparams.yaml and checkpoints/."
        )
    name = str(model)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        raise ValueError(
            f"COMET checkpoint {name!r} does not exist; pass a model.ckpt path, its directory, or a Hub name."
        )

    offline = _hub_offline()
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(repo_id=name, local_files_only=offline))
    except Exception as error:
        if offline:
            raise ValueError(
                f"COMET model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot "
                f"be downloaded. Download it on a machine with network (`hf download {name}`) and copy the cache, or "
                f"pass model=<path to its checkpoints/model.ckpt>."
            ) from error
        raise ValueError(
            f"Could not download COMET model {name!r} from the Hugging Face Hub ({error}). Check the name, your "
            f"network, and for gated models (XCOMET, CometKiwi) accept the licence and log in with `hf auth login`."
        ) from error
    checkpoint = snapshot / "checkpoints" / "model.ckpt"
    if not checkpoint.is_file():
        raise ValueError(f"Hub model {name!r} has no checkpoints/model.ckpt: it is not a COMET checkpoint.")
    return checkpoint, offline


def default_device() -> Any:
    """The device accelerate assigned to this process (``PartialState().device``), else CUDA if present, else CPU."""
    import torch

    try:
        from accelerate import PartialState

        return torch.device(PartialState().device)
    except Exception:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_comet_model(model: str | os.PathLike, device: Any = None) -> Any:
    """Return the COMET model for ``model`` on ``device``, loading it on the first call only.

    Args:
        model: Checkpoint path, COMET directory or Hub name (see `resolve_checkpoint`).
        device: Torch device or string; ``None`` uses `default_device`.

    Returns:
        The unbabel-comet ``CometModel``, in eval mode, gradients off, on ``device``.
    """
    import torch

    device = torch.device(device) if device is not None else default_device()
    resolved = _RESOLVED.get(str(model))
    if resolved is None:  # resolve a Hub name once, not on every reward call
        resolved = _RESOLVED[str(model)] = resolve_checkpoint(model)
    checkpoint, local_files_only = resolved
    key = (str(checkpoint.resolve()), str(device))
    cached = _MODEL_CACHE.get(key)
    if cached is not None:
        return cached
    with _CACHE_LOCK:
        if key not in _MODEL_CACHE:
            comet_model = _load_checkpoint(checkpoint, local_files_only)
            comet_model.eval()
            comet_model.requires_grad_(False)
            _MODEL_CACHE[key] = comet_model.to(device)
        return _MODEL_CACHE[key]


def _load_checkpoint(checkpoint: Path, local_files_only: bool) -> Any:
    """Load like ``comet.load_from_checkpoint`` without its ``pkg_resources`` version probe."""
    import torch
    import yaml

    import_comet()
    from comet.models import str2model

    hparams_file = checkpoint.parents[1] / "hparams.yaml"
    if not hparams_file.is_file():
        raise ValueError(
            f"{hparams_file} is missing: a COMET checkpoint directory holds hparams.yaml and checkpoints/."
        )
    hparams = yaml.safe_load(hparams_file.read_text()) or {}
    class_identifier = hparams.get("class_identifier")
    if class_identifier not in str2model:
        raise ValueError(
            f"{hparams_file}: unknown class_identifier {class_identifier!r}; expected one of {sorted(str2model)}."
        )
    extra: dict[str, Any] = {}
    # comet >= 2.2.4 loads checkpoints trained with its patched sparsemax as softmax (comet issue #244).
    if hparams.get("layer_transformation") == "sparsemax_patch":
        extra["layer_transformation"] = "softmax"
    return str2model[class_identifier].load_from_checkpoint(
        checkpoint_path=checkpoint,
        load_pretrained_weights=False,
        hparams_file=None,
        map_location=torch.device("cpu"),
        strict=False,
        local_files_only=local_files_only,
        **extra,
    )


def _to_device(batch: Any, device: Any) -> Any:
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    if isinstance(batch, dict):
        return type(batch)((key, _to_device(value, device)) for key, value in batch.items())
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _predict(comet_model: Any, samples: list[dict[str, str]]) -> list[float]:
    import torch

    device = next(comet_model.parameters()).device
    batch = _to_device(comet_model.prepare_for_inference(samples), device)
    with torch.inference_mode():
        prediction = comet_model.predict_step(batch)
    return [float(score) for score in prediction["scores"].float().cpu().tolist()]


def score_rows(
    comet_model: Any,
    sources: Sequence[Any],
    translations: Sequence[str | None],
    references: Sequence[Any],
    batch_size: int,
    reward_name: str = "comet",
) -> list[float | None]:
    """Score rows in batches; a row that cannot be scored gets ``None`` (never an exception).

    Rows without a translation or source (or without a reference for reference-based models) are skipped. When a
    batch fails, its rows are retried one at a time so only the failing rows get ``None``.

    Args:
        comet_model: A model from `load_comet_model`.
        sources: Source sentences, one per row.
        translations: Hypotheses, one per row (``None`` = nothing to score).
        references: Gold translations, one per row (``None`` allowed for reference-free models).
        batch_size: Rows per forward pass.
        reward_name: Name used in warnings.

    Returns:
        One score (or ``None``) per row.
    """
    needs_reference = bool(comet_model.requires_references()) if hasattr(comet_model, "requires_references") else True
    scores: list[float | None] = [None] * len(translations)
    # a reference is used whenever the row has one (a unified/XCOMET model then averages its src+mt, ref+mt and
    # src+ref+mt scores, as `model.predict` does); rows with and without one are batched apart
    groups: dict[bool, tuple[list[int], list[dict[str, str]]]] = {True: ([], []), False: ([], [])}
    for i, (source, translation, reference) in enumerate(zip(sources, translations, references)):
        if not isinstance(source, str) or not isinstance(translation, str):
            continue
        if needs_reference and not isinstance(reference, str):
            warn_once(f"{reward_name}-no-reference", f"Reward '{reward_name}': rows without a reference get None.")
            continue
        sample = {"src": source, "mt": translation}
        if isinstance(reference, str):
            sample["ref"] = reference
        rows, samples = groups["ref" in sample]
        rows.append(i)
        samples.append(sample)
    for rows, samples in groups.values():
        _score_group(comet_model, rows, samples, batch_size, reward_name, scores)
    return scores


def _score_group(
    comet_model: Any,
    rows: list[int],
    samples: list[dict[str, str]],
    batch_size: int,
    reward_name: str,
    scores: list[float | None],
) -> None:
    for start in range(0, len(samples), batch_size):
        batch_rows, batch_samples = rows[start : start + batch_size], samples[start : start + batch_size]
        try:
            batch_scores: list[float | None] = list(_predict(comet_model, batch_samples))
        except Exception as error:
            warn_once(
                f"{reward_name}-batch",
                f"Reward '{reward_name}': a batch failed ({error!r}); scoring its rows one by one.",
            )
            batch_scores = []
            for sample in batch_samples:
                try:
                    batch_scores.append(_predict(comet_model, [sample])[0])
                except Exception as row_error:
                    warn_once(f"{reward_name}-row", f"Reward '{reward_name}' could not score a row ({row_error!r}).")
                    batch_scores.append(None)
        for row, score in zip(batch_rows, batch_scores):
            scores[row] = score if score is not None and score == score and abs(score) != float("inf") else None

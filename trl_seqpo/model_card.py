"""The model card (``README.md``) that `SeqPOTrainer` and `ALPOTrainer` write next to their checkpoints.

TRL's trainers call ``create_model_card`` when they save; its card (``trl/templates/lm_model_card.md``) shows a chat
``pipeline`` example and leaves ``base_model`` empty when the model was loaded from a local folder, which is how a
SeqPO or ALPO run starts (from its SFT warm-up). Ours keeps TRL's metadata and adds what a reader of a translator's
card needs: ``base_model`` (the name or path the policy was loaded from), the ``trl-seqpo`` tag, and a quick start
that loads the trained model and translates, through this package's own decoding (SeqPO: a simultaneous decode with
the training run's chunk size, languages and prompt format; ALPO: a numbered-line subtitle document).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

TAG = "trl-seqpo"
# a sentence for the quick start, by source language name or code (else the English one)
EXAMPLE_SOURCES = {
    "english": "Despite the pouring rain, the hikers kept going until they reached the top.",
    "en": "Despite the pouring rain, the hikers kept going until they reached the top.",
    "chinese": "尽管下着大雨，徒步者们还是坚持走到了山顶。",
    "zh": "尽管下着大雨，徒步者们还是坚持走到了山顶。",
    "german": "Trotz des strömenden Regens gingen die Wanderer weiter, bis sie den Gipfel erreichten.",
    "de": "Trotz des strömenden Regens gingen die Wanderer weiter, bis sie den Gipfel erreichten.",
}
EXAMPLE_SUBTITLES = ["I heard about your illness.", "I'm truly sorry, kid.", "Thank you.", "Get some rest."]

TEMPLATE = """\
---
{{ card_data }}
---

# Model Card for {{ model_name }}

This model is a fine-tuned version of {{ base_model_link }}, trained with trl-seqpo's {{ trainer_name }} trainer
(on top of [TRL](https://github.com/huggingface/trl)). {{ method }}

## Quick start

Install trl-seqpo from its repository (it is not on PyPI: `pip install -e .` in a checkout), then:

```python
{{ quick_start }}
```

## Training procedure

Trained with {{ trainer_name }}, from the paper {{ paper_link }}.

### Framework versions

- trl-seqpo: {{ package_version }}
- TRL: {{ trl_version }}
- Transformers: {{ transformers_version }}
- PyTorch: {{ pytorch_version }}

{% if citation %}
## Citations

```bibtex
{{ citation }}
```
{% endif %}"""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _literal(value: Any) -> str:
    """A Python literal, strings in double quotes (as in the rest of the quick start)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    return repr(value)


def example_source(language: str) -> str:
    """A sentence in ``language`` (a name such as ``"Chinese"`` or a code such as ``"zh"``) for a quick start.

    Examples:
        >>> example_source("German").startswith("Trotz")
        True
        >>> example_source("Klingon") == example_source("English")
        True
    """
    return EXAMPLE_SOURCES.get(language.strip().lower(), EXAMPLE_SOURCES["english"])


def seqpo_quick_start(model_id: str, rollout_settings: Mapping[str, Any]) -> str:
    """Python that loads ``model_id`` and translates one sentence simultaneously (`SimultaneousRollout`).

    ``rollout_settings`` are the training run's `SimultaneousRolloutConfig` fields (chunk size, languages, units,
    prompt format, step budgets, special tokens); decoding is greedy (``temperature=0.0``).
    """
    settings = {key: value for key, value in rollout_settings.items() if value is not None}
    settings.update(temperature=0.0, top_p=1.0, top_k=0)
    arguments = ",\n    ".join(f"{key}={_literal(value)}" for key, value in settings.items())
    source = example_source(str(settings.get("src_lang", "English")))
    return f"""\
from trl_seqpo.rollout.loading import load_backend
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig

loaded = load_backend({_literal(model_id)})  # the checkpoint and its tokenizer behind a transformers backend
config = SimultaneousRolloutConfig(
    {arguments},
)
rollout = SimultaneousRollout(loaded.backend, loaded.tokenizer, config)
[trajectory] = rollout.run([{_literal(source)}], num_generations=1)
print(trajectory.translation)   # the whole translation
print(trajectory.step_outputs)  # what the model wrote after each source chunk ("" = wait)
print(trajectory.delays)        # source units read before each target unit was written"""


def _translator_module() -> str:
    """The module that provides ``load_translator`` in this version (it moved to the line decoder's module)."""
    from trl_seqpo.subtitles import translate

    return translate.__name__ if hasattr(translate, "load_translator") else "trl_seqpo.rollout.linewise"


def alpo_quick_start(model_id: str) -> str:
    """Python that loads ``model_id`` and translates a subtitle document line by line (numbered lines)."""
    return f"""\
from trl_seqpo.subtitles.documents import Document
from {_translator_module()} import load_translator

# the languages of the documents the model was trained on
translate, _ = load_translator({_literal(model_id)}, src_lang="English", tgt_lang="Chinese")
document = Document("example", {_literal(EXAMPLE_SUBTITLES)})
[lines] = translate([document])  # one translated line per source line (empty for a line the model lost)
print("\\n".join(line or "" for line in lines))
# a whole subtitle file, keeping times and styles:
#   trl-seqpo subtitles translate show.en.srt -o show.zh.srt --model {model_id} --tgt-lang zh"""


def build_model_card(
    *,
    base_model: str | None,
    model_name: str,
    model_id: str,
    quick_start: str,
    trainer_name: str,
    method: str,
    paper: Mapping[str, str],
    tags: Iterable[str],
    dataset_name: str | None = None,
) -> Any:
    """A `huggingface_hub.ModelCard` with ``base_model``, the `TAG` tag and the given quick start.

    Args:
        base_model: The name or path the trained model was loaded from (``config._name_or_path``).
        model_name: The card's title (TRL passes the output folder's name or the Hub repo's).
        model_id: What the quick start loads: the Hub id when the run pushes there, else the output folder.
        quick_start: Python code (`seqpo_quick_start`, `alpo_quick_start`).
        trainer_name: ``"SeqPO"`` or ``"ALPO"``.
        method: One sentence on what the model does.
        paper: The trainer's ``_paper`` (``title``, ``citation``, optional ``url``).
        tags: The trainer's tags; `TAG` is added.
        dataset_name: Training data name, if known.
    """
    from huggingface_hub import ModelCard, ModelCardData

    title = paper.get("title", "")
    url = f"https://arxiv.org/abs/{paper['id']}" if paper.get("id") else paper.get("url", "")
    tags = list(dict.fromkeys(["generated_from_trainer", *tags, TAG]))
    card_data = ModelCardData(
        base_model=base_model, datasets=dataset_name, library_name="transformers", model_name=model_name, tags=tags
    )
    is_hub_id = base_model is not None and base_model.count("/") == 1 and not os.path.exists(base_model)
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        model_name=model_name,
        base_model_link=f"[{base_model}](https://huggingface.co/{base_model})" if is_hub_id else f"`{base_model}`",
        trainer_name=trainer_name,
        method=method,
        quick_start=quick_start,
        paper_link=f"[{title}]({url})" if url else f"*{title}*",
        citation=paper.get("citation", "").strip(),
        package_version=_version("trl-seqpo"),
        trl_version=_version("trl"),
        transformers_version=_version("transformers"),
        pytorch_version=_version("torch"),
    )


def write_model_card(
    trainer: Any,
    quick_start: str,
    method: str,
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> None:
    """Save `build_model_card`'s card as ``README.md`` in ``trainer.args.output_dir`` (on the main process only).

    The body of the trainers' ``create_model_card``, TRL's hook that runs when a checkpoint is saved.
    """
    if not trainer.is_world_process_zero():
        return
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    card = build_model_card(
        base_model=getattr(trainer.model.config, "_name_or_path", None) or None,
        model_name=model_name or os.path.basename(os.path.normpath(trainer.args.output_dir)),
        model_id=model_id(trainer),
        quick_start=quick_start,
        trainer_name=trainer._name,
        method=method,
        paper=trainer._paper,
        tags=[*tags, *trainer._tag_names],
        dataset_name=dataset_name,
    )
    os.makedirs(trainer.args.output_dir, exist_ok=True)
    card.save(os.path.join(trainer.args.output_dir, "README.md"))


def model_id(trainer: Any) -> str:
    """What the quick start loads: the Hub repo the run pushes to, else its output folder."""
    return getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id or trainer.args.output_dir

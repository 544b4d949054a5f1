"""Every path that builds a `SimultaneousRolloutConfig` reads its fields by name (`trl_seqpo.rollout.settings`).

Adding a field to `SimultaneousRolloutConfig` fails `test_every_rollout_field_has_a_test_value` until it gets a value
here; then each builder below either carries the field's value from its config (automatic when the config has a
field of that name) or lists it in its ``NOT_SET`` with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import types

import pytest

from trl_seqpo.rollout.settings import ALIASES, rollout_config_from, rollout_fields
from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig

# a valid value of every field other than its default
NON_DEFAULT = {
    "chunk_size": 5,
    "src_lang": "German",
    "tgt_lang": "French",
    "source_unit": "char",
    "target_unit": "char",
    "prompt_format": "paper",
    "max_new_tokens_per_step": 7,
    "max_steps_after_source": 4,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 5,
    "system_prompt": "Translate tersely.",
    "step_end_token": "<|step|>",
    "end_of_translation_token": "<|done|>",
}
NOT_IN_EVALUATION = {
    name: "not a setting of `evaluate simt` (SimTEvalConfig has no such field): the rollout's default"
    for name in ("top_k", "system_prompt", "step_end_token", "end_of_translation_token")
}
# builder -> the fields it does not take from its config, and why
NOT_SET = {
    "SeqPOConfig.rollout_config": {  # carried by name too, but SeqPOConfig refuses any other value
        "top_p": "on-policy sampling: SeqPOConfig refuses top_p != 1", "top_k": "likewise, top_k != 0",
    },
    "evaluate simt": NOT_IN_EVALUATION,
    "SimulEval agent": NOT_IN_EVALUATION,
    "serve simt": {
        name: "not a setting of `serve simt` (ServeConfig has no such field): the rollout's default"
        for name in ("top_k", "system_prompt", "step_end_token", "end_of_translation_token")
    },
    "demo evaluation": {
        "src_lang": "the synthetic pair's language", "tgt_lang": "the synthetic pair's language",
        "source_unit": "words", "target_unit": "words", "prompt_format": "chat", "temperature": "greedy",
        "top_p": "greedy", "top_k": "greedy", "system_prompt": "none", "step_end_token": "the default",
        "end_of_translation_token": "the default",
    },
}  # fmt: skip


def named_as(config_cls: type, values: dict) -> dict:
    """``values`` under the names ``config_cls`` gives them (own name, else an alias); fields it lacks dropped."""
    names = {field.name for field in dataclasses.fields(config_cls)}
    out = {}
    for name, value in values.items():
        found = [n for n in (name, *ALIASES.get(name, ())) if n in names]
        if found:
            out[found[0]] = value
    return out


def seqpo(values: dict, tmp_path) -> SimultaneousRolloutConfig:
    from trl_seqpo import SeqPOConfig

    cpu = {"use_cpu": True, "bf16": False, "report_to": "none"}
    return SeqPOConfig(output_dir=str(tmp_path), **cpu, **named_as(SeqPOConfig, values)).rollout_config()


def evaluate(values: dict, tmp_path) -> SimultaneousRolloutConfig:
    from trl_seqpo.evaluate.simt import OperatingPoint, SimTEvalConfig, rollout_config

    config = SimTEvalConfig(model="m", data="d.jsonl", output_dir=str(tmp_path), **named_as(SimTEvalConfig, values))
    return rollout_config(config, OperatingPoint("model", values["chunk_size"]))


def agent(values: dict, tmp_path) -> SimultaneousRolloutConfig:
    from trl_seqpo.evaluate.simt import rollout_config
    from trl_seqpo.integrations.simuleval import SeqPOAgent, operating_point

    parser = argparse.ArgumentParser()
    SeqPOAgent.add_args(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    argv = ["--model-path", "m"]
    for name, value in values.items():
        for option in (name, *ALIASES.get(name, ())):
            flag = "--" + option.replace("_", "-")
            if flag in flags:
                argv += [flag, str(value)]
                break
    return rollout_config(*operating_point(parser.parse_args(argv)))


def serve(values: dict, tmp_path) -> SimultaneousRolloutConfig:
    from trl_seqpo.cli.serve import engine_for
    from trl_seqpo.rollout.streaming import SessionSettings
    from trl_seqpo.serve.app import ServeConfig

    session = named_as(SessionSettings, values)
    # the server's own session defaults differ from the client's choice, which must win
    others = {"chunk_size": 2, "source_lang": "Czech", "target_lang": "Polish", "source_unit": "word"}
    server = {**named_as(ServeConfig, values), **{name: others[name] for name in session if name in others}}
    config = ServeConfig(model="m", **server)
    tokenizer = types.SimpleNamespace(eos_token_id=0, eos_token="</s>")  # enough for the paper format
    engine = engine_for(config, object(), tokenizer)
    # a client's session chooses the languages, chunk size and units; the server's config the rest
    return engine.rollout_for(SessionSettings(**session)).config


def demo(values: dict, tmp_path) -> SimultaneousRolloutConfig:
    from trl_seqpo.demo.common import DemoSettings
    from trl_seqpo.demo.seqpo import evaluation_rollout_config

    return evaluation_rollout_config(DemoSettings(**named_as(DemoSettings, values)))


BUILDERS = {
    "SeqPOConfig.rollout_config": seqpo,
    "evaluate simt": evaluate,
    "SimulEval agent": agent,
    "serve simt": serve,
    "demo evaluation": demo,
}


def test_every_rollout_field_has_a_test_value():
    defaults = SimultaneousRolloutConfig()
    names = [field.name for field in dataclasses.fields(SimultaneousRolloutConfig)]
    assert sorted(NON_DEFAULT) == sorted(names), "give the new rollout field a non-default value in NON_DEFAULT"
    assert all(NON_DEFAULT[name] != getattr(defaults, name) for name in names)
    assert set(BUILDERS) == set(NOT_SET)
    for skipped in NOT_SET.values():
        assert set(skipped) <= set(names) and all(reason.strip() for reason in skipped.values())


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_non_default_value_of_every_carried_field_reaches_the_rollout(builder, tmp_path):
    carried = {name: value for name, value in NON_DEFAULT.items() if name not in NOT_SET[builder]}
    built = BUILDERS[builder](carried, tmp_path)
    assert {name: getattr(built, name) for name in carried} == carried


def test_rollout_fields_skip_none_where_the_rollout_has_a_default():
    source = types.SimpleNamespace(top_k=None, source_lang=None, target_lang="German", source_unit=None, seed=3)
    assert rollout_fields(source) == {"tgt_lang": "German", "source_unit": None}
    config = rollout_config_from(source, SimultaneousRolloutConfig(src_lang="Czech"), chunk_size=2)
    assert (config.src_lang, config.tgt_lang, config.top_k, config.chunk_size) == ("Czech", "German", 0, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        rollout_config_from(types.SimpleNamespace(chunk_size=0))

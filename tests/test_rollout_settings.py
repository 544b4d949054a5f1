"""Every path that builds a `SimultaneousRolloutConfig` reads its fields by name (`trl_seqpo.rollout.settings`).

Adding a field to `SimultaneousRolloutConfig` fails `test_every_rollout_field_has_a_test_value` until it gets a value
here; then each builder below either carries the field's value from its config (automatic when the config has a
field of that name) or lists it in its ``NOT_SET`` with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

import pytest

from trl_seqpo.rollout.settings import (
    ALIASES,
    DECODING_FIELDS,
    FROM_MODEL,
    ROLLOUT_FILE,
    DecodingSettings,
    field_help,
    rollout_config_from,
    rollout_fields,
    save_rollout_settings,
    saved_rollout_settings,
)
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
# builder -> the fields it does not take from its config, and why
NOT_SET = {
    "SeqPOConfig.rollout_config": {  # carried by name too, but SeqPOConfig refuses any other value
        "top_p": "on-policy sampling: SeqPOConfig refuses top_p != 1", "top_k": "likewise, top_k != 0",
    },
    "evaluate simt": {},
    "SimulEval agent": {},
    "serve simt": {},
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


def evaluate(values: dict, tmp_path, model: str = "m") -> SimultaneousRolloutConfig:
    from trl_seqpo.evaluate.simt import OperatingPoint, SimTEvalConfig, rollout_config

    config = SimTEvalConfig(model=model, data="d.jsonl", output_dir=str(tmp_path), **named_as(SimTEvalConfig, values))
    return rollout_config(config, OperatingPoint("model", values.get("chunk_size", 3)))


def agent(values: dict, tmp_path, model: str = "m") -> SimultaneousRolloutConfig:
    from trl_seqpo.evaluate.simt import rollout_config
    from trl_seqpo.integrations.simuleval import SeqPOAgent, operating_point

    parser = argparse.ArgumentParser()
    SeqPOAgent.add_args(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    argv = ["--model-path", model]
    for name, value in values.items():
        for option in (name, *ALIASES.get(name, ())):
            flag = "--" + option.replace("_", "-")
            if flag in flags:
                argv += [flag, str(value)]
                break
    return rollout_config(*operating_point(parser.parse_args(argv)))


def serve(values: dict, tmp_path, model: str = "m") -> SimultaneousRolloutConfig:
    from trl_seqpo.cli.serve import engine_for
    from trl_seqpo.rollout.streaming import SessionSettings
    from trl_seqpo.serve.app import ServeConfig

    session = named_as(SessionSettings, values)
    # the server's own session defaults differ from the client's choice, which must win
    others = {"chunk_size": 2, "source_lang": "Czech", "target_lang": "Polish", "source_unit": "word"}
    server = {**named_as(ServeConfig, values), **{name: others[name] for name in session if name in others}}
    config = ServeConfig(model=model, **server)
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


def test_evaluation_and_serve_inherit_the_decoding_fields_without_declaring_them_again():
    from trl_seqpo.evaluate.simt import SimTEvalConfig
    from trl_seqpo.serve.app import ServeConfig

    shared = {field.name: field for field in dataclasses.fields(DecodingSettings)}
    assert tuple(shared) == DECODING_FIELDS and set(FROM_MODEL) <= set(DECODING_FIELDS)
    hints, types_here = typing.get_type_hints(SimultaneousRolloutConfig), typing.get_type_hints(DecodingSettings)
    for name, field in shared.items():  # type and help from the rollout's own declaration
        assert types_here[name] == (hints[name] | None if name in FROM_MODEL else hints[name])
        assert field.metadata["help"].startswith(field_help(name)) and len(field_help(name)) > 10
    for config_cls in (SimTEvalConfig, ServeConfig):
        fields = {field.name: field for field in dataclasses.fields(config_cls)}
        assert all(fields[name] is shared[name] for name in DECODING_FIELDS), f"{config_cls.__name__} re-declares one"
    assert field_help("top_k") == "top-k sampling (0 disables)"


SAVED = {name: NON_DEFAULT[name] for name in FROM_MODEL}


@pytest.mark.parametrize("builder", ["evaluate simt", "SimulEval agent", "serve simt"])
def test_a_model_is_decoded_with_the_rollout_settings_it_saved_unless_told_otherwise(builder, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    save_rollout_settings(SimultaneousRolloutConfig(**SAVED, temperature=0.5, chunk_size=7), model)
    built = BUILDERS[builder]({}, tmp_path, model=str(model))
    assert {name: getattr(built, name) for name in SAVED} == SAVED
    # sampling and the operating point stay the evaluation's own: greedy, chunks of 3
    assert (built.temperature, built.chunk_size) == (0.0, 3)
    given = {"max_new_tokens_per_step": 9, "system_prompt": "Be brief."}
    built = BUILDERS[builder](given, tmp_path, model=str(model))
    assert {name: getattr(built, name) for name in SAVED} == {**SAVED, **given}


def test_without_a_saved_rollout_the_inference_defaults_apply(tmp_path):
    built = evaluate({}, tmp_path, model=str(tmp_path))
    assert (built.prompt_format, built.max_new_tokens_per_step, built.max_steps_after_source) == ("chat", 60, 2)
    assert (built.system_prompt, built.step_end_token, built.temperature) == (None, None, 0.0)


def test_a_malformed_saved_rollout_names_the_file(tmp_path):
    from trl_seqpo.errors import UserInputError

    (tmp_path / ROLLOUT_FILE).write_text('{"chunk_size": 2, "prompt": "x"}', encoding="utf-8")
    with pytest.raises(UserInputError, match=rf"--model .*{ROLLOUT_FILE}: prompt is not a SimultaneousRolloutConfig"):
        evaluate({}, tmp_path, model=str(tmp_path))
    (tmp_path / ROLLOUT_FILE).write_text("[1,", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{ROLLOUT_FILE}: not readable as JSON"):
        saved_rollout_settings(tmp_path)


def test_rollout_fields_skip_none_where_the_rollout_has_a_default():
    source = types.SimpleNamespace(top_k=None, source_lang=None, target_lang="German", source_unit=None, seed=3)
    assert rollout_fields(source) == {"tgt_lang": "German", "source_unit": None}
    config = rollout_config_from(source, SimultaneousRolloutConfig(src_lang="Czech"), chunk_size=2)
    assert (config.src_lang, config.tgt_lang, config.top_k, config.chunk_size) == ("Czech", "German", 0, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        rollout_config_from(types.SimpleNamespace(chunk_size=0))

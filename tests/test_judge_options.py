"""The ``--judge-*`` flags come from `JudgeConfig` (`trl_seqpo.cli.judge_options`), the same in every command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

import pytest

from trl_seqpo.cli import reference
from trl_seqpo.cli.alpo import JUDGE_SET_BY_SAMPLE
from trl_seqpo.cli.evaluate import JUDGE_SET_BY_EVALUATE, JUDGE_SET_BY_EVALUATE_SUBTITLES, _judge_config
from trl_seqpo.cli.judge_options import NEVER_A_FLAG, judge_config_from_args
from trl_seqpo.cli.main import main
from trl_seqpo.cli.options import config_from_args
from trl_seqpo.judge.config import JudgeConfig, judge_option

URL = "http://judge.invalid:8000/v1"
# command -> (the arguments it needs besides the judge's, the JudgeConfig fields it sets itself)
COMMANDS = {
    "alpo sample": (["docs.jsonl", "-o", "c.jsonl", "--model", "m"], JUDGE_SET_BY_SAMPLE),
    "evaluate simt": (["--model", "m", "--data", "d.jsonl", "--output-dir", "out"], JUDGE_SET_BY_EVALUATE),
    "evaluate subtitles": (
        ["--model", "m", "--documents", "d.jsonl", "--output-dir", "out"],
        JUDGE_SET_BY_EVALUATE_SUBTITLES,
    ),
}
# what each command deliberately sets other than JudgeConfig's default
COMMAND_DEFAULTS = {"evaluate simt": {"aspect": "accuracy"}, "evaluate subtitles": {"aspect": "accuracy"}}
# the fields a command sets itself, as it sets them (alpo sample: in `build_judge`, see the test below)
COMMAND_SET = {
    "evaluate simt": {"num_shuffles": 1, "seed": 0, "source_language": "English", "target_language": "Chinese",
                      "cache_path": "out/judge_cache.sqlite"},
    "evaluate subtitles": {"num_shuffles": 1, "seed": 0, "source_language": "English", "target_language": "Chinese",
                           "cache_path": "out/judge_cache.sqlite"},
}  # fmt: skip


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    found = {sub.prog.removeprefix("trl-seqpo "): sub for sub in reference._commands(reference.full_parser())}
    return {name: found[name] for name in COMMANDS}


def judge_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions if any(o.startswith("--judge-") for o in action.option_strings)}


def built_judge(command: str, args: argparse.Namespace) -> JudgeConfig:
    """The `JudgeConfig` the command builds from its flags (what reaches the judge)."""
    if command == "alpo sample":
        from trl_seqpo.alpo.sampling import AlpoSampleConfig

        return config_from_args(AlpoSampleConfig, args, judge=judge_config_from_args(args)).judge
    from trl_seqpo.evaluate.simt import SimTEvalConfig
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig

    if command == "evaluate simt":
        return _judge_config(args, SimTEvalConfig)
    return _judge_config(args, SubtitleEvalConfig, aspect="accuracy")  # as `run_subtitles` (each aspect is scored)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_judge_field_is_a_flag_or_set_by_the_command_with_a_reason(parsers, command):
    set_by_command = COMMANDS[command][1]
    names = {field.name for field in dataclasses.fields(JudgeConfig)}
    assert set(set_by_command) <= names and all(reason.strip() for reason in set_by_command.values())
    expected = {judge_option(name) for name in names - set(NEVER_A_FLAG) - set(set_by_command)}
    own = {"judge_min_candidates", "judge_min_votes"} if command == "alpo sample" else set()
    own |= {"judge_aspects"} if command == "evaluate subtitles" else set()  # sampler / evaluator settings
    assert judge_dests(parsers[command]) == expected | own
    flags = {option for action in parsers[command]._actions for option in action.option_strings}
    assert "--judge-api-key" not in flags and "--judge-seed" in flags and "--no-judge-seed" in flags


@pytest.mark.parametrize("command", COMMANDS)
def test_no_judge_flags_give_the_dataclass_defaults(parsers, command, monkeypatch):
    for variable in ("TRL_SEQPO_JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    extra, set_by_command = COMMANDS[command]
    built = built_judge(command, parsers[command].parse_args([*extra, "--judge-base-url", URL]))
    expected = {**dataclasses.asdict(JudgeConfig(base_url=URL)), **COMMAND_DEFAULTS.get(command, {})}
    got = dataclasses.asdict(built)
    assert {k: got[k] for k in COMMAND_SET.get(command, {})} == COMMAND_SET.get(command, {})
    assert {k: v for k, v in got.items() if k not in set_by_command} == {
        k: v for k, v in expected.items() if k not in set_by_command
    }


def _other_value(name: str, annotation, default, choices):
    """A valid value of the field other than its default, and its command-line spelling."""
    annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    if choices:
        value = next(choice for choice in choices if choice != default)
        return value, str(value)
    if annotation is bool:
        return (not default), None
    if annotation is dict:
        return {"top_k": 2}, json.dumps({"top_k": 2})
    if annotation is int:
        value = (default or 1) + 1
        return value, str(value)
    if annotation is float:
        value = default / 2 if name == "min_distinct_ratio" else default + 0.5
        return value, str(value)
    value = "http://other.invalid/v1" if name == "base_url" else f"{name}-value"
    return value, value


@pytest.mark.parametrize("command", COMMANDS)
def test_every_judge_flag_reaches_the_judge_config(parsers, command, tmp_path, monkeypatch):
    extra, set_by_command = COMMANDS[command]
    hints = typing.get_type_hints(JudgeConfig)
    fields = {field.name: field for field in dataclasses.fields(JudgeConfig)}
    argv, wanted = [*extra], {}
    by_dest = {judge_option(name): name for name in fields if name not in set_by_command}
    for dest in sorted(judge_dests(parsers[command]) & set(by_dest)):
        name = by_dest[dest]
        field = fields[name]
        value, text = _other_value(name, hints[name], field.default, field.metadata.get("choices"))
        if name == "api_key_file":
            (tmp_path / "key.txt").write_text("k\n")
            value = text = str(tmp_path / "key.txt")
        if name == "api_key_env":
            monkeypatch.setenv("api_key_env-value", "k")
        flag = "--" + dest.replace("_", "-")
        argv += [flag if value else "--no-" + flag[2:]] if text is None else [flag, text]
        wanted[name] = value
    assert len(wanted) >= 14
    built = built_judge(command, parsers[command].parse_args(argv))
    assert {name: getattr(built, name) for name in wanted} == wanted


def test_sample_run_sets_the_judge_seed_languages_and_cache(tmp_path):
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, build_judge

    config = AlpoSampleConfig(
        output=str(tmp_path / "c.jsonl"), source_lang="en", target_lang="zh", seed=5,
        judge=JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m", num_shuffles=3, send_seed=False),
    )  # fmt: skip
    judge = build_judge(config).config
    assert (judge.model, judge.num_shuffles, judge.send_seed, judge.seed) == ("m", 3, False, 5)
    assert (judge.source_language, judge.target_language) == ("English", "Chinese")
    assert judge.cache_path == str(tmp_path / "c.judge-cache.sqlite")


@pytest.mark.parametrize(
    ("judge_args", "message"),
    [
        (["--judge-timeout", "0"], "--judge-timeout must be > 0 seconds, got 0.0"),
        (["--judge-max-concurrency", "0"], "--judge-max-concurrency must be >= 1"),
        (["--judge-extra-body", "{not json"], "--judge-extra-body is not valid JSON"),
        (["--judge-base-url", "ftp://x"], "--judge-base-url must be an http(s) URL"),
        (["--judge-api-key-file", "/nonexistent/key"], "/nonexistent/key"),
    ],
)
def test_bad_judge_values_exit_2_naming_the_flag_in_both_commands(tmp_path, capsys, judge_args, message):
    base = ["--judge-base-url", URL] if "--judge-base-url" not in judge_args else []
    for argv in (
        ["alpo", "sample", str(tmp_path / "d.jsonl"), "-o", str(tmp_path / "c.jsonl"), "--model", str(tmp_path)],
        ["evaluate", "simt", "--model", str(tmp_path), "--data", "d", "--output-dir", str(tmp_path / "out")],
    ):
        assert main([*argv, *base, *judge_args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written


def test_a_run_record_of_the_flat_judge_options_still_resumes(tmp_path):
    """Records written before `AlpoSampleConfig.judge` (extra_body as its JSON text) resume; a change is named."""
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, _check_settings, _settings
    from trl_seqpo.errors import UserInputError

    body = {"chat_template_kwargs": {"enable_thinking": False}}
    config = AlpoSampleConfig(output=str(tmp_path / "c.jsonl"), judge=JudgeConfig(extra_body=body, send_seed=False))
    current = _settings(config, "abc")
    assert current["settings"]["judge_extra_body"] == body and current["settings"]["judge_seed"] is False
    old = json.loads(json.dumps(current))
    old["settings"]["judge_extra_body"] = '{"chat_template_kwargs": {"enable_thinking": false}}'
    record = tmp_path / "c.run.json"
    record.write_text(json.dumps(old))
    _check_settings(record, current, tmp_path / "c.jsonl")
    old["settings"]["judge_model"] = "another"
    record.write_text(json.dumps(old))
    with pytest.raises(UserInputError, match="--judge-model is 'Qwen/Qwen3-14B' but .* written with 'another'"):
        _check_settings(record, current, tmp_path / "c.jsonl")

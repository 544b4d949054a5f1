"""Misuse and chaos for every command that writes (issue 23): the one output guard, secrets, resume checks, bad input.

Each case asserts the exit code, the one-line message and that every file is byte-identical afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pickle
from pathlib import Path

import pytest

from trl_seqpo.cli.main import COMMANDS, main
from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import ResumableJsonl, atomic_write
from trl_seqpo.outputs import check_output, claim_output, file_fingerprint, owned_output, record_path

SRT_EN = "1\n00:00:01,000 --> 00:00:02,000\nHello there.\n\n2\n00:00:03,000 --> 00:00:04,000\nGoodbye.\n"
SRT_FR = SRT_EN.replace("Hello there.", "Salut.").replace("Goodbye.", "Au revoir.")
SRT_BILINGUAL = (
    "1\n00:00:01,000 --> 00:00:02,000\n我们走吧\nLet's go.\n\n2\n00:00:03,000 --> 00:00:04,000\n等等\nWait!\n\n"
    "3\n00:00:05,000 --> 00:00:06,000\n你好\nHello.\n"
)
DEAD_URL = "http://127.0.0.1:9/v1"
KEYS_RECEIVED: list[str] = []


@pytest.fixture
def files(tmp_path):
    """Inputs of every command, a stranger's file, and a snapshot helper."""
    (tmp_path / "film.en.srt").write_text(SRT_EN)
    (tmp_path / "film.fr.srt").write_text(SRT_FR)
    (tmp_path / "ep.zh.srt").write_text(SRT_BILINGUAL)
    (tmp_path / "pairs.jsonl").write_text('{"source": "I know", "reference": "je sais"}\n')
    (tmp_path / "notes.txt").write_bytes(b"my notes\nsecond line\nno newline at the end")
    (tmp_path / "notes.png").write_bytes(b"\x89PNG my drawing")
    (tmp_path / "aligned.jsonl").write_text('{"source": "Hello there.", "target": "Salut."}\n')
    (tmp_path / "candidates.jsonl").write_text('{"doc_id": "d", "unit_index": 0}\n')
    (tmp_path / "model").mkdir()
    from trl_seqpo.subtitles.documents import Document

    docs = [Document("d0", ["Hello there."], ["Salut."])]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d.to_dict()) + "\n" for d in docs))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text('{"runs": [{"label": "a", "metrics": {"BLEU": 1, "AL": 2}}]}')
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_refused(argv: list[str], capsys, root: Path, expected: str) -> None:
    """Run `argv`: exit 2, one line naming `expected`, no file created, changed or removed under `root`."""
    before = snapshot(root)
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trl-seqpo: error:"), err
    assert expected in err[0], err
    assert snapshot(root) == before, argv


# One misuse per writing action: its output is a stranger's existing file (a file output) or a file where a folder
# is expected. `test_every_writing_action_is_listed` fails for a new action with an output option missing here.
def _misuses(d: Path) -> dict[str, tuple[list, str]]:
    foreign = d / "notes.txt"
    not_ours = "exists and was not written by"
    return {
        "subtitles align": (["subtitles", "align", d / "film.en.srt", d / "film.fr.srt", "-o", foreign], not_ours),
        "subtitles split": (["subtitles", "split", d / "ep.zh.srt", "--langs", "zh,en", "-o", foreign], "is a file"),
        "subtitles translate": (
            [
                "subtitles",
                "translate",
                d / "film.en.srt",
                "-o",
                d / "x.srt",
                "--model",
                d / "model",
                "--tgt-lang",
                "zh",
            ],
            not_ours,
        ),  # fmt: skip
        "subtitles documents": (["subtitles", "documents", d / "aligned.jsonl", "-o", foreign], not_ours),
        "alpo sample": (
            ["alpo", "sample", d / "docs.jsonl", "-o", foreign, "--model", d / "model", "--judge-base-url", DEAD_URL],
            "is not a resumable output",
        ),
        "alpo pairs": (["alpo", "pairs", d / "candidates.jsonl", "-o", foreign], not_ours),
        "simt align": (
            ["simt", "align", d / "pairs.jsonl", "-o", foreign, "--model", "m", "--base-url", DEAD_URL],
            not_ours,
        ),  # fmt: skip
        "evaluate simt": (
            ["evaluate", "simt", "--model", d / "model", "--data", d / "pairs.jsonl", "--output-dir", foreign],
            "is a file",
        ),  # fmt: skip
        "evaluate subtitles": (
            [
                "evaluate",
                "subtitles",
                "--model",
                d / "model",
                "--documents",
                d / "docs.jsonl",
                "--output-dir",
                foreign,
            ],
            "is a file",
        ),  # fmt: skip
        "plot": (["plot", d / "results", "-o", foreign.with_suffix(".png")], not_ours),
        "demo": (["demo", "--output-dir", foreign], "is a file"),
    }


def _writing_actions() -> set[str]:
    """Every registered command or action with an output option (``-o/--output``, ``--output-dir``)."""
    found = set()
    for name, (_, target) in COMMANDS.items():
        module_name, func_name = target.split(":")
        parser = argparse.ArgumentParser()
        getattr(importlib.import_module(module_name), func_name)(parser.add_subparsers())
        stack = [(name, parser._subparsers._group_actions[0].choices[name])] if parser._subparsers else []
        while stack:
            path, sub = stack.pop()
            dests = {action.dest for action in sub._actions}
            if dests & {"output", "output_dir"}:
                found.add(path)
            for action in sub._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack.extend((f"{path} {child}", parser) for child, parser in action.choices.items())
    return found


def test_every_writing_action_is_listed(tmp_path):
    # (`train` passes its arguments on to a recipe, whose --output_dir the recipe checks)
    assert _writing_actions() == set(_misuses(tmp_path))


@pytest.mark.parametrize("action", sorted(_misuses(Path("."))))
def test_an_existing_file_of_someone_else_is_never_replaced(action, files, capsys):
    argv, expected = _misuses(files)[action]
    (files / "x.srt").write_text("a subtitle file I made\n")
    run_refused(argv, capsys, files, expected)


@pytest.mark.parametrize(
    "case",
    ["simt output", "simt cache notes", "simt cache input", "translate", "split overwrite", "align link", "documents"],
)
def test_an_output_that_is_an_input_is_refused(case, files, capsys):
    d = files
    (d / "link.srt").symlink_to(d / "film.en.srt")
    simt = ["simt", "align", d / "pairs.jsonl", "--model", "m", "--base-url", DEAD_URL]
    argv, expected = {
        "simt output": ([*simt, "-o", d / "pairs.jsonl"], "is also an input"),
        "simt cache notes": ([*simt, "-o", d / "new.jsonl", "--cache", d / "notes.txt"], "not an aligner cache"),
        "simt cache input": ([*simt, "-o", d / "new.jsonl", "--cache", d / "pairs.jsonl"], "is also an input"),
        "translate": (
            [
                "subtitles",
                "translate",
                d / "film.en.srt",
                "-o",
                d / "film.en.srt",
                "--model",
                d / "model",
                "--tgt-lang",
                "zh",
                "--overwrite",
            ],
            "is also an input",
        ),  # fmt: skip
        "split overwrite": (
            ["subtitles", "split", d / "ep.zh.srt", "--langs", "zh,en", "-o", d, "--overwrite"],
            "is also an input",
        ),  # fmt: skip
        "align link": (
            ["subtitles", "align", d / "film.en.srt", d / "film.fr.srt", "-o", d / "link.srt", "--overwrite"],
            "is also an input",
        ),  # fmt: skip
        "documents": (
            ["subtitles", "documents", d / "aligned.jsonl", "-o", d / "aligned.jsonl", "--overwrite"],
            "is also an input",
        ),  # fmt: skip
    }[case]
    run_refused(argv, capsys, d, expected)


def test_a_command_replaces_its_own_output_but_not_a_file_put_there_later(files, capsys):
    out = files / "out.jsonl"
    align = ["subtitles", "align", str(files / "film.en.srt"), str(files / "film.fr.srt"), "-o", str(out)]
    assert main(align) == 0 and main(align) == 0  # its own output: replaced without --overwrite
    out.unlink()
    out.write_text("my own file now\n")
    run_refused(align, capsys, files, "exists and was not written by `trl-seqpo subtitles align`")
    assert main([*align, "--overwrite"]) == 0 and "Salut." in out.read_text()


@pytest.mark.parametrize("case", ["under a file", "proc", "folder output"])
def test_unwritable_outputs_exit_2_naming_the_path(case, files, capsys):
    align = ["subtitles", "align", files / "film.en.srt", files / "film.fr.srt", "-o"]
    output, expected = {
        "under a file": (files / "notes.txt" / "out.jsonl", "notes.txt is a file"),
        "proc": (Path("/proc/trl-seqpo-test.jsonl"), "not a writable folder"),
        "folder output": (files / "model", "is a folder"),
    }[case]
    run_refused([*align, output], capsys, files, str(output))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(files, capsys):
    (files / "ro").mkdir(mode=0o500)
    align = ["subtitles", "align", files / "film.en.srt", files / "film.fr.srt", "-o", files / "ro" / "a.jsonl"]
    run_refused(align, capsys, files, "not a writable folder")


def test_an_io_error_while_writing_is_one_line(files, capsys, monkeypatch):
    import trl_seqpo.cli.subtitles as cli

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(files / "out.jsonl"))

    monkeypatch.setattr(cli, "atomic_output", full_disk)
    align = ["subtitles", "align", files / "film.en.srt", files / "film.fr.srt", "-o", files / "out.jsonl"]
    before = {k: v for k, v in snapshot(files).items()}
    assert main([str(a) for a in align]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"trl-seqpo: error: {files / 'out.jsonl'}: No space left on device"]
    assert not (files / "out.jsonl").exists() and all(snapshot(files)[k] == v for k, v in before.items())


def test_atomic_writes_keep_the_umask_mode_and_remove_stale_temporaries(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    dead = tmp_path / ".a.txt.999999999.abcd1234.tmp"  # a killed writer's (no such process)
    alive = tmp_path / f".a.txt.{os.getppid()}.abcd1234.tmp"  # a running writer's
    dead.write_text("half")
    alive.write_text("half")
    atomic_write(tmp_path / "a.txt", "y")
    assert not dead.exists() and alive.exists() and (tmp_path / "a.txt").read_text() == "y"


def test_a_resumable_store_never_cuts_a_file_it_cannot_read(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\nline two\ncut")
    with pytest.raises(UserInputError, match="notes.txt:1: not valid JSON"):
        ResumableJsonl(notes, resume=True)
    assert notes.read_bytes() == b"my notes\nline two\ncut"
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "0", "t": "a"}\n{"id": "1", "t": "b"}\n{"id": "0", "t": "a"}\n{"id": "2", "t')
    store = ResumableJsonl(rows, resume=True, unique=True)
    assert store.dropped_repeats == 1 and store.dropped_partial_line
    assert rows.read_text() == '{"id": "0", "t": "a"}\n{"id": "1", "t": "b"}\n'


def _translate_settings(d: Path, **changes) -> dict:
    settings = {"input": file_fingerprint(d / "film.en.srt"), "model": str((d / "model").resolve()),
                "src_lang": "en", "tgt_lang": "zh", "lines": 35, "context": 2}  # fmt: skip
    return {**settings, **changes}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"tgt_lang": "fr"}, "tgt_lang: 'fr' -> 'zh'"),
        ({"model": "/elsewhere/model"}, "model: '/elsewhere/model'"),
        ({"input": "9 bytes, sha256 0000000000000000"}, "input: '9 bytes"),
        (None, "was not written by `trl-seqpo subtitles translate (partial)`"),
    ],
)
def test_translate_resumes_only_its_own_partial_file(change, expected, files, capsys):
    partial = files / "out.srt.partial.jsonl"
    partial.write_text('{"id": "film-0000", "lines": ["x", "y"]}\n')
    if change is not None:
        claim_output(partial, command="subtitles translate (partial)", settings=_translate_settings(files, **change))
    argv = ["subtitles", "translate", files / "film.en.srt", "-o", files / "out.srt", "--model", files / "model",
            "--tgt-lang", "zh"]  # fmt: skip
    run_refused(argv, capsys, files, expected)


@pytest.mark.parametrize("device", ["cuda", "cdua"])
def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(device, files, capsys):
    pytest.importorskip("torch").cuda.is_available() and pytest.skip("a GPU is visible")
    argv = ["evaluate", "subtitles", "--model", files / "model", "--documents", files / "docs.jsonl",
            "--output-dir", files / "eval", "--device", device]  # fmt: skip
    run_refused(argv, capsys, files, f"device {device!r}")


def test_plot_with_string_values_is_one_line(files, capsys):
    (files / "results" / "results.json").write_text('{"runs": [{"label": "a", "metrics": {"BLEU": "high", "AL": 2}}]}')
    run_refused(["plot", files / "results", "-o", files / "p.png", "--y", "BLEU"], capsys, files, "must be numbers")


def test_check_output_alone():
    with pytest.raises(UserInputError, match="is also an input"):
        check_output("a.jsonl", command="x", inputs=["./a.jsonl"])


def test_owned_output_seals_the_finished_file(tmp_path):
    out = tmp_path / "o.txt"
    with owned_output(out, command="x"):
        out.write_text("mine")
    record = json.loads(record_path(out).read_text())
    assert record["command"] == "x" and record["sealed"]["size"] == 4
    assert check_output(out, command="x") == out
    with pytest.raises(UserInputError, match="not written by `trl-seqpo y`"):
        check_output(out, command="y")


# --- secrets --------------------------------------------------------------------------------------------------


def test_secret_is_masked_everywhere_but_reveal():
    import copy

    from trl_seqpo.secret import Secret, hide_secrets, mask_credentials

    key = Secret("sk-SEKRIT")
    shown = [repr(key), str(key), f"{key}", str(pickle.dumps(key)), repr(hide_secrets({"api_key": "sk-SEKRIT"}))]
    assert not any("SEKRIT" in text for text in shown)
    assert copy.deepcopy(key).reveal() == "sk-SEKRIT" and pickle.loads(pickle.dumps(key)).reveal() == ""
    assert (
        mask_credentials("see http://user:pw@host:1/v1 and https://h/x") == "see http://***@host:1/v1 and https://h/x"
    )


def test_seqpo_config_keeps_keys_out_of_repr_pickle_and_dumps(tmp_path):
    from tiny_models import seqpo_config

    kwargs = {"api_key": "SEKRIT-K", "base_url": "http://user:pw@127.0.0.1:1/v1", "model": "judge"}
    config = seqpo_config(tmp_path, quality_reward_kwargs=kwargs)
    dumped = [repr(config), str(config), str(pickle.dumps(config)), json.dumps(config.to_dict()),
              config.to_json_string()]  # fmt: skip
    assert not any("SEKRIT-K" in text or "user:pw" in text for text in dumped)
    from trl_seqpo.secret import reveal

    assert {k: reveal(v) for k, v in config.quality_reward_kwargs.items()} == kwargs  # the reward still gets it


@pytest.mark.parametrize(
    "config, field",
    [
        ("seqpo", {"beta": -0.1}), ("seqpo", {"num_generations": 0}), ("seqpo", {"src_lang": ""}),
        ("judge", {"num_shuffles": 0}), ("judge", {"timeout": 0}), ("aligner", {"timeout": 0}),
        ("aligner", {"target_lang": " "}), ("aligner", {"max_retries": -1}), ("pairs", {"min_score_spread": -1}),
        ("pairs", {"min_candidates": -1}), ("alpo", {"beta": 0}),
    ],
)  # fmt: skip
def test_configs_refuse_out_of_range_values_naming_the_field(config, field, tmp_path):
    name = next(iter(field))
    with pytest.raises(ValueError, match=name):
        if config == "seqpo":
            from tiny_models import seqpo_config

            seqpo_config(tmp_path, **field)
        elif config == "judge":
            from trl_seqpo.judge.config import JudgeConfig

            JudgeConfig(**field)
        elif config == "aligner":
            from trl_seqpo.seqpo.aligner import AlignerConfig

            AlignerConfig(model="m", **field)
        elif config == "pairs":
            from trl_seqpo.alpo.pairs import PairSettings

            PairSettings(**field)
        else:
            from trl_seqpo.alpo.config import ALPOConfig

            ALPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **field)


def test_aligner_sends_the_openai_key_only_to_openai_and_reads_env_or_file(tmp_path, monkeypatch):
    from trl_seqpo.seqpo.aligner import AlignerConfig, LLMAligner

    monkeypatch.setenv("OPENAI_API_KEY", "sk-OPENAI")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert LLMAligner(AlignerConfig(model="m", base_url="http://127.0.0.1:9/v1"))._client.api_key == "EMPTY"
    assert LLMAligner(AlignerConfig(model="m"))._client.api_key == "sk-OPENAI"  # OpenAI's own API
    monkeypatch.setenv("MY_KEY", "sk-MINE")
    assert LLMAligner(AlignerConfig(model="m", base_url=DEAD_URL, api_key_env="MY_KEY"))._client.api_key == "sk-MINE"
    (tmp_path / "key").write_text("sk-FILE\n")
    config = AlignerConfig(model="m", base_url=DEAD_URL, api_key_file=str(tmp_path / "key"), api_key="sk-FLAG")
    assert "sk-FLAG" not in repr(config) and LLMAligner(config)._client.api_key == "sk-FLAG"
    assert LLMAligner(AlignerConfig(model="m", api_key_file=str(tmp_path / "key")))._client.api_key == "sk-FILE"


def test_cli_error_messages_mask_url_credentials(capsys, monkeypatch):
    import trl_seqpo.cli.plot as plot

    def failing(args):
        """draw quality-latency curves"""
        raise UserInputError("the endpoint http://user:pw@127.0.0.1:9/v1 refused\nthe request")

    monkeypatch.setattr(plot, "run", failing)
    assert main(["plot", "r.json", "-o", "p.png"]) == 2
    assert capsys.readouterr().err == "trl-seqpo: error: the endpoint http://***@127.0.0.1:9/v1 refused the request\n"


def _grep(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_evaluate_writes_no_url_password(tmp_path, monkeypatch):
    from test_evaluate_subtitles import ScriptedBackend, write_documents
    from tiny_models import line_writing_model
    from transformers import AutoTokenizer

    from trl_seqpo.rollout import loading
    from trl_seqpo.synthetic.local_judge import serve

    model_dir = line_writing_model(tmp_path / "model")
    write_documents(tmp_path / "docs.jsonl", [2])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    backend = ScriptedBackend(tokenizer, {"Translate": " lo hundo\n"})
    monkeypatch.setattr(loading, "load_backend", lambda *args, **kwargs: loading.LoadedModel(backend, tokenizer))
    with serve() as server:
        url = server.base_url.replace("http://", "http://user:pw@")
        code = main(["evaluate", "subtitles", "--model", str(model_dir), "--documents", str(tmp_path / "docs.jsonl"),
                     "--output-dir", str(tmp_path / "out"), "--source-lang", "en", "--target-lang", "de",
                     "--judge-base-url", url, "--judge-aspects", "accuracy", "--no-progress"])  # fmt: skip
    assert code == 0
    assert "127.0.0.1" in (tmp_path / "out" / "results.md").read_text()  # the endpoint is named ...
    assert _grep(tmp_path / "out", b"pw") == []  # ... without its password


@pytest.mark.slow
def test_one_seqpo_step_leaves_no_key_in_the_output_folder(tmp_path):
    from tiny_models import save_seqpo_tiny_model, seqpo_config, seqpo_train_rows

    from trl_seqpo import SeqPOTrainer
    from trl_seqpo.rewards.quality import make_chrf_reward
    from trl_seqpo.rewards.registry import register_reward

    with contextlib.suppress(ValueError):  # registered once per process

        @register_reward("test-keyed-chrf", factory=True)
        def keyed_chrf(api_key: str):
            KEYS_RECEIVED.append(api_key)
            return make_chrf_reward()

    key = "sk-TEST-4f1c9e2a"
    model, tokenizer = save_seqpo_tiny_model(tmp_path / "tiny")
    config = seqpo_config(
        tmp_path, max_steps=1, save_strategy="steps", save_steps=1, gradient_checkpointing=False,
        quality_reward="test-keyed-chrf", quality_reward_kwargs={"api_key": key},
    )  # fmt: skip
    trainer = SeqPOTrainer(model=model, args=config, train_dataset=seqpo_train_rows(), processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    assert KEYS_RECEIVED[-1] == key  # the reward got the key itself
    out = Path(config.output_dir)
    assert (out / "training_args.bin").exists() and list(out.glob("checkpoint-*"))
    assert _grep(out, key.encode()) == []


@pytest.mark.parametrize(
    "row, message", [({"source": " "}, "row 1: the source"), ({"reference": None}, "row 1: the reference")]
)
def test_seqpo_dataset_rows_are_checked_before_training(row, message, tmp_path):
    from datasets import Dataset
    from tiny_models import seqpo_config

    from trl_seqpo import SeqPOTrainer

    rows = [{"source": "a b", "reference": "x y"}, {"source": "c d", "reference": "z", **row}]
    with pytest.raises(ValueError, match=message):
        SeqPOTrainer(model="not-loaded", args=seqpo_config(tmp_path), train_dataset=Dataset.from_list(rows))


# --- resume checks ----------------------------------------------------------------------------------------------


def test_evaluate_resume_refuses_an_edited_data_file_and_drops_repeated_rows(tmp_path, monkeypatch, capsys):
    from test_evaluate_subtitles import ScriptedBackend, write_documents
    from tiny_models import line_writing_model
    from transformers import AutoTokenizer

    from trl_seqpo.rollout import loading

    model_dir = line_writing_model(tmp_path / "model")
    write_documents(tmp_path / "docs.jsonl", [2, 1])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    backend = ScriptedBackend(tokenizer, {"Translate": " lo hundo\n"})
    monkeypatch.setattr(loading, "load_backend", lambda *args, **kwargs: loading.LoadedModel(backend, tokenizer))
    argv = ["evaluate", "subtitles", "--model", str(model_dir), "--documents", str(tmp_path / "docs.jsonl"),
            "--output-dir", str(tmp_path / "out"), "--source-lang", "en", "--target-lang", "de",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    hypotheses = tmp_path / "out" / "line" / "hypotheses.jsonl"
    first = hypotheses.read_text().splitlines()
    hypotheses.write_text("\n".join([*first, first[0]]) + "\n")  # a repeated row
    assert main([*argv, "--resume"]) == 0
    assert hypotheses.read_text().splitlines() == first  # the repeat is gone, nothing decoded twice
    write_documents(tmp_path / "docs.jsonl", [1, 2])  # edited in place, same name
    run_refused([*argv, "--resume"], capsys, tmp_path, "documents_file")


ALPO_BAD_VALUES = [
    ("--temperature", "-1"), ("--top-p", "0"), ("--top-p", "2"), ("--top-k", "-1"), ("--max-segment-lines", "0"),
    ("--context-window", "-1"), ("--judge-temperature", "-1"), ("--judge-max-tokens", "0"),
    ("--judge-max-retries", "-1"), ("--judge-max-concurrency", "0"), ("--judge-timeout", "0"),
    ("--judge-backoff-max", "-1"), ("--max-batch-size", "0"),
    ("--judge-api-key-file", "/nonexistent/key"), ("--judge-api-key-env", "TRL_SEQPO_UNSET_KEY"),
    ("--model", "/nonexistent/model"), ("--source-lang", ""), ("--seed", "-1"), ("--judge-base-url", "notaurl"),
]  # fmt: skip


def test_alpo_sample_checks_every_value_before_any_file_then_the_corrected_command_runs(tmp_path, capsys):
    from alpo_sample_helpers import documents, line_writer_model, sample_args

    from trl_seqpo.synthetic.local_judge import serve

    model = line_writer_model(tmp_path / "model")
    (tmp_path / "in").mkdir()
    docs, _ = documents(tmp_path / "in", (1, 1))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "candidates.jsonl"
    for flag, value in ALPO_BAD_VALUES:
        argv = sample_args(docs, output, model, DEAD_URL)
        if flag not in argv:
            argv += [flag, value]
        argv[argv.index(flag) + 1] = value
        capsys.readouterr()
        assert main(argv) == 2, (flag, value)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("trl-seqpo: error:"), (flag, err)
        assert list(out_dir.iterdir()) == [], (flag, value)
    # a value outside a flag's choices (generated from JudgeConfig's metadata) is refused by argparse, with usage
    with pytest.raises(SystemExit) as exited:
        main([*sample_args(docs, output, model, DEAD_URL), "--judge-aspect", "bogus"])
    assert exited.value.code == 2 and "argument --judge-aspect: invalid choice: 'bogus'" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []
    with serve() as server:
        assert main(sample_args(docs, output, model, server.base_url)) == 0
    assert output.exists()


@pytest.mark.parametrize("case", ["split", "evaluate", "demo"])
def test_a_stranger_s_file_inside_an_output_folder_is_protected(case, files, capsys):
    out = files / "out"
    out.mkdir()
    if case == "split":
        (out / "ep.en.srt").write_text("my English subtitles\n")
        argv = ["subtitles", "split", files / "ep.zh.srt", "--langs", "zh,en", "-o", out]
        expected = "ep.en.srt: exists and was not written by `trl-seqpo subtitles split`"
    elif case == "evaluate":
        (out / "results.json").write_text('{"mine": true}\n')
        argv = ["evaluate", "subtitles", "--model", files / "model", "--documents", files / "docs.jsonl",
                "--output-dir", out]  # fmt: skip
        expected = "results.json: exists and was not written by `trl-seqpo evaluate subtitles`"
    else:
        argv, expected = ["demo", "--output-dir", files / "notes.txt" / "run"], "notes.txt is a file"
    run_refused(argv, capsys, files, expected)

"""docs/cli.md is generated from the parser (`trl_seqpo.cli.reference`) and must not go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_seqpo.cli import reference
from trl_seqpo.cli.main import COMMANDS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


@pytest.fixture(scope="module")
def generated() -> str:
    return reference.render_reference()


def test_cli_page_is_up_to_date(generated):
    text = PAGE.read_text(encoding="utf-8")
    head, marker, tail = text.partition(reference.MARKER)
    assert marker, f"{PAGE} lost its marker line"
    assert tail.strip() == generated.strip(), "docs/cli.md is stale: run python -m trl_seqpo.cli.reference docs/cli.md"


def test_reference_lists_every_command_action_and_flag(generated):
    for name in COMMANDS:
        assert f"## `trl-seqpo {name}`" in generated
    for command in ("train", "simt align", "subtitles align", "alpo sample", "evaluate simt", "evaluate subtitles"):
        assert f"## `trl-seqpo {command}`" in generated
    parser = reference.full_parser()
    flags = {
        option for sub in reference._commands(parser) for action in sub._actions for option in action.option_strings
    }
    missing = sorted(flag for flag in flags if flag not in generated)
    assert not missing and "--judge-base-url" in flags and "--chunk-size" in flags


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    page = tmp_path / "cli.md"
    page.write_text(f"# intro kept\n\n{reference.MARKER}\n\n## `trl-seqpo old`\n", encoding="utf-8")
    assert reference.main([str(page), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert reference.main([str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# intro kept\n") and "trl-seqpo old" not in text and "## `trl-seqpo train`" in text
    assert reference.main([str(page), "--check"]) == 0
    page.write_text("# no marker\n", encoding="utf-8")
    assert reference.main([str(page)]) == 2

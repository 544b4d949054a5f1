"""``trl-seqpo plot``: quality-latency curves as PNG/SVG from evaluate results (SeqPO-SiMT Fig. 3-4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402  (matplotlib depends on pillow)

from trl_seqpo.cli.main import main  # noqa: E402


def results_file(folder: Path, system: str, points: list[tuple[str, float, float]]) -> Path:
    folder.mkdir(parents=True)
    runs = [{"label": label, "metrics": {"AL": al, "LAAL": al + 0.2, "COMET": comet, "BLEU": comet / 3}}
            for label, al, comet in points]  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"task": "simt", "system": system, "runs": runs}))
    return folder


@pytest.fixture()
def two_systems(tmp_path) -> list[Path]:
    return [
        results_file(tmp_path / "waitk", "SFT + wait-k", [("k=5", 9.8, 82.8), ("k=1", 4.3, 57.1), ("k=3", 6.9, 74.0)]),
        results_file(tmp_path / "seqpo", "SeqPO-SiMT", [("m=2", 4.4, 87.4), ("m=4", 10.3, 87.8)]),
    ]


def test_png_has_one_curve_per_system(two_systems, tmp_path, capsys):
    output = tmp_path / "figs" / "comet_vs_al.png"
    assert main(["plot", *map(str, two_systems), "-o", str(output), "--title", "NEWS En-Zh"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert output.stat().st_size > 10_000
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # lines, markers, text and anti-aliasing: not a blank canvas
    white = max(colours)[0]
    assert white < 0.97 * pixels.size[0] * pixels.size[1]


def test_svg_uses_the_requested_axes_and_labels(two_systems, tmp_path):
    output = tmp_path / "bleu_vs_laal.svg"
    assert main(["plot", *map(str, two_systems), "-o", str(output), "--x", "LAAL", "--y", "BLEU",
                 "--label", "baseline", "--label", "ours"]) == 0  # fmt: skip
    svg = output.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for text in ("LAAL (lower is better)", "BLEU (higher is better)", "baseline", "ours", "k=3", "m=4"):
        assert text in svg


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "curve.pdf"], "saved as .png or .svg"),
        (["-o", "curve.png", "--y", "BLEURT"], "no run has both AL and BLEURT"),
        (["-o", "curve.png", "--label", "only-one"], "--label given 1 times for 2 results files"),
    ],
)
def test_bad_requests_exit_2(two_systems, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", *map(str, two_systems), *extra]) == 2
    assert message in capsys.readouterr().err


def test_missing_results_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no results.json here" in capsys.readouterr().err

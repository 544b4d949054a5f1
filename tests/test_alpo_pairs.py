"""ALPO pair builder: gate, chosen/rejected, weights, betas and prefix mixing (Sec. 3.3-3.4, Eq. 2-6)."""

from __future__ import annotations

import json

import pytest

from trl_seqpo.alpo.pairs import PairSettings, build_pair_rows, build_preference_pairs
from trl_seqpo.cli.main import main
from trl_seqpo.errors import UserInputError
from trl_seqpo.subtitles.documents import line_marker, render_numbered_lines

DOC_PROMPT = "Translate these lines.\nTranslation:\n"


def unit(doc, index, scored, prefix, line_ids=None, judge_failed=False):
    """A candidate record; ``scored`` is a list of (text, score)."""
    return {
        "doc_id": doc,
        "unit_index": index,
        "line_ids": line_ids or [index],
        "source": f"src {index}",
        "reference": None,
        "document_prompt": DOC_PROMPT,
        "prefix": list(prefix),
        "candidates": [{"text": t, "origin": "policy", "score": s} for t, s in scored],
        "judge_failed": judge_failed,
    }


FIVE = [("a1", 90), ("a2", 80), ("a3", 70), ("a4", 60), ("a5", 50)]


def doc_records():
    """d1: unit 0 kept; 1 too few candidates; 2 small spread; 3 judge failed; 4 kept (6 candidates, gap 20)."""
    chosen = ["c0", "c1", "c2", "c3"]
    return [
        unit("d1", 0, FIVE, []),
        unit("d1", 1, [("b1", 90), ("b2", 10), ("b3", 50)], chosen[:1]),
        unit("d1", 2, [("e1", 50), ("e2", 52), ("e3", 54), ("e4", 55), ("e5", 51)], chosen[:2]),
        unit("d1", 3, FIVE, chosen[:3], judge_failed=True),
        unit("d1", 4, [("f1", 70), ("f2", 70), ("f3", 60), ("f4", 50), ("f5", 40), ("f6", 30)], chosen[:4]),
    ]


def test_gate_reasons_and_counts():
    rows, stats = build_pair_rows(doc_records(), PairSettings(prefix_mix_stages=1))
    assert stats.units == 5 and stats.kept == 2 and stats.documents == 1
    assert stats.gated == {"judge_failed": 1, "too_few_votes": 0, "not_judged": 0, "missing_scores": 0,
                           "too_few_candidates": 1, "small_spread": 1, "non_positive_gap": 0}  # fmt: skip
    assert stats.gated_fraction == pytest.approx(3 / 5)
    assert sorted(row["unit_index"] for row in rows) == [0, 4]


def test_duplicates_count_as_one_candidate_and_missing_scores_gate():
    dup = unit("d", 0, [("x", 90), ("x ", 90), ("y", 80), ("w", 10)], [])
    rows, stats = build_pair_rows([dup], PairSettings(prefix_mix_stages=1))
    assert stats.gated["too_few_candidates"] == 1 and not rows  # 4 entries, 3 distinct after stripping
    missing = unit("d", 0, [*FIVE[:4], ("a5", None)], [])
    _, stats = build_pair_rows([missing], PairSettings(prefix_mix_stages=1))
    assert stats.gated["missing_scores"] == 1


def test_best_chosen_and_third_lowest_rejected():
    rows, _ = build_pair_rows([unit("d", 0, FIVE, [])], PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    (row,) = rows
    assert (row["chosen"], row["rejected"]) == ("1.a1\n", "1.a3\n")
    assert row["gap"] == 20 and row["num_candidates"] == 5


def test_random_chosen_is_among_the_top_three_and_seeded():
    records = [unit(f"d{i}", 0, FIVE, []) for i in range(40)]
    rows, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=1, seed=1))
    chosen = {row["chosen"] for row in rows}
    assert chosen == {"1.a1\n", "1.a2\n", "1.a3\n"}
    # third-lowest is a3; when a3 is the chosen one, the lowest other candidate (a5) is rejected
    assert all(row["rejected"] == ("1.a5\n" if row["chosen"] == "1.a3\n" else "1.a3\n") for row in rows)
    again, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=1, seed=1))
    assert again == rows
    other, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=1, seed=2))
    assert other != rows


def test_rejected_falls_back_when_it_is_the_chosen_one():
    # four candidates: third-lowest is the second best; when it is the chosen one, the lowest is rejected
    four = [("p", 90), ("q", 80), ("r", 70), ("s", 20)]
    rows, _ = build_pair_rows([unit(f"d{i}", 0, four, []) for i in range(30)], PairSettings(prefix_mix_stages=1))
    for row in rows:
        assert row["rejected"] != row["chosen"]
        assert row["rejected"] == ("1.s\n" if row["chosen"] == "1.q\n" else "1.q\n")


def test_ties_rank_the_shorter_text_higher_for_chosen_and_lower_for_rejected():
    tied = [("long text", 90), ("short", 90), ("mid", 50), ("zz", 40), ("yyyy", 40)]
    rows, _ = build_pair_rows([unit("d", 0, tied, [])], PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    # worst first: zz(40) yyyy(40) mid(50): third-lowest is "mid"
    assert rows[0]["chosen"] == "1.short\n" and rows[0]["rejected"] == "1.mid\n"


def test_non_positive_gap_is_gated():
    # five distinct, spread 40, but the top three and the third-lowest all score 90
    flat = [("a", 90), ("b", 90), ("c", 90), ("d", 90), ("e", 50)]
    _, stats = build_pair_rows([unit("d", 0, flat, [])], PairSettings(prefix_mix_stages=1))
    assert stats.gated["non_positive_gap"] == 1 and stats.kept == 0


def test_weights_follow_eq3_and_betas_eq5():
    rows, _ = build_pair_rows(doc_records(), PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    by_unit = {row["unit_index"]: row for row in rows}
    all_candidates = 5 + 3 + 5 + 5 + 6  # every unit of the document (Eq. 3, authors' code)
    assert by_unit[0]["weight"] == pytest.approx(5 / all_candidates)
    assert by_unit[4]["weight"] == pytest.approx(6 / all_candidates)
    # gaps: unit 0: 90 - 70 = 20; unit 4: best f1 (70, shorter tie) - third-lowest f4 (50) = 20 -> both 1.0
    assert by_unit[0]["beta_scale"] == pytest.approx(1.0) and by_unit[4]["beta_scale"] == pytest.approx(1.0)
    kept_rows, _ = build_pair_rows(
        doc_records(), PairSettings(chosen_strategy="best", prefix_mix_stages=1, weight_denominator="kept")
    )
    assert sum(row["weight"] for row in kept_rows) == pytest.approx(1.0)
    assert {row["unit_index"]: row["weight"] for row in kept_rows} == pytest.approx({0: 5 / 11, 4: 6 / 11})


def test_beta_scale_is_gap_over_the_document_max_gap():
    small_gap = [("a", 90), ("b", 88), ("c", 86), ("d", 80), ("e", 70)]  # best - third-lowest = 90 - 86 = 4
    records = [unit("d", 0, FIVE, []), unit("d", 1, small_gap, ["c0"])]
    rows, _ = build_pair_rows(records, PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    by_unit = {row["unit_index"]: row for row in rows}
    assert by_unit[0]["beta_scale"] == pytest.approx(1.0)
    assert by_unit[1]["beta_scale"] == pytest.approx(4 / 20)


def test_prompt_with_lambda_one_is_the_sampling_prompt():
    records = doc_records()
    rows, _ = build_pair_rows(records, PairSettings(prefix_mix_start=1.0, prefix_mix_end=1.0, prefix_mix_stages=2))
    assert len(rows) == 4 and {row["stage"] for row in rows} == {0, 1}
    row = next(r for r in rows if r["unit_index"] == 4)
    # the prompt ends at the newline before line 5; the completion starts with the line's marker
    assert row["prompt"] == DOC_PROMPT + render_numbered_lines(["c0", "c1", "c2", "c3"])
    assert row["chosen"].startswith(line_marker(5)) and row["chosen"].endswith("\n")
    assert row["prefix_source"] == "chosen" and row["ends_document"] is True
    assert next(r for r in rows if r["unit_index"] == 0)["ends_document"] is False


def test_prompt_with_lambda_zero_uses_candidates_of_earlier_lines():
    records = doc_records()
    rows, _ = build_pair_rows(records, PairSettings(prefix_mix_start=0.0, prefix_mix_end=0.0, prefix_mix_stages=1))
    row = next(r for r in rows if r["unit_index"] == 4)
    assert row["prefix_source"] == "random"
    lines = row["prompt"][len(DOC_PROMPT) :].splitlines()
    assert all(line.startswith(line_marker(n)) for n, line in enumerate(lines, start=1)) and len(lines) == 4
    candidates = [{c["text"] for c in rec["candidates"]} for rec in records[:4]]
    assert all(line[len(line_marker(n)) :] in options for n, (line, options) in enumerate(zip(lines, candidates), 1))


def test_stages_follow_the_schedule_in_order():
    settings = PairSettings()  # 5 stages, 0.2 -> 0.6
    assert settings.stage_lambdas() == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    records = [unit(f"d{i}", j, FIVE, [f"p{k}" for k in range(j)]) for i in range(30) for j in range(4)]
    rows, stats = build_pair_rows(records, settings)
    assert stats.rows == len(rows) == 30 * 4 * 5
    stages = [row["stage"] for row in rows]
    assert stages == sorted(stages)
    assert {row["stage"]: row["prefix_mix_lambda"] for row in rows} == pytest.approx(
        dict(enumerate([0.2, 0.3, 0.4, 0.5, 0.6]))
    )
    # the fraction of rows whose prefix keeps every chosen line grows with lambda
    chosen_share = [
        sum(r["prefix_source"] == "chosen" for r in rows if r["stage"] == s and r["unit_index"] == 3) / 30
        for s in range(5)
    ]
    assert chosen_share[-1] > chosen_share[0]


def test_continuous_schedule_one_row_per_unit_with_rising_lambda():
    records = [unit(f"d{i}", j, FIVE, [f"p{k}" for k in range(j)]) for i in range(5) for j in range(3)]
    rows, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=0))
    assert len(rows) == 15
    lambdas = [row["prefix_mix_lambda"] for row in rows]
    assert lambdas[0] == pytest.approx(0.2) and lambdas[-1] == pytest.approx(0.6)
    assert lambdas == sorted(lambdas) and [row["stage"] for row in rows] == list(range(15))


def test_segment_unit_renders_numbered_continuation_lines():
    seg = [("a\nb", 90), ("c\nd", 80), ("e\nf", 70), ("g\nh", 60), ("i\nj", 10)]
    records = [unit("d", 0, FIVE, []), unit("d", 1, seg, ["x"], line_ids=[1, 2])]
    rows, _ = build_pair_rows(records, PairSettings(chosen_strategy="best", prefix_mix_stages=1,
                                                    prefix_mix_start=1.0, prefix_mix_end=1.0))  # fmt: skip
    row = next(r for r in rows if r["unit_index"] == 1)
    assert row["prompt"].endswith("Translation:\n" + render_numbered_lines(["x"]))
    assert row["chosen"] == render_numbered_lines(["a", "b"], start=2)
    assert row["rejected"] == render_numbered_lines(["e", "f"], start=2)


def test_advantages_are_z_scores_over_all_candidates():
    rows, _ = build_pair_rows([unit("d", 0, FIVE, [])], PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    std = (sum((s - 70) ** 2 for _, s in FIVE) / 5) ** 0.5
    assert rows[0]["chosen_advantage"] == pytest.approx(20 / std)
    assert rows[0]["rejected_advantage"] == pytest.approx(0.0)


def test_inconsistent_prefix_is_a_user_error():
    bad = unit("d", 2, FIVE, ["only one line"])
    with pytest.raises(UserInputError, match="prefix"):
        build_pair_rows([bad])


def test_dataset_columns_and_stored_stats():
    dataset, stats = build_preference_pairs(doc_records(), prefix_mix_stages=2)
    for column in ("prompt", "chosen", "rejected", "weight", "beta_scale", "doc_id", "unit_index", "gap",
                   "num_candidates", "prefix_source", "stage"):  # fmt: skip
        assert column in dataset.column_names
    assert len(dataset) == 4
    assert stats.kept == 2 and stats.gated_fraction == pytest.approx(0.6)
    assert not dataset.info.description  # the counts go to the trainer as an argument, not through dataset.info


def run_cli(argv):
    return main(["alpo", *argv])


def test_sampler_choice_is_the_chosen_side_and_the_prefix():
    """One chosen translation per line: the one the sampler fed forward is the chosen side of the pair."""
    records = [unit(f"d{i}", 0, FIVE, []) for i in range(20)]
    for i, record in enumerate(records):
        record["chosen_index"] = i % 3  # a1, a2 or a3: what Alg. 1 drew among the top 3
    rows, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=1))
    assert [row["chosen"] for row in sorted(rows, key=lambda r: r["doc_id"])] == [
        f"1.a{int(r['doc_id'][1:]) % 3 + 1}\n" for r in sorted(rows, key=lambda r: r["doc_id"])
    ]
    redrawn, _ = build_pair_rows(records, PairSettings(prefix_mix_stages=1, chosen_strategy="top_k"))
    assert sum(a["chosen"] != b["chosen"] for a, b in zip(rows, redrawn)) > 0  # the authors' redraw disagrees


def test_units_with_too_few_valid_votes_are_gated():
    records = [unit("d", 0, FIVE, []), unit("d", 1, FIVE, ["c0"]), unit("d", 2, FIVE, ["c0", "c1"])]
    for record, votes in zip(records, (4, 1, 3)):
        record["votes"], record["votes_requested"] = votes, 4
    _, stats = build_pair_rows(records, PairSettings(prefix_mix_stages=1))
    assert stats.gated["too_few_votes"] == 2 and stats.kept == 1
    _, stats = build_pair_rows(records, PairSettings(prefix_mix_stages=1, min_votes=3))
    assert stats.gated["too_few_votes"] == 1 and stats.kept == 2


def test_cli_refuses_to_overwrite_its_input_and_bad_fields(tmp_path, capsys):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps(r) + "\n" for r in doc_records()))
    before = candidates.read_bytes()
    assert run_cli(["pairs", str(candidates), "-o", str(candidates)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert candidates.read_bytes() == before and not (tmp_path / "candidates.stats.json").exists()
    bad = dict(doc_records()[0], unit_index="0")
    candidates.write_text(json.dumps(doc_records()[1]) + "\n" + json.dumps(bad) + "\n")
    assert run_cli(["pairs", str(candidates), "-o", str(tmp_path / "p.jsonl")]) == 2
    assert f"{candidates}:2: field 'unit_index' must be an integer" in capsys.readouterr().err
    candidates.write_bytes(json.dumps(doc_records()[0]).encode("utf-16"))
    assert run_cli(["pairs", str(candidates), "-o", str(tmp_path / "p.jsonl")]) == 2
    assert "not UTF-8" in capsys.readouterr().err and not (tmp_path / "p.jsonl").exists()


def test_cli_writes_pairs_and_stats(tmp_path, capsys):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps(r) + "\n" for r in doc_records()))
    out = tmp_path / "out" / "pairs.jsonl"
    assert run_cli(["pairs", str(candidates), "-o", str(out), "--prefix-mix-stages", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    stats = json.loads((tmp_path / "out" / "pairs.stats.json").read_text())
    assert stats["gated"]["judge_failed"] == 1 and stats["rows"] == 6
    assert "kept 2" in capsys.readouterr().out


def test_cli_names_file_and_line_of_bad_json(tmp_path, capsys):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text(json.dumps(doc_records()[0]) + "\n{not json\n")
    assert run_cli(["pairs", str(candidates), "-o", str(tmp_path / "p.jsonl")]) == 2
    assert f"{candidates}:2: not valid JSON" in capsys.readouterr().err


def test_rejected_tie_goes_to_the_longer_text_as_the_authors_rank():
    """One ranking (score, then shorter first) read from both ends: among equal low scores the longer text is the
    lower-ranked one, so it is the rejected side (the authors' ``alpo_utils.py``)."""
    scored = [("best", 90), ("good", 80), ("fine", 70), ("a much longer text", 40), ("short", 40), ("worst", 10)]
    rows, _ = build_pair_rows([unit("d", 0, scored, [])], PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    # from the bottom: worst (10), then the tie at 40 with the longer text lower, then the shorter: the third-lowest
    assert rows[0]["rejected"] == "1.short\n"
    scored = [("best", 90), ("good", 80), ("x", 40), ("a longer one", 40), ("worst", 10)]
    rows, _ = build_pair_rows([unit("d", 0, scored, [])], PairSettings(chosen_strategy="best", prefix_mix_stages=1))
    assert rows[0]["rejected"] == "1.x\n"  # third-lowest: worst, "a longer one", then "x"


def test_units_never_sent_to_the_judge_are_not_judged_not_missing_scores():
    skipped = {**unit("d", 0, [(t, None) for t, _ in FIVE], []), "votes": None}
    _, stats = build_pair_rows([skipped], PairSettings(prefix_mix_stages=1))
    assert stats.gated["not_judged"] == 1 and stats.gated["missing_scores"] == 0


@pytest.mark.parametrize(("votes", "needed", "kept"), [(3, 3, True), (2, 3, False), (3, None, False)])
def test_a_unit_with_the_votes_it_needed_is_judged_even_if_one_stayed_invalid(votes, needed, kept):
    record = {**unit("d", 0, FIVE, []), "votes": votes, "votes_requested": 4, "votes_needed": needed}
    _, stats = build_pair_rows([record], PairSettings(prefix_mix_stages=1))
    assert stats.kept == int(kept) and stats.gated["too_few_votes"] == int(not kept)

"""The demo's claims, headline and judge, on hand-made rows (fast; the full pipeline is in test_demo*.py)."""

from __future__ import annotations

import json

import pytest

from trl_seqpo.demo.report import CLAIMS, check_claims, claim_values, claims_table, verdict, waitk_curve_at
from trl_seqpo.demo.seqpo import seqpo_headline, seqpo_summary
from trl_seqpo.synthetic.subtitles import AccuracyTasteScorer, hidden_preference


def _row(system, al, chrf, policy=None, bleu=None):
    bleu = chrf - 5.0 if bleu is None else bleu
    return {"system": system, "name": system, "policy": policy or system, "al": al, "chrf": chrf, "bleu": bleu}


RESULTS = [
    _row("oracle", 2.25, 100.0),
    _row("sft", 2.4, 70.0, "own"),
    _row("sft+wait-1", 2.5, 69.0, "wait-1"),
    _row("sft+wait-3", 3.5, 66.0, "wait-3"),
    _row("sft+wait-5", 5.5, 68.0, "wait-5"),
    _row("seqpo", 3.0, 68.5, "own"),
]


def _alpo(preferred_after=40.0, rendered_after=97.0, exact_after=80.0, slots=120):
    def row(system, preferred, rendered, exact):
        return {"system": system, "slots": slots, "preferred_pct": preferred, "rendered_pct": rendered,
                "exact_pct": exact}  # fmt: skip

    return {
        "results": [row("sft", 20.0, 98.0, 81.0), row("alpo", preferred_after, rendered_after, exact_after)],
        "judging": {"units": 100, "failed": 3, "failed_pct": 3.0},
    }


def test_seqpo_summary_compares_with_its_start_and_the_gold_policy():
    summary = seqpo_summary(RESULTS)
    assert summary["al_change"] == pytest.approx(0.6)
    assert summary["chrf_change"] == pytest.approx(-1.5) and summary["bleu_change"] == pytest.approx(-1.5)
    assert summary["al_minus_oracle"] == pytest.approx(0.75)
    headline = seqpo_headline(summary)
    assert "SFT start from AL 2.40" in headline and "AL 3.00" in headline and "gold eager policy" in headline
    assert seqpo_summary([r for r in RESULTS if r["system"] != "seqpo"]) == {}


def test_the_waitk_curve_is_read_between_neighbours_and_bounded_by_its_best_point_outside():
    points = [(2.5, 64.0), (3.5, 61.0), (5.5, 63.0)]  # (AL, BLEU), not monotone
    assert waitk_curve_at(points, 3.0) == pytest.approx(62.5)  # halfway between wait-1 and wait-3
    assert waitk_curve_at(points, 4.5) == pytest.approx(62.0)
    assert waitk_curve_at(list(reversed(points)), 3.0) == pytest.approx(62.5)  # order of the points is irrelevant
    assert waitk_curve_at(points, 2.0) == 64.0 and waitk_curve_at(points, 9.0) == 64.0  # outside: the best point
    assert waitk_curve_at([(3.0, 60.0), (3.0, 62.0)], 3.0) == 62.0  # ties in AL: the better one
    assert waitk_curve_at([], 3.0) is None


def test_claim_values_and_verdicts():
    values = claim_values(RESULTS, _alpo())
    # SeqPO at AL 3.0: the curve between wait-1 (2.5, BLEU 64) and wait-3 (3.5, BLEU 61) is 62.5; SeqPO's 63.5
    assert values["seqpo_bleu_minus_waitk_curve"] == pytest.approx(1.0)
    assert values["seqpo_chrf_minus_waitk_curve"] == pytest.approx(1.0)
    assert values["seqpo_al_within_waitk_range"] is True
    assert values["seqpo_al"] == 3.0 and values["seqpo_al_minus_sft"] == pytest.approx(0.6)
    assert values["seqpo_bleu_delta"] == pytest.approx(-1.5) and values["seqpo_al_minus_oracle"] == pytest.approx(0.75)
    assert values["alpo_preferred_before"] == 20.0 and values["alpo_preferred_after"] == 40.0
    assert values["alpo_meaning_delta"] == pytest.approx(-1.0)
    assert values["alpo_exact_lines_delta"] == pytest.approx(-1.0)
    assert values["alpo_slots"] == 120 and values["alpo_judge_failure_pct"] == 3.0
    checks = check_claims(values)
    assert {c["name"]: c["holds"] for c in checks} == {
        "seqpo_above_waitk": True, "seqpo_quality_bleu": True, "alpo_preference": True, "alpo_meaning": True,
    }  # fmt: skip
    assert all(c["unsupported"] is None for c in checks)

    # below the curve: BLEU 62 at AL 3.0 (curve 62.5); faster than every wait-k point, compared with the best one
    below = claim_values([*RESULTS[:-1], _row("seqpo", 3.0, 67.0, "own")], None)
    assert below["seqpo_bleu_minus_waitk_curve"] == pytest.approx(-0.5)
    fast = claim_values([*RESULTS[:-1], _row("seqpo", 2.0, 68.5, "own")], None)
    assert fast["seqpo_bleu_minus_waitk_curve"] == pytest.approx(63.5 - 64.0)
    assert fast["seqpo_al_within_waitk_range"] is False
    worse = claim_values([*RESULTS[:-1], _row("seqpo", 3.0, 67.0, "own")], _alpo(29.0, 95.0, 80.0))
    assert {c["name"]: c["holds"] for c in check_claims(worse)} == {
        "seqpo_above_waitk": False,  # -0.5 BLEU under the curve
        "seqpo_quality_bleu": False,  # -3 BLEU against its start
        "alpo_preference": False,  # +9 < +10
        "alpo_meaning": False,  # meaning -3 points
    }
    exact_only = claim_values(RESULTS, _alpo(exact_after=78.0))  # meaning kept, lines worse by 3 points
    assert {c["name"]: c["holds"] for c in check_claims(exact_only)}["alpo_meaning"] is False
    assert claim_values(RESULTS[:2] + RESULTS[-1:], None)["seqpo_bleu_minus_waitk_curve"] is None  # no wait-k rows
    missing = {c["name"]: c["holds"] for c in check_claims(claim_values([], None))}
    assert set(missing.values()) == {None}  # nothing ran: not measured, not "false"


def test_claims_below_the_full_sizes_are_not_supported_and_say_why():
    from trl_seqpo.demo.alpo import AlpoDemoSettings
    from trl_seqpo.demo.common import DemoSettings

    full = {"seqpo": DemoSettings().to_json(), "alpo": AlpoDemoSettings().to_json()}
    assert all(c["unsupported"] is None for c in check_claims(claim_values(RESULTS, _alpo()), full))
    quick = {"seqpo": DemoSettings.quick().to_json(), "alpo": AlpoDemoSettings.quick().to_json()}
    checks = {c["name"]: c for c in check_claims(claim_values(RESULTS, _alpo(slots=20)), quick)}
    assert "sft_steps 8 < 400" in checks["seqpo_above_waitk"]["unsupported"]
    assert "alpo_steps 2 < 120" in checks["alpo_preference"]["unsupported"]
    assert "20 held-out slots < 100" in checks["alpo_meaning"]["unsupported"]
    assert "slots" not in checks["seqpo_quality_bleu"]["unsupported"]
    assert checks["seqpo_above_waitk"]["holds"] is True  # still measured
    assert verdict(checks["alpo_preference"]).startswith("cannot be supported at these sizes")
    too_few = {c["name"]: c for c in check_claims(claim_values(RESULTS, _alpo(slots=99)), full)}
    assert too_few["alpo_preference"]["unsupported"] == "99 held-out slots < 100"
    assert too_few["seqpo_above_waitk"]["unsupported"] is None
    assert verdict({"holds": False, "unsupported": None}) == "DOES NOT HOLD"


def test_claims_table_gives_ranges_over_runs(tmp_path):
    for seed, gap in ((0, 1.5), (1, -0.5)):
        values = {**claim_values(RESULTS, _alpo()), "seqpo_bleu_minus_waitk_curve": gap}
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "claims.json").write_text(json.dumps({**values, "seed": seed, "checks": check_claims(values)}))
    table = claims_table([tmp_path / "seed0", tmp_path / "seed1" / "claims.json"])
    assert "Measured over 2 run(s) (seeds 0, 1)" in table
    row = next(line for line in table.splitlines() if line.startswith("| `seqpo_bleu_minus_waitk_curve`"))
    assert "| -0.50 | 1.50 | 1.50, -0.50 |" in row
    assert f"| {CLAIMS[0].statement} | 1 / 2 |" in table
    with pytest.raises(ValueError, match="no claims.json"):
        claims_table([tmp_path])


# ------------------------------------------------------------------------------------------ the demo's ALPO judge

SOURCE = "the big dog sees the old house."
MESSAGES = [{"role": "user", "content": f"[Evaluate] {SOURCE}"}]


def test_judge_prefers_the_hidden_synonyms_at_equal_accuracy_and_accuracy_first():
    judge = AccuracyTasteScorer(hidden_preference())
    plain = judge.expected([SOURCE])
    assert plain == "lo hundo grava lo domo veka vidas".split()
    liked = [hidden_preference().get(word, word) for word in plain]
    scores = judge([" ".join(plain), " ".join(liked), " ".join(liked[:-1]), " ".join(plain[:-2])], MESSAGES)
    assert scores[1] == 100 and scores[0] == 70  # same accuracy, taste decides
    assert scores[0] > scores[3]  # a correct plain translation beats one missing two words
    assert scores[1] > scores[2]


def test_judge_ranks_the_plain_word_above_a_wrong_or_missing_one():
    # A taste that also penalised the plain word scored "replace vidas by any verb" within 1 point of the correct
    # plain line, and the demo's ALPO model learned to write wrong verbs (seed 2: "prenas" for "sees").
    judge = AccuracyTasteScorer(hidden_preference())
    source = "a man sees every child."  # one slot: "vidas" (preferred: "miras")
    plain = judge.expected([source])
    assert plain == "un viro ci kido vidas".split()
    wrong_verb, missing_verb = [*plain[:-1], "prenas"], plain[:-1]
    messages = [{"role": "user", "content": f"[Evaluate] {source}"}]
    scores = judge([" ".join(plain), " ".join(wrong_verb), " ".join(missing_verb)], messages)
    assert scores[0] > scores[1] + 10 and scores[0] > scores[2] + 5


def test_judge_cannot_be_gamed_by_inserting_preferred_words():
    judge = AccuracyTasteScorer(hidden_preference())
    liked = [hidden_preference().get(word, word) for word in judge.expected([SOURCE])]
    honest = judge.score(" ".join(liked), judge.expected([SOURCE]))
    padded = judge.score(" ".join([*liked, "mega", "kaso", "miras"]), judge.expected([SOURCE]))
    assert padded < honest


def test_judge_scores_rarely_tie_on_distinct_candidates():
    import random

    judge = AccuracyTasteScorer(hidden_preference())
    expected = judge.expected([SOURCE])
    rng = random.Random(0)
    vocabulary = sorted({*expected, *hidden_preference().values(), "un", "arbo", "kaj"})
    candidates = {" ".join(rng.choice(vocabulary) for _ in range(rng.randint(5, 8))) for _ in range(300)}
    scores = [judge.score(text, expected) for text in candidates]
    # the judge rule rejects a vote of 8 candidates with fewer than 2 distinct scores: count such groups
    groups = [scores[i : i + 8] for i in range(0, len(scores) - 7, 8)]
    assert sum(len(set(group)) < 2 for group in groups) == 0
    assert sum(len(set(group)) for group in groups) / (8 * len(groups)) > 0.6

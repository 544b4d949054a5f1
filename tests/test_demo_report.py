"""The demo's claims, headline and judge, on hand-made rows (fast; the full pipeline is in test_demo*.py)."""

from __future__ import annotations

import json

import pytest

from trl_seqpo.demo.report import check_claims, claim_values, claims_table
from trl_seqpo.demo.seqpo import seqpo_headline, seqpo_summary
from trl_seqpo.synthetic.subtitles import AccuracyTasteScorer, hidden_preference


def _row(system, al, chrf, policy=None, bleu=None):
    bleu = chrf - 5.0 if bleu is None else bleu
    return {"system": system, "name": system, "policy": policy or system, "al": al, "chrf": chrf, "bleu": bleu}


RESULTS = [
    _row("oracle", 2.25, 100.0),
    _row("sft", 4.0, 70.0, "own"),
    _row("sft+wait-1", 3.0, 60.0, "wait-1"),
    _row("sft+wait-3", 4.5, 66.0, "wait-3"),
    _row("sft+wait-5", 6.0, 65.5, "wait-5"),
    _row("sft_eager", 2.6, 69.0, "own"),
    _row("seqpo", 2.5, 68.5, "own"),
]
ALPO = {
    "results": [
        {"system": "sft", "preference": 20.0, "chrf_synonyms_merged": 80.0},
        {"system": "alpo", "preference": 45.0, "chrf_synonyms_merged": 79.5},
    ],
    "judging": {"units": 100, "failed": 3, "failed_pct": 3.0},
}


def test_seqpo_summary_compares_with_the_delayed_start_the_undelayed_sft_and_the_gold_policy():
    summary = seqpo_summary(RESULTS)
    assert summary["al_reduction_pct"] == pytest.approx(37.5)  # (4.0 - 2.5) / 4.0, against the delayed start
    assert summary["chrf_change"] == pytest.approx(-1.5)
    assert summary["al_minus_sft_eager"] == pytest.approx(-0.1)
    assert summary["al_minus_oracle"] == pytest.approx(0.25)
    headline = seqpo_headline(summary)
    assert "delayed SFT start" in headline and "undelayed SFT" in headline and "gold eager policy" in headline
    assert seqpo_summary([r for r in RESULTS if r["system"] != "seqpo"]) == {}


def test_claim_values_and_verdicts():
    values = claim_values(RESULTS, ALPO)
    assert values["seqpo_al_reduction_pct"] == pytest.approx(37.5)
    assert values["seqpo_chrf_delta"] == pytest.approx(-1.5)
    assert values["seqpo_bleu_delta"] == pytest.approx(-1.5)
    assert values["alpo_preference_before"] == 20.0 and values["alpo_preference_after"] == 45.0
    assert values["alpo_accuracy_delta"] == pytest.approx(-0.5)
    assert values["alpo_judge_failure_pct"] == 3.0
    assert values["waitk_chrf_rises_with_k"] is True  # 60 -> 66 -> 65.5: never more than 1 point down
    assert values["seqpo_al_minus_fastest_waitk"] == pytest.approx(-0.5)  # 2.5 against wait-1's 3.0
    verdicts = {c["name"]: c["holds"] for c in check_claims(values)}
    assert verdicts == dict.fromkeys(verdicts, True) and len(verdicts) == 6
    # chrF is SeqPO's training signal; BLEU, checked beside it, can disagree
    same_chrf_lower_bleu = [*RESULTS[:-1], _row("seqpo", 2.5, 68.5, "own", bleu=60.0)]
    verdicts = {c["name"]: c["holds"] for c in check_claims(claim_values(same_chrf_lower_bleu, ALPO))}
    assert verdicts["seqpo_quality"] is True and verdicts["seqpo_quality_bleu"] is False  # BLEU -5

    worse = claim_values(
        [*RESULTS[:3], _row("sft+wait-3", 4.5, 70.0, "wait-3"), *RESULTS[4:6], _row("seqpo", 3.2, 66.0, "own")],
        {"results": [{**ALPO["results"][0]}, {"system": "alpo", "preference": 29.0, "chrf_synonyms_merged": 78.9}]},
    )
    verdicts = {c["name"]: c["holds"] for c in check_claims(worse)}
    assert worse["waitk_chrf_rises_with_k"] is False  # 70 -> 65.5 at k = 5: recorded, not a claim
    assert claim_values(RESULTS[:2] + RESULTS[-2:], None)["seqpo_al_minus_fastest_waitk"] is None  # no wait-k rows
    assert verdicts == {
        "seqpo_latency": False,  # 20% < 30%
        "seqpo_quality": False,  # -4 chrF
        "seqpo_quality_bleu": False,  # -4 BLEU
        "seqpo_vs_waitk": False,  # wait-1 (AL 3.0) writes earlier than SeqPO (3.2)
        "alpo_preference": False,  # +9 < +10
        "alpo_accuracy": False,  # -1.1 < -1
    }
    missing = {c["name"]: c["holds"] for c in check_claims(claim_values([], None))}
    assert set(missing.values()) == {None}  # nothing ran: not measured, not "false"


def test_claims_table_gives_ranges_over_runs(tmp_path):
    for seed, reduction in ((0, 40.0), (1, 33.0)):
        values = {**claim_values(RESULTS, ALPO), "seqpo_al_reduction_pct": reduction}
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "claims.json").write_text(json.dumps({**values, "seed": seed, "checks": check_claims(values)}))
    table = claims_table([tmp_path / "seed0", tmp_path / "seed1" / "claims.json"])
    assert "Measured over 2 run(s) (seeds 0, 1)" in table
    row = next(line for line in table.splitlines() if line.startswith("| `seqpo_al_reduction_pct`"))
    assert "| 33.00 | 40.00 | 40.00, 33.00 |" in row
    assert "| SeqPO cuts AL by at least 30% against its delayed SFT start | 2 / 2 |" in table
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

"""Independent samples whatever the micro-batching (issue 21): ``max_batch_size`` must not change what is drawn.

The HF backend seeds once per call; re-seeding every micro-batch made the micro-batches of a call draw the same
random stream, so the k rows of a unit (or two documents of a batch) sampled alike.
"""

from __future__ import annotations

import pytest
from alpo_sample_helpers import documents, line_writer_model

from trl_seqpo.alpo.sampler import SegmentwiseConfig, SegmentwiseSampler
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE

pytestmark = pytest.mark.usefixtures("one_thread")

K = 8


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """Records of 3 two-line documents, k = 8, for each ``max_batch_size``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("batching")
    model_dir = line_writer_model(folder / "model")
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    _, docs = documents(folder, (2, 2, 2))
    docs = [type(d)(d.doc_id, d.source_lines, None) for d in docs]  # no reference: policy candidates only
    config = SegmentwiseConfig(
        source_language=SOURCE_LANGUAGE, target_language=TARGET_LANGUAGE, num_candidates=K, max_new_tokens=12,
        documents_per_batch=3, seed=3,
    )  # fmt: skip
    out = {}
    for size in (None, 1, 2, K):
        sampler = SegmentwiseSampler(HFGenerationBackend(model, tokenizer, max_batch_size=size), tokenizer, config)
        out[size] = sampler.sample(docs)
    torch.set_num_threads(threads)
    return out


def mean_distinct(records) -> float:
    units = [record for doc in records for record in doc]
    return sum(record.num_distinct for record in units) / len(units)


@pytest.mark.parametrize("size", [1, 2, K])
def test_micro_batching_keeps_the_number_of_distinct_candidates(sampled, size):
    reference = mean_distinct(sampled[None])
    assert reference > K / 2  # the line writer gives mostly distinct lines
    assert mean_distinct(sampled[size]) >= 0.85 * reference, (size, mean_distinct(sampled[size]), reference)


@pytest.mark.parametrize("size", [None, 1, 2, K])
def test_documents_never_draw_identical_candidate_lists(sampled, size):
    records = sampled[size]
    for unit in range(2):
        lists = [tuple(c.text for c in doc[unit].candidates) for doc in records]
        assert len(set(lists)) == len(lists), (size, unit)

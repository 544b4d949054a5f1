"""`Counts`: counters of several processes add up field by field; settings and flags are not added."""

from __future__ import annotations

import pytest

from trl_seqpo.alpo.sampler import SamplerStats
from trl_seqpo.alpo.sampling import SampleReport, _combine
from trl_seqpo.counts import sum_counts
from trl_seqpo.judge.client import JudgeStats


def test_counters_add_field_by_field_nested_ones_too():
    counters = {"sampler": SamplerStats(rows=10, duplicates=1), "judge": JudgeStats(cache_hits=3)}
    first = SampleReport(written=2, units=5, **counters)
    second = SampleReport(written=1, units=4, sampler=SamplerStats(rows=7), judge=JudgeStats(http_requests=2))
    total = first + second
    assert (total.written, total.units) == (3, 9)
    assert (total.sampler.rows, total.sampler.duplicates) == (17, 1)
    assert (total.judge.cache_hits, total.judge.http_requests) == (3, 2)
    assert (first.written, first.sampler.rows) == (2, 10)  # the operands are left as they were
    with pytest.raises(TypeError):
        first + JudgeStats()  # noqa: B018
    with pytest.raises(ValueError, match="at least one"):
        sum_counts([])


def test_job_report_adds_the_processes_output_but_not_the_shared_input():
    reports = [
        SampleReport(documents=9, skipped=3, written=w, unjudged_units=u, main_process=rank == 0)
        for rank, (w, u) in enumerate([(3, 1), (2, 0), (1, 2)])
    ]
    job = _combine(reports, main_process=False)
    assert (job.documents, job.skipped, job.written, job.unjudged_units) == (9, 3, 6, 3)
    assert job.processes == 3 and job.main_process is False
    assert "(3 processes)" in job.summary("out.jsonl") and "wrote 6 documents" in job.summary("out.jsonl")

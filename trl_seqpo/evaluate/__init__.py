"""Evaluation as a library (no argparse; `trl-seqpo evaluate` and `trl-seqpo plot` live in `trl_seqpo.cli`).

- `trl_seqpo.evaluate.simt`: simultaneous translation, quality (BLEU, chrF, COMET, BLEURT, LLM judge) and
  latency (AL, LAAL, DAL, AP, and computation-aware AL_CA / LAAL_CA), as SeqPO-SiMT Sec. 3.1 reports them;
- `trl_seqpo.evaluate.subtitles`: document-level subtitle translation with line-count checks and the judge's
  accuracy / naturalness / vividness scores of ALPO Sec. 4.2;
- `trl_seqpo.evaluate.common`: the settings both share (`EvalConfig`) and the record of versions and hardware;
- `trl_seqpo.evaluate.report`: rich, JSON and Markdown tables; `trl_seqpo.evaluate.plot`: quality vs
  latency curves.

Importing this package is light: the evaluations import torch and the models only when they run.
"""

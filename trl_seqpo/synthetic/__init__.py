"""Offline stand-ins for the demo, examples, benchmarks and tests: nothing here is downloaded.

- `trl_seqpo.synthetic.language_pair`: a seeded English-like -> invented-language pair with gold alignments;
- `trl_seqpo.synthetic.subtitles`: synthetic subtitle documents with a hidden synonym preference;
- `trl_seqpo.synthetic.tiny_models`: a tiny ChatML tokenizer and a tiny Qwen2 causal LM, built locally;
- `trl_seqpo.synthetic.local_judge`: an OpenAI-compatible judge server on 127.0.0.1;
- `trl_seqpo.synthetic.tiny_comet`: tiny COMET checkpoints built with unbabel-comet's own classes.
"""

"""The offline demo: a recipe composing the library (SFT, SeqPO, wait-k baselines, ALPO) on synthetic data."""

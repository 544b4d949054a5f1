"""Configuration of `ALPOTrainer` (ALPO paper Sec. 3.4, App. B/C, Table 9)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

from trl_seqpo.alpo.losses import ALPO_LOSSES, WEIGHT_NORMALIZATIONS
from trl_seqpo.precision import resolve_bf16

PREFIX_MIX_ORDERS: tuple[str, ...] = ("stages", "shuffle")


@dataclass
class ALPOConfig(DPOConfig):
    r"""
    Configuration class for the [`ALPOTrainer`]: Adaptive Local Preference Optimization, the line-level
    preference loss of "From Utterance to Vividity" (Cui et al.). Every [`~trl.DPOConfig`] option (PEFT, DeepSpeed,
    precomputed reference log-probs, logging) keeps working; only the fields below are new.

    Parameters:
        > Parameters that control the ALPO loss

        alpo_loss_type (`str`, *optional*, defaults to `"sigmoid"`):
            Per-line preference loss `L_po` of Eq. 7: `"sigmoid"` (DPO, Eq. 4), `"simpo"` (SimPO, reference-free,
            length-normalised) or `"grpo"` (advantage-based, Eq. 8-9).
        weight_column (`str` or `None`, *optional*, defaults to `"weight"`):
            Dataset column holding the line weight `w(s_i)` (Eq. 2-3). `None` gives every pair weight 1.
        beta_scale_column (`str` or `None`, *optional*, defaults to `"beta_scale"`):
            Dataset column holding `gap_i / max_j gap_j` (Eq. 5); the pair's `beta_i = beta * beta_scale_i`.
            `None` uses the constant `beta`.
        normalize_weights (`str`, *optional*, defaults to `"document"`):
            How the weights enter the loss. `"document"`: every pair counts `w_i / mean(w)` whatever micro-batch,
            accumulation step or device it lands on, so a document contributes `sum_i w_i` (Eq. 4). `"micro_batch"`:
            `sum w_i l_i / sum w_i` inside each micro-batch, as the authors' code does; with their batch size of 1
            per device the weights cancel. `"none"`: ignore the weights.
        simpo_gamma (`float`, *optional*, defaults to `0.5`):
            Target reward margin `gamma` of the `"simpo"` loss (TRL's CPO default).
        grpo_epsilon (`float`, *optional*, defaults to `0.2`):
            Clipping range `epsilon` of the `"grpo"` loss (Eq. 8).
        grpo_kl_coef (`float`, *optional*, defaults to `0.04`):
            KL weight `eta` of the `"grpo"` loss (Eq. 8-9); 0.04 as in DeepSeekMath's GRPO (Shao et al., 2024).
        eos_at_document_end (`bool`, *optional*, defaults to `True`):
            Keep the EOS token only after the completions of a document's last unit (rows with `ends_document`),
            as the authors' code does; a mid-document line ends with `"\n"`. `False` keeps TRL's behaviour of
            ending every completion with EOS.

        > Parameters that control the prefix mixing order (Eq. 6; the schedule itself is set when the pairs are built,
        > see `trl_seqpo.alpo.pairs.PairSettings`)

        prefix_mix_order (`str`, *optional*, defaults to `"stages"`):
            `"stages"` trains the rows in stage order (shuffled inside a stage), so `lambda` really rises during
            training as Sec. 3.4 says. `"shuffle"` shuffles all stages together, as the authors' code does by
            default.

    > [!NOTE]
    > These parameters have default values different from [`~trl.DPOConfig`]:
    > - `beta`: `1.0` instead of `0.1` (authors' code: `alpo_beta_scale: 1.0`, so `beta_i = gap_i / max gap`).
    > - `num_train_epochs`: `1` instead of `3` (Table 9).
    > - `lr_scheduler_type`: `"cosine"` and `warmup_steps`: `0.1` (a ratio) as in the authors' code.
    > - `learning_rate` stays `1e-6` (Table 9).
    > - `max_length`: `None` instead of `1024`: a document-level prompt of 35 lines easily passes 1024 tokens, and
    >   TRL would drop such rows silently. Set a number to cap memory; `ALPOTrainer` then refuses a dataset whose
    >   longest row does not fit, naming the row, instead of dropping or truncating it.
    """

    # Parameters whose default values are overridden from DPOConfig (Table 9 and the authors' code)
    beta: float = field(
        default=1.0,
        metadata={"help": "Base beta; the pair's beta_i = beta * beta_scale_i (Eq. 5). 1.0 as in the authors' code."},
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate for AdamW (Table 9)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Total number of training epochs (Table 9)."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "The scheduler type to use (authors' code: cosine)."}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Longest prompt + completion in tokens (None: no limit); a longer row is refused."},
    )
    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Linear warmup: steps (>= 1) or a ratio of the total steps (authors' code: 0.1)."},
    )

    # Parameters that control the ALPO loss
    alpo_loss_type: str = field(
        default="sigmoid",
        metadata={
            "help": "Per-line preference loss of Eq. 7: 'sigmoid' (DPO, Eq. 4), 'simpo' or 'grpo' (Eq. 8-9).",
            "choices": list(ALPO_LOSSES),
        },
    )
    weight_column: str | None = field(
        default="weight",
        metadata={"help": "Column with the line weight w(s_i) (Eq. 2-3); None gives every pair weight 1."},
    )
    beta_scale_column: str | None = field(
        default="beta_scale",
        metadata={"help": "Column with gap_i / max gap (Eq. 5); None uses the constant beta."},
    )
    normalize_weights: str = field(
        default="document",
        metadata={
            "help": "'document': each pair counts w_i / mean(w) in any micro-batch, device or accumulation step, so "
            "the weights act even with one pair per device. 'micro_batch': sum w l / sum w per micro-batch (the "
            "authors' code; the weights cancel at batch size 1). 'none': ignore the weights.",
            "choices": list(WEIGHT_NORMALIZATIONS),
        },
    )
    simpo_gamma: float = field(default=0.5, metadata={"help": "Target reward margin gamma of the 'simpo' loss."})
    grpo_epsilon: float = field(default=0.2, metadata={"help": "Clipping range epsilon of the 'grpo' loss (Eq. 8)."})
    grpo_kl_coef: float = field(default=0.04, metadata={"help": "KL weight eta of the 'grpo' loss (Eq. 8-9)."})
    eos_at_document_end: bool = field(
        default=True,
        metadata={
            "help": "End only the completions of a document's last unit with EOS (column 'ends_document'), as the "
            "authors' code does; False keeps TRL's EOS after every completion."
        },
    )

    # Parameters that control the prefix mixing order (Eq. 6)
    prefix_mix_order: str = field(
        default="stages",
        metadata={
            "help": "'stages': train stage by stage so lambda rises during training; 'shuffle': mix all stages "
            "(the authors' default).",
            "choices": list(PREFIX_MIX_ORDERS),
        },
    )

    def __post_init__(self):
        if self.alpo_loss_type not in ALPO_LOSSES:
            raise ValueError(
                f"alpo_loss_type must be one of {sorted(ALPO_LOSSES)}, got {self.alpo_loss_type!r}. For TRL's other "
                "DPO losses use trl.DPOTrainer with loss_type instead."
            )
        if self.normalize_weights not in WEIGHT_NORMALIZATIONS:
            raise ValueError(
                f"normalize_weights must be one of {list(WEIGHT_NORMALIZATIONS)}, got {self.normalize_weights!r}"
            )
        if self.prefix_mix_order not in PREFIX_MIX_ORDERS:
            raise ValueError(
                f"prefix_mix_order must be one of {list(PREFIX_MIX_ORDERS)}, got {self.prefix_mix_order!r}"
            )
        if not self.beta > 0:  # also refuses NaN
            raise ValueError(f"beta must be > 0 (the pair's beta_i = beta * beta_scale_i), got {self.beta}")
        if not 0.0 < self.grpo_epsilon < 1.0:
            raise ValueError(f"grpo_epsilon must be in (0, 1), got {self.grpo_epsilon}")
        if not self.simpo_gamma >= 0:
            raise ValueError(f"simpo_gamma must be >= 0 (a target margin), got {self.simpo_gamma}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {self.max_length}")
        if not self.grpo_kl_coef >= 0:
            raise ValueError(f"grpo_kl_coef must be >= 0, got {self.grpo_kl_coef}")
        # DPOTrainer options whose maths ALPOTrainer does not reimplement: refuse them instead of ignoring them.
        loss_type = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        if loss_type != ["sigmoid"]:
            raise ValueError(
                f"ALPOTrainer picks its loss with alpo_loss_type, not loss_type (got loss_type={loss_type}); leave "
                "loss_type at its default and set alpo_loss_type to one of "
                f"{sorted(ALPO_LOSSES)}, or use trl.DPOTrainer for the other TRL losses."
            )
        unsupported = {
            "ld_alpha": self.ld_alpha is not None,
            "use_weighting": self.use_weighting,
            "f_divergence_type": self.f_divergence_type != "reverse_kl",
            "loss_weights": self.loss_weights is not None,
        }
        for name, is_set in unsupported.items():
            if is_set:
                raise ValueError(
                    f"{name} is a DPOTrainer option that ALPOTrainer does not support; leave it at its default "
                    "(ALPO weights pairs with the weight column and normalize_weights instead)."
                )
        resolve_bf16(self)  # bf16 only where a GPU supports it (TRL: always unless fp16)
        super().__post_init__()

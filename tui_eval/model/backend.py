"""Loading a Hugging Face causal LM and generating continuations for batches of prompts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.errors import ModelLoadError, UsageError


@dataclass
class Generation:
    texts: list[str]
    new_tokens: list[int]  # generated tokens per row, up to and including the end token


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {requested}: CUDA is not available on this machine")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {requested}: only {torch.cuda.device_count()} CUDA "
                             "device(s) present")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: MPS is not available on this machine")
    return requested


def resolve_dtype(requested: str, device: str) -> Any:
    """'auto' means the fastest safe dtype for the device: bf16 (or fp16) on GPUs, fp32 on CPU."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def check_model_path(model: str) -> str:
    """Fail fast, naming the path, when a local model path is missing or holds no model."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"{model}: not a model directory (no config.json)")
        return str(path)
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"{model}: model path not found")
    return model  # a hub id: only the local cache is consulted when loading


def quiet_transformers() -> None:
    """Our own log says what is loading; transformers' progress bars would garble it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class HFBackend:
    """A tokenizer and model pair with batched, left-padded generation."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto",
                 chat_template: bool = False, simulate_oom_above: int | None = None) -> None:
        self.model_name = model
        self.model_path = check_model_path(model)
        quiet_transformers()
        self.tokenizer = self._load_tokenizer()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.simulate_oom_above = simulate_oom_above
        self.use_chat_template = chat_template and bool(
            getattr(self.tokenizer, "chat_template", None))
        self.model: Any = None
        self.load_seconds = 0.0

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:  # transformers raises many types for a bad directory
            raise ModelLoadError(f"{self.model_name}: cannot load tokenizer: "
                                 f"{_first_line(exc)}") from None
        tokenizer.padding_side = "left"  # generation appends on the right
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"{self.model_name}: tokenizer has neither a pad nor an "
                                     "eos token")
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load_model(self) -> None:
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        try:
            model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=self.dtype, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{self.model_name}: cannot load model: "
                                 f"{_first_line(exc)}") from None
        self.model = model.to(self.device).eval()
        self.load_seconds = time.perf_counter() - started

    def render(self, prompt: str) -> str:
        """The text the model sees: the prompt, wrapped in the chat template when asked."""
        if not self.use_chat_template:
            return prompt
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)

    @property
    def _add_special_tokens(self) -> bool:
        return not self.use_chat_template  # the chat template already holds BOS

    def token_counts(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, add_special_tokens=self._add_special_tokens)
        return [len(ids) for ids in encoded["input_ids"]]

    def _simulated_oom(self, rows: int) -> None:
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate a batch of {rows} rows "
            f"(simulated: --simulate-oom-above {self.simulate_oom_above})")

    def generate(self, texts: list[str], *, max_new_tokens: int, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, stop: list[str] | None = None,
                 force_length: bool = False) -> Generation:
        """Generate for rendered prompts. ``force_length`` disables early stopping, so every
        row produces ``max_new_tokens`` (the batch-size probes need the worst case)."""
        import torch

        if self.simulate_oom_above is not None and len(texts) > self.simulate_oom_above:
            self._simulated_oom(len(texts))
        tok = self.tokenizer
        encoded = tok(texts, return_tensors="pt", padding=True,
                      add_special_tokens=self._add_special_tokens).to(self.device)
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": tok.pad_token_id,
        }
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        else:  # silence the model's own sampling defaults under greedy decoding
            options.update(temperature=None, top_p=None, top_k=None)
        if force_length:
            options["min_new_tokens"] = max_new_tokens
        elif stop:
            options.update(stop_strings=stop, tokenizer=tok)
        with torch.inference_mode():
            output = self.model.generate(**encoded, **options)
        new_ids = output[:, encoded["input_ids"].shape[1]:].tolist()
        end_ids = {tok.pad_token_id, tok.eos_token_id, *self._eos_ids()}
        texts_out: list[str] = []
        counts: list[int] = []
        for row in new_ids:
            length = next((i + 1 for i, t in enumerate(row) if t in end_ids), len(row))
            counts.append(length if not force_length else len(row))
            text = tok.decode(row[:length], skip_special_tokens=True)
            texts_out.append(cut_at_stop(text, stop or []))
        return Generation(texts=texts_out, new_tokens=counts)

    def _eos_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            return []
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def cut_at_stop(text: str, stop: list[str]) -> str:
    """End the text where the first stop string appears."""
    cut = len(text)
    for marker in stop:
        at = text.find(marker)
        if marker and at != -1:
            cut = min(cut, at)
    return text[:cut]

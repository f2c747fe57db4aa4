"""Loading a Hugging Face causal LM and generating continuations for batches of prompts."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_eval.device.memcap import parse_device_budgets
from tui_eval.errors import ModelLoadError, UsageError
from tui_eval.model.graph_decode import GraphDecoder, as_generate_lays_out, supports
from tui_eval.model.static_shapes import ShapePlanner, StaticShape
from tui_eval.paths import user_cache_dir

# New tokens of the call that compiles a new shape before the real one: three decode steps,
# enough for torch to compile, record the CUDA graph and replay it once.
WARMUP_NEW_TOKENS = 4

# Where a model config states how many positions it has, in the order they are looked up.
POSITION_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length",
                       "seq_length", "n_ctx")
# A tokenizer's model_max_length this large is transformers' "unknown" sentinel (1e30) or a
# placeholder, not a context size.
SENSIBLE_MAX_LENGTH = 10**8


@dataclass(frozen=True)
class ContextLimit:
    """How many tokens (prompt and new ones together) the model can attend to, and where
    that figure comes from: a model config attribute or the tokenizer's model_max_length."""

    tokens: int
    source: str


@dataclass
class Generation:
    texts: list[str]
    new_tokens: list[int]  # generated tokens per row, up to and including the end token
    # Compiled path only: the static shape used, and the seconds this call spent compiling
    # it (zero for a shape that had run before), which are not generation time.
    shape: StaticShape | None = None
    compile_seconds: float = 0.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _one_line(exc: BaseException) -> str:
    """The whole message on one line: transformers' tokenizer errors put their list of
    what they tried on the lines after "from one of:"."""
    return " ".join(str(exc).split()) or type(exc).__name__


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


def resolve_compile(requested: str, device: str) -> bool:
    """Whether to compile the decode step: "on" and "off" as given; otherwise (the engine
    settles "auto" from how long the run is) only on CUDA, where launching kernels one by one
    leaves the GPU idle. On CPU there is no launch overhead to save, and on MPS torch's
    compiler is not mature enough to trust with a run."""
    if requested in ("on", "off", "graph"):
        return requested == "on"  # "graph" is its own path (model.graph_decode)
    return device.startswith("cuda")


# Files of which a model directory holds at least one when it ships its tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
GGUF_SUFFIX = ".gguf"


def check_model_path(model: str) -> str:
    """Fail fast, naming the path, when a local model path is missing or holds no model.
    Returns the path to load: a model directory, a GGUF file (given, or the one GGUF file
    of a directory without config.json), or a hub id found in the local cache."""
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() == GGUF_SUFFIX:
            require_gguf(model)
            return str(path)
        if path.is_dir() and (path / "config.json").is_file():
            return str(path)
        ggufs = sorted(path.glob(f"*{GGUF_SUFFIX}")) if path.is_dir() else []
        if len(ggufs) == 1:
            require_gguf(model)
            return str(ggufs[0])
        if len(ggufs) > 1:
            raise ModelLoadError(f"{model}: holds {len(ggufs)} GGUF files and no config.json: "
                                 f"pass one of them, e.g. -m {ggufs[0]}")
        raise ModelLoadError(f"{model}: not a model directory (no config.json)")
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or model.endswith(
            GGUF_SUFFIX):
        raise ModelLoadError(f"{model}: model path not found")
    return check_cached_hub_id(model)


def check_cached_hub_id(model: str) -> str:
    """A hub id is only looked up in the local Hugging Face cache: nothing reaches the
    network, and one missing there is named with the cache searched and the way out."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is simply not in the cache
        found = None
    if not isinstance(found, str):
        raise ModelLoadError(f"{model}: not a local directory and not in the Hugging Face "
                             f"cache ({constants.HF_HUB_CACHE}): download it first or pass "
                             "a path")
    return model


def stay_offline() -> None:
    """Nothing reaches the network: models come from disk or the local cache. Set before
    huggingface_hub is first imported, which reads it once; ``local_files_only`` on every
    load covers a process that imported it earlier. A user's own setting is kept."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def require_gguf(model: str) -> None:
    """transformers reads GGUF files with the gguf package, an optional extra."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UsageError(f"{model}: loading a GGUF file needs the gguf package: "
                         "pip install 'tui-eval[gguf]'") from None


@contextlib.contextmanager
def quiet_gguf_conversion() -> Iterator[None]:
    """transformers dequantises a GGUF file under a tqdm bar of its own, which its logging
    switches do not reach and which would garble our log: turned off while loading."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF support: nothing to quieten
        yield
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def load_source(model_path: str) -> tuple[str, dict[str, Any]]:
    """What ``from_pretrained`` takes for ``model_path``: the directory or hub id, and for
    a GGUF file its directory with the file's name as ``gguf_file``."""
    path = Path(model_path)
    if path.suffix.lower() == GGUF_SUFFIX and path.is_file():
        return str(path.parent), {"gguf_file": path.name}
    return model_path, {}


def tokenizer_missing(model_path: str) -> bool:
    """Whether a local model directory holds no tokenizer file at all."""
    path = Path(model_path)
    return path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES)


def require_accelerate() -> None:
    """Spreading a model over devices is accelerate's work; it is an optional extra."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise UsageError("--device-map needs accelerate: pip install 'tui-eval[multi-gpu]'"
                         ) from None


def model_devices(model: Any) -> tuple[str, ...]:
    """Every device holding some of the model's weights, as torch names them ('cuda:1');
    weights offloaded to disk sit on the meta device until used and are left out."""
    found = {str(tensor.device) for tensor in (*model.parameters(), *model.buffers())}
    return tuple(sorted(found - {"meta"}))


def quiet_transformers() -> None:
    """Our own log says what is loading; transformers' progress bars would garble it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class HFBackend:
    """A tokenizer and model pair with batched, left-padded generation."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto",
                 chat_template: bool = False, simulate_oom_above: int | None = None,
                 compile: bool | str = False, compile_decode: bool = True,
                 device_map: str | None = None, max_memory: str | None = None) -> None:
        """``compile``: True/"on" for the static-shape path (static KV cache, batches padded
        to a few fixed shapes, the decode step compiled by transformers); "auto" decides by
        device (see ``resolve_compile``). ``compile_decode=False`` keeps the static path but
        skips torch.compile: the same shapes and padding, for tests and CPU comparisons.
        ``device_map``: accelerate places the weights ("auto", "balanced", …), within
        ``max_memory`` when given (sizes per device: "0=70GiB,cpu=200GiB"); ``device`` is
        then where the inputs go, known once the weights are loaded."""
        self.model_name = model
        stay_offline()
        self.model_path = check_model_path(model)
        self.device_map = device_map
        self.max_memory = parse_device_budgets(max_memory) if max_memory else None
        if device_map is not None:
            require_accelerate()  # before the tokenizer and the weights take their time
        quiet_transformers()
        self.tokenizer = self._load_tokenizer()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.simulate_oom_above = simulate_oom_above
        self.use_chat_template = chat_template and bool(
            getattr(self.tokenizer, "chat_template", None))
        self.model: Any = None
        # every device the weights are on: the device alone until a device map spreads them
        self.devices: tuple[str, ...] = (self.device,)
        self._config_file: Any = None  # the model config read without the weights
        self.load_seconds = 0.0
        # Prompts longer than this many tokens lose their left part (truncate = "left");
        # None keeps every prompt whole.
        self.prompt_token_limit: int | None = None
        self.compile = (compile if isinstance(compile, bool)
                        else resolve_compile(compile, self.device))
        self.compile_decode = compile_decode
        self.shapes = ShapePlanner()
        self.compile_seconds = 0.0  # all calls so far; the engine reports its run's share
        # (start, end) perf_counter times of each compilation: a meter leaves them out of
        # the GPU's utilisation, which is near zero while the CPU compiles
        self.compile_spans: list[tuple[float, float]] = []
        self._stop_strings_work: bool | None = None  # see _reads_stop_strings
        # Called with the shape just before a call compiles it, so that the engine can log
        # "compiling for shape …" (at the first batch, and again after an OOM lowers it).
        self.on_new_shape: Callable[[StaticShape], None] | None = None
        self._graphs: Any = None  # graph_decode.GraphDecoder, made at the first graph call

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        if tokenizer_missing(self.model_path):
            raise ModelLoadError(f"{self.model_name}: no tokenizer in the model directory "
                                 f"(none of {', '.join(TOKENIZER_FILES)})")
        source, options = load_source(self.model_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **options)
        except Exception as exc:  # transformers raises many types for a bad directory
            raise ModelLoadError(f"{self.model_name}: cannot load tokenizer: "
                                 f"{_one_line(exc)}") from None
        tokenizer.padding_side = "left"  # generation appends on the right
        tokenizer.truncation_side = "left"  # a cut prompt keeps its end, next to the answer
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"{self.model_name}: tokenizer has neither a pad nor an "
                                     "eos token")
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load_model(self) -> None:
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        placement: dict[str, Any] = {}
        if self.device_map is not None:
            placement = {"device_map": self.device_map, "max_memory": self.max_memory}
        source, options = load_source(self.model_path)
        try:
            with quiet_gguf_conversion():
                model = AutoModelForCausalLM.from_pretrained(
                    source, dtype=self.dtype, local_files_only=True, **placement, **options)
        except Exception as exc:
            raise ModelLoadError(f"{self.model_name}: cannot load model: "
                                 f"{_first_line(exc)}") from None
        if self.device_map is None:
            # transformers wraps .to in a decorator whose type takes the model twice
            self.model = model.to(self.device).eval()  # type: ignore[arg-type]
        else:  # accelerate's hooks move activations between the devices
            self.model = model.eval()
            self.device = str(model.get_input_embeddings().weight.device)
            self.devices = model_devices(model)
        self.load_seconds = time.perf_counter() - started

    def model_config(self) -> Any:
        """The model's config: the loaded model's, or read from its directory without the
        weights (to check inputs against the model's length before a long load)."""
        if self.model is not None:
            return self.model.config
        if self._config_file is None:  # read once: every check of a run asks again
            from transformers import AutoConfig

            source, options = load_source(self.model_path)
            try:
                self._config_file = AutoConfig.from_pretrained(source, local_files_only=True,
                                                               **options)
            except Exception as exc:  # transformers raises many types for a bad directory
                raise ModelLoadError(f"{self.model_name}: cannot load model config: "
                                     f"{_first_line(exc)}") from None
        return self._config_file

    def render(self, prompt: str, turns: list[dict[str, str]] | None = None) -> str:
        """The text the model sees: the prompt, or with the chat template its turns (a
        system turn, few-shot user/assistant pairs, the record; None: one user turn
        holding the prompt)."""
        if not self.use_chat_template:
            return prompt
        return self.tokenizer.apply_chat_template(
            turns or [{"role": "user", "content": prompt}], tokenize=False,
            add_generation_prompt=True)

    @property
    def _add_special_tokens(self) -> bool:
        return not self.use_chat_template  # the chat template already holds BOS

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each rendered prompt's length in tokens, as the model will see it (cut to
        ``prompt_token_limit`` when that is set). With a fast tokenizer the lengths are read
        off the Rust encodings: turning 588k encodings into Python lists of ids and masks
        first took longer than the tokenising itself."""
        limit = self.prompt_token_limit
        counts = self._full_token_counts(texts)
        return counts if limit is None else [min(count, limit) for count in counts]

    def _full_token_counts(self, texts: list[str]) -> list[int]:
        rust = getattr(self.tokenizer, "backend_tokenizer", None)
        split_special = bool(getattr(self.tokenizer, "split_special_tokens", False))
        # the transformers call would first reset padding and truncation left on the Rust
        # tokenizer by a padded call: take the short cut only when there is nothing to reset
        if (rust is not None and rust.padding is None and rust.truncation is None
                and getattr(rust, "encode_special_tokens", False) == split_special):
            encodings = rust.encode_batch(texts, add_special_tokens=self._add_special_tokens)
            return [len(encoding) for encoding in encodings]
        encoded = self.tokenizer(texts, add_special_tokens=self._add_special_tokens,
                                 return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]
    def _encode(self, texts: list[str], **padding: Any) -> Any:
        """Token ids and attention mask for a batch, left-padded as ``padding`` says and,
        with ``prompt_token_limit`` set, each prompt first cut from the left to it (special
        tokens such as BOS are kept)."""
        options: dict[str, Any] = {"add_special_tokens": self._add_special_tokens}
        if self.prompt_token_limit is None:
            return self.tokenizer(texts, return_tensors="pt", **padding, **options)
        ids = self.tokenizer(texts, truncation=True, max_length=self.prompt_token_limit,
                             **options)
        return self.tokenizer.pad(ids, return_tensors="pt", **padding)

    def context_limit(self) -> ContextLimit | None:
        """The model's maximum positions, from its config (read without loading the
        weights), else from the tokenizer's model_max_length when that is a real figure;
        None when neither says."""
        try:
            config = self.model_config()
        except ModelLoadError:  # loading the weights will name what is wrong
            config = None
        if config is not None:
            text_config = (config.get_text_config() if hasattr(config, "get_text_config")
                           else config)
            for name in POSITION_ATTRIBUTES:
                value = getattr(text_config, name, None)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return ContextLimit(value, name)
        length = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(length, int) and 0 < length < SENSIBLE_MAX_LENGTH:
            return ContextLimit(length, "tokenizer model_max_length")
        return None

    def _simulated_oom(self, rows: int) -> None:
        import torch

        raise torch.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate a batch of {rows} rows "
            f"(simulated: --simulate-oom-above {self.simulate_oom_above})")

    # ── the compiled static-shape path ──────────────────────────────────────────

    @property
    def compiles(self) -> bool:
        """Whether a new shape means a torch.compile (rather than only a new static cache)."""
        return self.compile and self.compile_decode

    def shape_for(self, texts: list[str], max_new_tokens: int,
                  planner: ShapePlanner | None = None) -> StaticShape:
        """The static shape a batch of these rendered prompts runs at (compile on), by the
        run's planner unless another is given."""
        longest = max(self.token_counts(texts), default=1)
        return (planner or self.shapes).plan(len(texts), longest, max_new_tokens,
                                             model_cache_tokens=self._model_cache_tokens())

    def is_new_shape(self, texts: list[str], max_new_tokens: int) -> bool:
        """Whether generating for these prompts needs a shape not yet run (compile on): a
        compilation, unless ``compile_decode`` is off."""
        return self.compile and self.shapes.is_new(self.shape_for(texts, max_new_tokens))

    @property
    def compiled_shapes(self) -> list[tuple[int, int]]:
        """(rows, cache tokens) of every shape that ran, sorted."""
        return sorted(self.shapes.compiled)

    def reserve_shape(self, rows: int, longest_prompt_tokens: int, max_new_tokens: int) -> None:
        """Optional, before a run's first batch: its batch size (capped at its sample count)
        and longest prompt, so that the whole run uses a single shape from the start."""
        self.shapes.reserve(rows, longest_prompt_tokens, max_new_tokens)

    def _model_cache_tokens(self) -> int:
        # transformers sizes each static cache to at least the longest it made for this
        # model (to avoid recompiling), so the planner must know that length too
        return int(getattr(self.model, "_previous_max_cache_length", 0) or 0)

    def _static_options(self, shape: StaticShape, compile_decode: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"cache_implementation": "static"}
        if _takes_max_cache_len():
            options["max_cache_len"] = shape.cache_tokens
        if not compile_decode:
            options["disable_compile"] = True
            return options
        config = self._compile_config()
        if config is not None:
            options["compile_config"] = config
        return options

    def _compile_config(self) -> Any:
        """transformers' defaults (inductor, reduce-overhead: CUDA graphs) on CUDA. Elsewhere
        transformers compiles only when told to, and CUDA graphs do not apply."""
        use_inductor_cache()
        try:
            from transformers import CompileConfig
        except ImportError:  # older transformers: cache_implementation="static" alone
            return None
        if self.device.startswith("cuda"):
            return CompileConfig()
        config = CompileConfig(mode="default")
        # transformers' own switch for compiling off-GPU (declared None, read as a flag)
        config._compile_all_devices = True  # type: ignore[assignment]
        return config

    def _generate_static(self, texts: list[str], options: dict[str, Any], *,
                         aside: bool = False) -> tuple[list[list[int]], StaticShape, float]:
        """Pad the batch to its static shape, compile the shape first if it is new, generate,
        and drop the dummy rows. ``aside``: a call apart from the run (a batch-size probe):
        its own shape on a planner of its own, not compiled and not announced, so that the
        run's shapes, and what has really been compiled, stay as they were."""
        import torch

        max_new_tokens = options["max_new_tokens"]
        planner = ShapePlanner() if aside else self.shapes
        compile_decode = self.compile_decode and not aside
        announce = None if aside else self.on_new_shape
        shape = self.shape_for(texts, max_new_tokens, planner)
        # dummy rows repeat a real prompt: under greedy decoding they end with it, so they
        # never keep the batch running longer than its real rows would
        padded = texts + [texts[0]] * (shape.rows - len(texts))
        encoded = self._encode(padded, padding="max_length",
                               max_length=shape.prompt_tokens).to(self.device)
        static = self._static_options(shape, compile_decode)
        new = planner.is_new(shape)
        # a single new token has no decode step, so nothing to compile
        compiling = new and compile_decode and max_new_tokens > 1
        compile_seconds = 0.0
        try:
            if new and announce is not None:
                announce(shape)
            if self.simulate_oom_above is not None and shape.rows > self.simulate_oom_above:
                self._simulated_oom(shape.rows)  # the dummy rows take memory too
            if compiling and "max_cache_len" in static:
                compile_seconds = self._warm_up(encoded, options, static)
            started = time.perf_counter()
            with torch.inference_mode():
                output = self.model.generate(**encoded, **options, **static)
            if compiling and "max_cache_len" not in static:
                # transformers cannot be told the cache length, so a short warm-up call
                # would size it differently: the whole first call counts as compiling
                self._synchronize()
                compile_seconds = time.perf_counter() - started
                self.compile_spans.append((started, started + compile_seconds))
        except BaseException:
            planner.failed(shape)
            raise
        planner.succeeded(shape)
        self.compile_seconds += compile_seconds
        new_ids = output[:len(texts), encoded["input_ids"].shape[1]:].tolist()
        return new_ids, shape, compile_seconds

    def _warm_up(self, encoded: Any, options: dict[str, Any], static: dict[str, Any]) -> float:
        """Run a few decode steps at the new shape (the same rows and cache length), so that
        compiling it is timed apart from generating."""
        import torch

        steps = min(WARMUP_NEW_TOKENS, options["max_new_tokens"])
        # greedy and without stop strings: the compiled step is the model's forward alone,
        # and a sampled warm-up would consume the run's seeded random numbers
        warm = {key: value for key, value in options.items()
                if key not in ("stop_strings", "tokenizer", "stopping_criteria")}
        warm.update(max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                    temperature=None, top_p=None, top_k=None)
        started = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(**encoded, **warm, **static)
        self._synchronize()
        ended = time.perf_counter()
        self.compile_spans.append((started, ended))
        return ended - started

    def _synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    # ── generation ──────────────────────────────────────────────────────────────

    def generate(self, texts: list[str], *, max_new_tokens: int, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, stop: list[str] | None = None,
                 force_length: bool = False,
                 on_step: Callable[[], bool] | None = None, graph: bool = False,
                 static: bool | None = None) -> Generation:
        """Generate for rendered prompts. ``force_length`` disables early stopping, so every
        row produces ``max_new_tokens`` (the batch-size probes need the worst case).
        ``on_step`` is called as each new token is chosen; when it returns True generation
        ends there (the probes time a few decode steps of a full-length call this way).

        With compile on, the batch runs at its static shape (see ``shape_for``): greedy
        results equal the eager path's; under sampling the dummy rows draw random numbers
        too, so a seed gives other samples than eagerly (equally valid ones).

        ``graph``: this call decodes greedily with our own loop, its decode step a CUDA
        graph captured per shape (see ``graph_unsupported`` for when it falls back to the
        path above); its output equals the eager path's.

        ``static``: for a call apart from the run, its path named by the caller rather than
        taken from ``compile``: False runs it eagerly with the dynamic cache; True on the
        static cache (allocated whole by the prefill: the true peak memory) at the batch's
        own shape, without torch.compile and apart from the run's shapes (see
        ``_generate_static``). The batch-size probes try many sizes this way, each of which
        would otherwise be a compilation, without changing what the run's calls do."""
        import torch

        if graph and texts and self.graph_unsupported(
                do_sample=do_sample, force_length=force_length, on_step=on_step) is None:
            return self._generate_graph(texts, max_new_tokens, stop or [])

        tok = self.tokenizer
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
        criteria: list[Any] = []
        if not force_length and stop:
            if self._reads_stop_strings(stop):
                options.update(stop_strings=stop, tokenizer=tok)
            else:
                criteria.append(decoded_stop_criterion(tok, stop))
        if on_step is not None:
            criteria.append(step_callback_criterion(on_step))
        if criteria:
            from transformers import StoppingCriteriaList

            options["stopping_criteria"] = StoppingCriteriaList(criteria)
        shape: StaticShape | None = None
        compile_seconds = 0.0
        if (self.compile if static is None else static) and texts:
            new_ids, shape, compile_seconds = self._generate_static(texts, options,
                                                                    aside=static is not None)
        else:
            if self.simulate_oom_above is not None and len(texts) > self.simulate_oom_above:
                self._simulated_oom(len(texts))
            encoded = self._encode(texts, padding=True).to(self.device)
            with torch.inference_mode():
                output = self.model.generate(**encoded, **options)
            new_ids = output[:, encoded["input_ids"].shape[1]:].tolist()
        return self._finish(new_ids, stop or [], force_length=force_length, shape=shape,
                            compile_seconds=compile_seconds)

    def _reads_stop_strings(self, stop: list[str]) -> bool:
        """Whether transformers' own stop-string check can take this tokenizer: it reads
        the vocabulary as text and fails on some (a character-level one); those stop with
        ``decoded_stop_criterion`` instead."""
        if self._stop_strings_work is None:
            from transformers.generation.stopping_criteria import StopStringCriteria

            try:
                StopStringCriteria(self.tokenizer, stop)
                self._stop_strings_work = True
            except (ValueError, IndexError, KeyError):
                self._stop_strings_work = False
        return self._stop_strings_work

    def _finish(self, new_ids: list[list[int]], stop: list[str], *, force_length: bool,
                shape: StaticShape | None, compile_seconds: float) -> Generation:
        """Texts from the new ids: each row up to its end token, cut at a stop string."""
        tok = self.tokenizer
        end_ids = {tok.pad_token_id, tok.eos_token_id, *self._eos_ids()}
        texts_out: list[str] = []
        counts: list[int] = []
        for row in new_ids:
            end = next((i for i, t in enumerate(row) if t in end_ids), None)
            length = len(row) if end is None else end + 1
            text = tok.decode(row[:length], skip_special_tokens=True)
            cut = cut_at_stop(text, stop)
            # A row that a stop string ended is padded while the batch runs on: its first
            # pad is no generated token (an end token the model wrote is one).
            if end is not None and cut != text:
                length = end
            counts.append(length if not force_length else len(row))
            texts_out.append(cut)
        return Generation(texts=texts_out, new_tokens=counts, shape=shape,
                          compile_seconds=compile_seconds)

    # ── the CUDA-graph decode path ──────────────────────────────────────────────

    def graph_unsupported(self, *, do_sample: bool = False, force_length: bool = False,
                          on_step: Callable[[], bool] | None = None) -> str | None:
        """Why a call cannot take the graph path (it then runs as without ``graph``), or
        None: the loop is greedy and stops on end tokens and stop strings only."""
        if do_sample:
            return "sampling"
        if force_length or on_step is not None:
            return "a probe"
        if self.device_map is not None:
            return "a model spread over devices"
        if self.model is None:
            return "no model loaded"
        return supports(self.model)

    def _graph_decoder(self) -> Any:
        if self._graphs is None or self._graphs.model is not self.model:
            self._graphs = GraphDecoder(self.model, capture=self.device.startswith("cuda"))
        return self._graphs

    def _generate_graph(self, texts: list[str], max_new_tokens: int,
                        stop: list[str]) -> Generation:
        """The batch at its static shape (padded rows repeat the first prompt, as on the
        compiled path) through the graph decoder."""
        tok = self.tokenizer
        shape = self.shape_for(texts, max_new_tokens)
        decoder = self._graph_decoder()
        padded = texts + [texts[0]] * (shape.rows - len(texts))
        encoded = self._encode(padded, padding="max_length",
                               max_length=shape.prompt_tokens).to(self.device)
        eos_ids = self._eos_ids()
        pad_id = tok.pad_token_id

        def holds_stop(ids: list[int]) -> bool:
            return holds_stop_string(tok.decode(ids, skip_special_tokens=True), stop)

        def stop_check(rows: list[list[int]]) -> list[bool]:
            return [holds_stop(row) for row in rows]

        def stop_at(row: list[int]) -> int | None:
            """The fewest tokens whose text holds a stop string (it stays held after)."""
            if not holds_stop(row):
                return None
            low, high = 1, len(row)
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if holds_stop(row[:middle]) else (middle + 1, high)
            return low

        new = not decoder.has(shape.key)
        try:
            if new and self.on_new_shape is not None:
                self.on_new_shape(shape)
            if self.simulate_oom_above is not None and shape.rows > self.simulate_oom_above:
                self._simulated_oom(shape.rows)
            run = decoder.generate(encoded["input_ids"], encoded["attention_mask"],
                                   cache_tokens=shape.cache_tokens,
                                   max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                                   pad_id=pad_id, stop_check=stop_check if stop else None)
        except BaseException:
            self.shapes.failed(shape)
            decoder.clear()  # an OOM: the smaller batch tried next gets the kept caches' memory
            raise
        self.shapes.succeeded(shape)
        if run.setup_seconds > 0:
            ended = time.perf_counter()
            self.compile_spans.append((ended - run.setup_seconds, ended))
        self.compile_seconds += run.setup_seconds
        ids = as_generate_lays_out(run.ids[:len(texts)], eos_ids, pad_id,
                                   stop_at if stop else None)
        return self._finish(ids, stop, force_length=False, shape=shape,
                            compile_seconds=run.setup_seconds)

    def _eos_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            return []
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def step_callback_criterion(on_step: Callable[[], bool]) -> Any:
    """``on_step`` as a transformers stopping criterion: called once per new token, its
    answer applies to every row."""
    from transformers import StoppingCriteria

    class StepCallback(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), bool(on_step()), dtype=torch.bool,
                              device=input_ids.device)

    return StepCallback()


def decoded_stop_criterion(tokenizer: Any, stop: list[str]) -> Any:
    """A row is done once the text it generated holds a stop string: the new tokens decoded
    at each step. For tokenizers whose vocabulary transformers' StopStringCriteria cannot
    read; the prompt's own text never counts."""
    from transformers import StoppingCriteria

    class DecodedStop(StoppingCriteria):
        prompt_width: int | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            if self.prompt_width is None:  # the first call follows the first new token
                self.prompt_width = input_ids.shape[1] - 1
            rows = input_ids[:, self.prompt_width:].tolist()
            done = [holds_stop_string(tokenizer.decode(row, skip_special_tokens=True), stop)
                    for row in rows]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return DecodedStop()


# torch.compile's on-disk caches, unless the user set them: a second process compiling the
# same model and shape reads the compiled graph back instead of compiling it again.
INDUCTOR_CACHE_ENV = {"TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}


def use_inductor_cache() -> None:
    """Point torch.compile's caches at the user's cache directory before compiling; a
    variable the user set is left alone."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))
    for name, value in INDUCTOR_CACHE_ENV.items():
        os.environ.setdefault(name, value)
    # the configs read their variables at import, which may have happened already
    for module, name, variable in (
            ("torch._inductor.config", "fx_graph_cache", "TORCHINDUCTOR_FX_GRAPH_CACHE"),
            ("torch._functorch.config", "enable_autograd_cache",
             "TORCHINDUCTOR_AUTOGRAD_CACHE")):
        try:
            config = importlib.import_module(module)
            if hasattr(config, name):
                setattr(config, name, os.environ[variable] == "1")
        except (ImportError, AttributeError):  # another torch: the variables alone then
            pass


@functools.cache
def _takes_max_cache_len() -> bool:
    """Whether generate can be told the static cache's length (transformers 5.x)."""
    from transformers import GenerationConfig

    return hasattr(GenerationConfig(), "max_cache_len")


def holds_stop_string(text: str, stop: list[str]) -> bool:
    return any(marker and marker in text for marker in stop)


def cut_at_stop(text: str, stop: list[str]) -> str:
    """End the text where the first stop string appears."""
    cut = len(text)
    for marker in stop:
        at = text.find(marker)
        if marker and at != -1:
            cut = min(cut, at)
    return text[:cut]

"""What every command does before it generates or scores: pick the demo when asked for
nothing, settle the task, open the tokenizer, read the data, make the task (``prepare``),
then load the weights and describe the run (``Prepared``). The evaluation, the tuner and
the bench share these steps so they fail the same way and log the same lines.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tui_eval import __version__
from tui_eval.config import DEFAULTS, ConfigSource, EvalConfig, check_together
from tui_eval.data import (
    ChoiceDataset,
    Dataset,
    PromptSpec,
    answers_by_index,
    is_choice_dataset,
    load_choice_dataset,
    load_dataset,
)
from tui_eval.device.memcap import apply_max_memory, is_per_device
from tui_eval.engine.tasks import RunTask, make_task
from tui_eval.errors import UsageError
from tui_eval.i18n import LogFn
from tui_eval.model.backend import HFBackend
from tui_eval.model.loglikelihood import resolve_target_delimiter
from tui_eval.prompts import PromptStyle
from tui_eval.results.run_config import RunConfig
from tui_eval.results.run_dir import RunDir

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_MODEL = DEMO_DIR / "model"
DEMO_DATA = DEMO_DIR / "arithmetic.jsonl"
# The demo model has 64 positions and its answers take at most 5 tokens: the general default
# (512) would not fit after its prompts.
DEMO_MAX_TOKENS = 16
DEMO_CHOICE_DATA = DEMO_DIR / "arithmetic_choice.jsonl"
# The demo tokenizer reads digits and operators only and has no space token: "5+8=" is
# continued by "13" itself.
DEMO_TARGET_DELIMITER = ""


def settle_config(config: EvalConfig, log: LogFn | None = None) -> EvalConfig:
    """The config a run goes by: the demo when asked for nothing, and the task settled."""
    return with_task(with_demo_defaults(config, log), log)


def with_demo_defaults(config: EvalConfig, log: LogFn | None = None) -> EvalConfig:
    """No model and no data means the built-in demo (its choice set with --task choice);
    one without the other is a usage error. The generation demo generates DEMO_MAX_TOKENS
    unless max_tokens was changed from its default."""
    if config.model is None and config.data is None:
        if log is not None:
            log("INFO", "demo_run", path=DEMO_DIR)
        demo = replace(config, model=str(DEMO_MODEL), data=str(DEMO_DATA))
        if config.max_tokens == DEFAULTS["max_tokens"]:
            demo = replace(demo, max_tokens=DEMO_MAX_TOKENS)
        if config.task == "choice":
            delimiter = (DEMO_TARGET_DELIMITER if config.target_delimiter == DEFAULTS[
                "target_delimiter"] else config.target_delimiter)
            return replace(config, model=str(DEMO_MODEL), data=str(DEMO_CHOICE_DATA),
                           target_delimiter=delimiter)
        if log is not None and demo.max_tokens != config.max_tokens:
            log("INFO", "demo_max_tokens", max_tokens=demo.max_tokens)
        return demo
    if config.model is None:
        raise UsageError("no model: pass -m MODEL (or neither -m nor -d to run the demo)")
    if config.data is None:
        raise UsageError("no dataset: pass -d DATA (or neither -m nor -d to run the demo)")
    return config


def with_task(config: EvalConfig, log: LogFn | None = None) -> EvalConfig:
    """An unset task is read from the data: a choice task when its first record holds a
    list under ``choices_field`` (or a choices_template is set), else generation."""
    if config.task == "generate" and log is not None and answers_by_index(
            config.data or "", config.choices_field, config.answer_field):
        log("WARNING", "task_generate_on_index", field=config.choices_field)
    if config.task is not None:
        return config
    if config.choices_template is not None or is_choice_dataset(config.data or "",
                                                                  config.choices_field):
        if log is not None:
            log("INFO", "task_choice_detected", field=config.choices_field)
        return replace(config, task="choice")
    return replace(config, task="generate")


def open_backend(config: EvalConfig, log: LogFn) -> HFBackend:
    """Check the model path and load the tokenizer: cheap, and before any data is read."""
    check_together(config)  # the app builds its config from the form, not resolve_config
    budgets = config.max_memory if is_per_device(config.max_memory) else None
    backend = HFBackend(config.model or "", device=config.device, dtype=config.torch_dtype,
                        chat_template=config.chat_template,
                        simulate_oom_above=config.simulate_oom_above,
                        device_map=config.device_map, max_memory=budgets)
    if config.chat_template and not backend.use_chat_template:
        log("WARNING", "chat_template_missing")
    return backend


def render_prompt(model: str, prompt: str, turns: list[dict[str, str]] | None = None) -> str:
    """A sample's prompt as the model's chat template renders it: the engine's own
    rendering (tokenizer only, on the CPU), so a front end shows what was generated from."""
    return HFBackend(model, device="cpu", chat_template=True).render(prompt, turns)


def prompt_spec(config: EvalConfig) -> PromptSpec:
    """How the config builds each record's prompt and target."""
    return PromptSpec(
        prompt_template=config.prompt_template, target_template=config.target_template,
        choices_template=config.choices_template, prompt_field=config.prompt_field,
        answer_field=config.answer_field, id_field=config.id_field,
        choices_field=config.choices_field, num_fewshot=config.num_fewshot,
        fewshot_file=config.fewshot_file, fewshot_seed=config.fewshot_seed,
        # a few-shot example's answer follows its prompt inside one turn: "auto" is a space
        style=PromptStyle(target_delimiter=resolve_target_delimiter(config.target_delimiter,
                                                                    chat_template=False),
                          fewshot_delimiter=config.fewshot_delimiter,
                          system_prompt=config.system_prompt))


def read_dataset(config: EvalConfig, log: LogFn) -> Dataset | ChoiceDataset:
    """The samples of a generation task, or the contexts and choices of a choice task,
    their prompts built (templates, few-shot examples) and checked before any run
    directory exists."""
    dataset: Dataset | ChoiceDataset
    spec = prompt_spec(config)
    if config.task == "choice":
        dataset = load_choice_dataset(config.data or "", on_bad_line=config.on_bad_line,
                                      limit=config.limit, spec=spec)
    else:
        dataset = load_dataset(config.data or "", on_bad_line=config.on_bad_line,
                               limit=config.limit, spec=spec)
    for line in dataset.skipped:
        where, _, reason = line.partition(": ")
        log("WARNING", "skipped_line", where=where, reason=reason)
    if dataset.skipped:
        log("INFO", "skipped_lines", n=len(dataset.skipped), path=dataset.path)
    log("INFO", "data_loaded", n=len(dataset.samples), path=dataset.path)
    return dataset


def load_weights(backend: HFBackend, config: EvalConfig, log: LogFn) -> None:
    """Cap CUDA memory first (so the weights count against the cap), then load."""
    apply_max_memory(config.max_memory, backend.device, log)
    mapped = config.device_map is not None
    log("INFO", "loading_model", model=config.model, dtype=backend.dtype_name,
        device=f"{config.device_map} device map" if mapped else backend.device)
    backend.load_model()
    log("INFO", "model_loaded", seconds=backend.load_seconds, dtype=backend.dtype_name,
        device=", ".join(backend.devices) if mapped else backend.device)


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"tui_eval": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def run_description(config: EvalConfig, backend: HFBackend) -> RunConfig:
    """config.json: the resolved config and what it ran on."""
    return RunConfig(config=config.to_dict(), versions=library_versions(),
                     device=backend.device, device_name=device_description(backend.device),
                     dtype=backend.dtype_name, host=socket.gethostname())


def log_config_source(source: ConfigSource | None, log: LogFn) -> None:
    """The run log's first line: the config file the run read, and the keys it set."""
    if source is None:
        return
    if not source.keys:
        log("INFO", "config_file_empty", path=source.path)
        return
    log("INFO", "config_file_found" if source.found else "config_file",
        path=source.path, keys=", ".join(source.keys))


@dataclass
class Prepared:
    """A config made ready to run: settled, its tokenizer open, its data read, its task
    made; the weights load when the caller is ready for them."""

    config: EvalConfig
    backend: HFBackend
    dataset: Dataset | ChoiceDataset
    task: RunTask
    log: LogFn

    def load_weights(self) -> None:
        """Load the weights, unless the backend came loaded (bench reuses one model)."""
        if self.backend.model is None:
            load_weights(self.backend, self.config, self.log)

    def describe(self, run_dir: RunDir) -> None:
        """config.json: the resolved config and what it runs on."""
        run_dir.write_config(run_description(self.config, self.backend))


def prepare(config: EvalConfig, log: LogFn, *, backend: HFBackend | None = None,
            settled: Callable[[EvalConfig], EvalConfig] | None = None) -> Prepared:
    """Settle the config, open the tokenizer (or take ``backend``), read the data and make
    the task, in that order, so every command fails the same way on the same input.
    ``settled`` sees the settled config before anything opens (a rank's own device; the
    bench refusing a table already there)."""
    config = settle_config(config, log)
    if settled is not None:
        config = settled(config)
    backend = backend or open_backend(config, log)
    dataset = read_dataset(config, log)
    # a choice task checks its pairs here
    task = make_task(config, backend, dataset)
    return Prepared(config=config, backend=backend, dataset=dataset, task=task, log=log)

"""What a run does with its samples: generate answers (engine.generation) or score choices
(engine.choice). The run loop, resume, the OOM policies, tuning and metrics are shared
(engine.evaluation); a task says what the batch unit is, how a batch runs, and when a
sample's row is finished."""

from __future__ import annotations

from typing import Any, Protocol

from tui_eval.batching.oom_policies import BatchWork
from tui_eval.batching.tuner import BatchSizeTuner
from tui_eval.cancel import CancelToken
from tui_eval.config import EvalConfig
from tui_eval.data import ChoiceDataset, Dataset
from tui_eval.engine.choice import ChoiceTask
from tui_eval.engine.generation import GenerationTask
from tui_eval.i18n import LogFn
from tui_eval.model.backend import HFBackend
from tui_eval.results.predictions import PredictionRow


class RunTask(Protocol):
    name: str  # the config's task: "generate" or "choice"
    compile_path: str  # the path that ran: "off", "on" (compiled static cache) or "graph"
    compile_seconds: float  # this try's compiling so far, apart from the work's time

    def check(self, samples: list[Any], log: LogFn) -> None:
        """Refuse, before anything is written or loaded, what this task cannot run
        (a prompt longer than the model's context); ``plan`` follows."""

    def plan(self, samples: list[Any]) -> list[Any]:
        """The batch units for these samples, in the order they run."""

    def costs(self, samples: list[Any]) -> list[int]:
        """Each sample's work in tokens, to share a run's samples evenly between processes."""

    def started_line(self, total: int, batch_size: int) -> tuple[str, dict[str, object]]:
        """The log line that opens the run: its message key and values."""

    def tuner(self, items: list[Any], **options: Any) -> BatchSizeTuner:
        """A batch-size tuner over the units ``plan`` gave."""

    def start(self, items: list[Any], batch_size: int, log: LogFn) -> None:
        """Before the first batch of ``items`` (``plan``'s units) at ``batch_size``: set up
        the path the batches run on (generation: the compiled static shape)."""

    def after_first_batch(self, seconds: float, batch_size: int, items_left: list[Any],
                          log: LogFn, cancel: CancelToken) -> None:
        """After the first batch, which took ``seconds``: decide what the batches left run
        on (generation: compile = "auto")."""

    def finish(self) -> None:
        """After the last batch, or a stop: undo what ``start`` set up."""

    def work(self) -> BatchWork[Any, Any]:
        """How a batch runs, once the weights are loaded."""

    def warm_up(self, sample: Any) -> None:
        """One small batch, so that one-time costs do not count against a measurement."""

    def rows(self, results: list[Any]) -> list[PredictionRow]:
        """The rows of the samples these results finish."""

    def tokens(self, results: list[Any]) -> int:
        """Tokens generated (or read, scoring choices) for these results."""


def make_task(config: EvalConfig, backend: HFBackend,
              dataset: Dataset | ChoiceDataset) -> RunTask:
    """The task of a settled config (see ``preparation.settle_config``) over its dataset."""
    if config.task == "choice":
        assert isinstance(dataset, ChoiceDataset)
        return ChoiceTask(config, backend, dataset)
    return GenerationTask(config, backend)

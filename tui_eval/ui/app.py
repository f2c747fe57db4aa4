"""The Textual app: config, gauges, progress, log and results around one engine.

Engine events reach the panes through one method, ``apply_event``, on the UI thread. The
engine (and auto-tune) run in a thread worker and send their events through
``EvalApp.bridge``, which may be called from any thread; ``tui-eval watch`` feeds the same
bridge from events.jsonl with ``read_only=True``, which hides editing and the run actions.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from tui_eval.cancel import CancelToken
from tui_eval.config import DEFAULTS, EvalConfig
from tui_eval.device.monitor import HostReading, Sampler, Snapshot
from tui_eval.engine import DEMO_MAX_TOKENS, Comparison, Evaluation
from tui_eval.errors import UsageError
from tui_eval.events import Event, Progress, RunFailed, TuneFinished
from tui_eval.events.view import Change, RunView, changes_phase
from tui_eval.results import PREDICTIONS_FILE, RunMetrics, holds_bench
from tui_eval.ui.bridge import EngineEvent, EventBridge, GaugeReadings, ProgressReady
from tui_eval.ui.chart import BENCH_TAB, ChartScreen
from tui_eval.ui.compare import CompareAskScreen, CompareScreen
from tui_eval.ui.config_text import save_config
from tui_eval.ui.hangup import install_app_hangup
from tui_eval.ui.samples import SamplesScreen
from tui_eval.ui.screens import ConfirmScreen
from tui_eval.ui.themes import (
    DEFAULT_16_COLOUR_THEME,
    DEFAULT_THEME,
    load_theme_dirs,
    terminal_has_few_colours,
    theme_dirs,
)
from tui_eval.ui.tuning import run_auto_tune
from tui_eval.ui.widgets.config_form import ConfigPane
from tui_eval.ui.widgets.gauges import GaugesPane
from tui_eval.ui.widgets.log_pane import LogPane
from tui_eval.ui.widgets.output_area import OutputArea
from tui_eval.ui.widgets.progress import ProgressPane
from tui_eval.ui.widgets.results import ResultsPane
from tui_eval.ui.wording import APP_RESUME_WORDS, field_words

RUN_ACTIONS = ("start", "cancel", "tune", "save_config")
PROGRESS_REDRAW_S = 0.25  # however fast the batches, the progress pane redraws 4 times a second
CYCLED_BUILTIN_THEMES = ("textual-dark", "textual-light")
FULL_FOOTER_WIDTH = 100  # columns from which the footer also shows ^p palette
THEME_SETTLE_S = 0.15  # t presses this close together make one theme switch
HANGUP_EXIT_GRACE_S = 5.0  # after SIGHUP and the run's last write, the longest clean exit


def describe_error(error: BaseException | None) -> str:
    """A failure in the app's words: the fields, where the engine names flags."""
    if error is None:
        return "unknown error"
    if isinstance(error, UsageError):
        return field_words(str(error))
    return f"{type(error).__name__}: {error}"


class EvalApp(App[int]):
    """``read_only``: a viewer of someone else's run (``tui-eval watch``): the config is shown
    but not editable, and start/cancel/auto-tune/save are hidden."""

    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "tui-eval"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]
    AUTO_FOCUS = "#log"
    NOTIFICATION_TIMEOUT = 3  # seconds; failures stay longer (their own timeouts)
    BINDINGS = [
        Binding("s", "start", "Start", tooltip="Start the evaluation with these settings"),
        Binding("c", "cancel", "Cancel", tooltip="Stop after the batch in flight"),
        Binding("a", "tune", "Tune", tooltip="Find the fastest batch size that fits"),
        Binding("t", "next_theme", "Theme", tooltip="Switch to the next colour theme"),
        Binding("l", "focus_log", "Log", tooltip="Focus the log to scroll it"),
        Binding("r", "focus_results", "Results",
                tooltip="Focus the results to scroll them (the auto-tune's probe table)"),
        Binding("p", "samples", "Samples", tooltip="Browse the run's samples: w wrong only, "
                "/ search, enter opens one"),
        Binding("g", "chart", "Chart",
                tooltip="samples/s and peak memory against batch size: auto-tune, bench"),
        Binding("v", "compare", "Compare",
                tooltip="Compare this run with another: metrics and changed verdicts"),
        # not in the footer: the Config pane's border says it
        Binding("ctrl+s", "save_config", "Save", show=False,
                tooltip="Save the settings to the config file"),
        Binding("q", "quit", "Quit", tooltip="Quit (asks first while a run is going)"),
        Binding("escape", "focus_log", "Leave field", show=False),
    ]

    def __init__(self, config: EvalConfig, *, config_path: Path | None = None,
                 read_only: bool = False, sampler: Sampler | None = None,
                 theme_directories: list[Path] | None = None,
                 run_options: dict[str, Any] | None = None,
                 subtitle: str | None = None) -> None:
        super().__init__()
        self.initial_config = config
        self.config_path = config_path
        self.read_only = read_only
        self.sampler = sampler
        self.run_options = dict(run_options or {})  # extra Evaluation arguments (resume…)
        self.bridge = EventBridge(self)
        self.activity: str | None = None  # "run" or "tune" while the engine worker is busy
        self.poll_seconds = config.gpu_poll_seconds
        self._cancel = CancelToken()
        self._quit_when_idle = False
        self._failure_reported = False
        self._offer_tuned_size = False
        self._progress_drawn_at = 0.0
        self._progress_draw_pending = False
        self.progress_draws = 0  # how often the progress pane was redrawn (coalescing test)
        self._theme_target: str | None = None  # where queued theme presses lead
        self.theme_settle_s = THEME_SETTLE_S
        self.theme_switches = 0  # themes applied by t (coalescing test)
        self._theme_timer: Timer | None = None
        self._demo_max_tokens: int | None = None  # max tokens the demo put in the field
        self.hung_up = False  # SIGHUP: the terminal is gone; the app is on its way out
        self._engine_done = threading.Event()  # set by the engine thread as it ends
        self._engine_done.set()
        self._unmounted = threading.Event()  # the app has shut down
        self._watchdog: threading.Thread | None = None
        self._undo_hangup: Callable[[], None] | None = None
        self.run_dir: Path | None = None  # the latest run's results directory
        self.view = RunView()  # the events shown so far, as the panes draw them
        # The panes, kept here rather than queried: the app feeds them while another screen
        # (the samples browser, a dialog) is in front of them.
        self.config_pane: ConfigPane
        self.gauges_pane: GaugesPane
        self.progress_pane: ProgressPane
        self.log_pane: LogPane
        self.results_pane: ResultsPane
        loaded = load_theme_dirs(theme_dirs() if theme_directories is None
                                 else theme_directories)
        for theme in loaded.themes:
            self.register_theme(theme)
        self.file_theme_names = [theme.name for theme in loaded.themes]
        self.startup_problems = list(loaded.problems)
        self.theme = self._initial_theme(config.theme)
        self.sub_title = subtitle or (config.model or "built-in demo")

    def _initial_theme(self, wanted: str | None) -> str:
        if wanted:
            if wanted in self.available_themes:
                return wanted
            self.startup_problems.append(
                f"theme '{wanted}' not found (available: {', '.join(self.theme_names())})")
        return self._default_theme()

    def _default_theme(self) -> str:
        """The theme an unset ``theme`` key means on this terminal."""
        if terminal_has_few_colours():
            if DEFAULT_16_COLOUR_THEME in self.available_themes:
                return DEFAULT_16_COLOUR_THEME
            return "ansi-dark"
        return DEFAULT_THEME

    def theme_names(self) -> list[str]:
        builtins = sorted(name for name in self.available_themes
                          if name not in self.file_theme_names)
        return self.file_theme_names + builtins

    # ── layout ────────────────────────────────────────────────────────────────────────

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="side"):
                config = ConfigPane(self.initial_config, theme_names=self.theme_names(),
                                    read_only=self.read_only, id="config")
                config.border_title = "Config (read-only)" if self.read_only else "Config"
                config.border_subtitle = "" if self.read_only else "ctrl+s save"
                self.config_pane = config
                yield config
                gauges = GaugesPane(id="gauges")
                gauges.border_title = "GPU / CPU"
                self.gauges_pane = gauges
                yield gauges
            with Vertical(id="centre"):
                idle = ("waiting for the run's events…" if self.read_only
                        else "idle: press s to start, a to auto-tune")
                progress = ProgressPane(idle, id="progress")
                progress.border_title = "Progress"
                self.progress_pane = progress
                yield progress
                with OutputArea(id="output"):
                    log = LogPane(id="log", reword=None if self.read_only else field_words)
                    log.border_title = "Log"
                    self.log_pane = log
                    yield log
                    results = ResultsPane(id="results")
                    results.border_title = "Results"
                    self.results_pane = results
                    yield results
        yield Footer(compact=True)

    def on_resize(self, event: events.Resize) -> None:
        # every key in the footer: below FULL_FOOTER_WIDTH the palette's own entry gives
        # way (ctrl+p still opens it)
        for footer in self.query(Footer):
            footer.show_command_palette = event.size.width >= FULL_FOOTER_WIDTH

    def on_mount(self) -> None:
        for problem in self.startup_problems:
            self.notify(problem, title="Theme skipped", severity="error", timeout=12)
        if self.sampler is None:
            self.sampler = Sampler()
        # however the theme is changed (t, the command palette), the field and ctrl+s follow
        self.watch(self, "theme", self._show_theme_in_config, init=False)
        self._poll_gauges()
        self._undo_hangup = install_app_hangup(self.stop_and_quit, self._start_watchdog)
        if not self.read_only:
            self._follow_demo_max_tokens()
            self.log_pane.add_line("NOTE", "edit the settings on the left (esc leaves a "
                                   "field); s starts a run")

    # ── engine events: the one way into the panes ─────────────────────────────────────

    def apply_event(self, event: Event) -> None:
        """Show one engine event. UI thread only; other threads call ``self.bridge(event)``.
        The event goes into ``view``; the panes draw what it changed from there."""
        view = self.view
        change = view.apply(event)
        if change is Change.LOG:
            self.log_pane.add_event(view.logs[-1])
        elif change is Change.PROGRESS and view.progress is not None:
            self.progress_pane.show_progress(view.progress)
        elif change is Change.TRY and view.try_started is not None:
            self.progress_pane.reset("starting: loading the model…")
            if not self.read_only:  # a watcher knows the run's directory better than the run
                self.run_dir = Path(view.try_started.run_dir)
        elif change is Change.STARTED and view.started is not None:
            self.progress_pane.show_started(view.started)
            self.results_pane.clear_metrics()
            self.sub_title = view.started.run_dir
        elif change is Change.TUNE_STEP:
            self.results_pane.add_probe(view.tune_steps[-1])
        elif change is Change.TUNE and view.tune is not None:
            self._show_tune(view.tune)
        elif change is Change.FINISHED and view.metrics is not None:
            self._show_finished(view.metrics)
        elif change is Change.FAILED and view.failure is not None:
            self._show_failure(view.failure.error)

    def _show_tune(self, tune: TuneFinished) -> None:
        self.results_pane.show_tune(tune)
        self.progress_pane.reset(f"auto-tune chose batch size {tune.chosen_batch_size}")
        if self._offer_tuned_size:
            self._offer_tuned_size = False
            self._offer_batch_size(tune.chosen_batch_size)

    def _show_failure(self, error: str) -> None:
        self._failure_reported = True
        error = error if self.read_only else field_words(error)
        self.progress_pane.reset("failed: see the log")
        self.log_pane.add_line("ERROR", f"run failed: {error}")
        self.notify(error, title="Run failed", severity="error", timeout=10)

    def _show_finished(self, metrics: RunMetrics) -> None:
        self.results_pane.show_metrics(metrics)
        self.progress_pane.show_finished(metrics)
        if metrics.partial:
            self.notify(f"Stopped after {metrics.n}/{metrics.n_total} samples; "
                        "finished batches are on disk.", title="Run cancelled")
            return
        first = next(iter(metrics.metrics.items()), None)
        score = f"{first[0]} {first[1]:.3f} · " if first else ""
        self.notify(f"{score}{metrics.n} samples; table in Results, p for the samples",
                    title="Run finished")

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if not changes_phase(event):
            self.apply_event(event)
            return
        # The bridge holds the newest progress event. One from before this event is drawn
        # first; one from after it (a watcher reading a backlog gets both at once) after,
        # or the start would cover the progress it has already made.
        pending = self.bridge.take_progress()
        if pending is not None and pending.time < event.time:
            self._draw_progress(pending)
            pending = None
        self.apply_event(event)
        if pending is not None:
            self._draw_progress(pending)

    def on_progress_ready(self, message: ProgressReady) -> None:
        # draw at most PROGRESS_REDRAW_S apart; the bridge keeps the newest in the meantime
        wait = self._progress_drawn_at + PROGRESS_REDRAW_S - time.monotonic()
        if wait > 0:
            if not self._progress_draw_pending:
                self._progress_draw_pending = True
                self.set_timer(wait, self._draw_pending_progress)
            return
        self._draw_pending_progress()

    def _draw_pending_progress(self) -> None:
        self._progress_draw_pending = False
        event = self.bridge.take_progress()
        if event is not None:
            self._draw_progress(event)

    def _draw_progress(self, event: Progress) -> None:
        self._progress_drawn_at = time.monotonic()
        self.progress_draws += 1
        self.apply_event(event)

    # ── gauges: one poll at a time, re-armed after each (never overlapping) ───────────

    @work(thread=True, group="gauges", exclusive=True, exit_on_error=False, name="gauges")
    def _poll_gauges(self) -> None:
        assert self.sampler is not None
        try:
            snapshot = self.sampler.sample()
        except Exception as exc:  # the sampler should not raise; the gauges must go on
            snapshot = Snapshot(time=time.time(), gpus=(), host=HostReading(),
                                gpu_note=f"readings failed: {exc}")
        self.post_message(GaugeReadings(snapshot))

    def on_gauge_readings(self, message: GaugeReadings) -> None:
        self.gauges_pane.apply_snapshot(message.snapshot)
        self.set_timer(self.poll_seconds, self._poll_gauges, name="gauges")

    # ── config pane ───────────────────────────────────────────────────────────────────

    def _show_theme_in_config(self, name: str) -> None:
        field = self.config_pane.values().get("theme")
        if (field or self._default_theme()) != name:  # an unset field stays unset
            self.config_pane.set_value("theme", name)

    def _follow_demo_max_tokens(self) -> None:
        """The field shows what a run would use: the demo (no model, no data) generates
        DEMO_MAX_TOKENS where max tokens is left at its default; once a model or data is
        filled in, the default comes back."""
        values = self.config_pane.values()
        demo = (values.get("model") is None and values.get("data") is None
                and values.get("task") != "choice")
        current = values.get("max_tokens")
        if demo and current == DEFAULTS["max_tokens"]:
            self._show_max_tokens(DEMO_MAX_TOKENS)
            self._demo_max_tokens = DEMO_MAX_TOKENS
        elif not demo and self._demo_max_tokens is not None:
            if current == self._demo_max_tokens:
                self._show_max_tokens(DEFAULTS["max_tokens"])
            self._demo_max_tokens = None

    def _show_max_tokens(self, value: int) -> None:
        """Show what a run would use without counting it as the user's change: ctrl+s
        writes what the user changed only."""
        untouched = "max_tokens" not in self.config_pane.unsaved()
        self.config_pane.set_value("max_tokens", value)
        if untouched:
            self.config_pane.mark_saved({"max_tokens": value})

    def on_config_pane_changed(self, message: ConfigPane.Changed) -> None:
        if message.key in ("model", "data", "task"):
            self._follow_demo_max_tokens()
        elif message.key == "max_tokens" and message.value != self._demo_max_tokens:
            self._demo_max_tokens = None  # the user's value from now on
        if message.key == "theme":
            self.theme = message.value or self._default_theme()
        elif message.key == "gpu_poll_seconds":
            self.poll_seconds = float(message.value)

    def _valid_config(self, purpose: str) -> EvalConfig | None:
        """The form's config, or None after saying which field is wrong."""
        errors = self.config_pane.errors()
        if errors:
            key, error = next(iter(errors.items()))
            self.notify(error, title=f"Cannot {purpose}", severity="error")
            self.log_pane.add_line("NOTE", f"cannot {purpose}: {error}")
            self.config_pane.focus_field(key)
            return None
        return self.config_pane.config()

    # ── actions ───────────────────────────────────────────────────────────────────────

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in RUN_ACTIONS:
            return False
        if action in (*RUN_ACTIONS, "focus_log", "focus_results", "samples", "chart",
                      "compare") and \
                len(self.screen_stack) > 1:
            return False  # over the main screen (the samples browser): its own keys only
        # the footer holds every key at 80 columns by leaving out what cannot be done now
        if action == "cancel" and self.activity is None:
            return False
        # the palette's entry for a tune still says why not
        return not (action == "tune" and self.activity is not None)

    def _refuse_if_busy(self) -> bool:
        if self.hung_up:
            return True  # quitting: the terminal is gone
        if self.activity is None:
            return False
        what = "A run" if self.activity == "run" else "Auto-tune"
        self.notify(f"{what} is already going; press c to cancel it first.",
                    title="Not started", severity="warning")
        return True

    def _set_activity(self, activity: str | None) -> None:
        self.activity = activity
        self.refresh_bindings()

    def action_start(self) -> None:
        if self.read_only or self._refuse_if_busy():
            return
        config = self._valid_config("start")
        if config is None:
            return
        self._cancel = CancelToken()
        self._failure_reported = False
        self.results_pane.clear_metrics()
        if config.batch_size == "auto":
            self.results_pane.start_tune()  # the run tunes first: a fresh table for it
        self.progress_pane.reset("starting: loading the model…")
        self._set_activity("run")
        self._engine_done.clear()
        self._evaluate(config, self._cancel)

    def action_tune(self) -> None:
        if self.read_only or self._refuse_if_busy():
            return
        config = self._valid_config("auto-tune")
        if config is None:
            return
        self._cancel = CancelToken()
        self._failure_reported = False
        self._offer_tuned_size = True
        self.results_pane.start_tune()
        self.progress_pane.reset("auto-tune: probing batch sizes on the longest prompts…")
        self._set_activity("tune")
        self._engine_done.clear()
        self._tune(config, self._cancel)

    def action_cancel(self) -> None:
        if self.activity is None:
            self.notify("Nothing is running.", severity="warning")
            return
        if self._cancel.cancelled:
            return
        self._cancel.cancel()
        self.log_pane.add_line("NOTE", "cancelling: the run stops after the batch in flight")
        self.notify("Stopping after the batch in flight…", title="Cancelling")

    def action_next_theme(self) -> None:
        # A switch restyles every widget (about a second of CPU): presses that come while
        # one is pending only move the target; it is applied once the keys pause.
        cycle = list(dict.fromkeys([*CYCLED_BUILTIN_THEMES, *self.file_theme_names]))
        current = self._theme_target or self.theme
        position = cycle.index(current) if current in cycle else -1
        pending = self._theme_target is not None
        self._theme_target = cycle[(position + 1) % len(cycle)]
        if pending and self._theme_timer is not None:
            self._theme_timer.reset()
        else:
            self._theme_timer = self.set_timer(self.theme_settle_s, self.apply_pending_theme)

    @property
    def pending_theme(self) -> str | None:
        """Where the t presses not yet applied lead, or None."""
        return self._theme_target

    def apply_pending_theme(self) -> None:
        if self._theme_timer is not None:
            self._theme_timer.stop()  # when called before the keys pause
        name, self._theme_target, self._theme_timer = self._theme_target, None, None
        if name is None or self.hung_up:
            return
        self.theme = name  # the config field follows (_show_theme_in_config)
        self.theme_switches += 1
        self.notify(f"Theme: {name} (ctrl+s keeps it)", timeout=2)

    def action_focus_log(self) -> None:
        self.log_pane.focus()

    def action_focus_results(self) -> None:
        if self.results_pane.has_class("-empty"):
            self.notify("No results yet: a run's metrics and an auto-tune's probes show "
                        "here.", title="Results")
            return
        self.results_pane.focus()  # arrows and page keys scroll it; escape leaves

    def samples_dir(self) -> Path | None:
        """Where the samples browser reads predictions.jsonl: the latest run's directory,
        or before any run the output directory set in the config, when it holds one."""
        if self.run_dir is not None:
            return self.run_dir
        output = self.config_pane.values().get("output_dir")
        if output and (Path(output) / PREDICTIONS_FILE).exists():
            return Path(output)
        return None

    def action_samples(self) -> None:
        self.push_screen(SamplesScreen(self.samples_dir))

    def bench_dir(self) -> Path | None:
        """The bench the chart draws: the output directory set in the config."""
        output = self.config_pane.values().get("output_dir")
        return Path(output) if output else None

    def action_chart(self) -> None:
        results = self.results_pane
        bench_dir = self.bench_dir()
        # no tune to draw but a bench: the bench first
        bench_first = not results.probes and bench_dir is not None and holds_bench(bench_dir)
        self.push_screen(ChartScreen(lambda: (results.probes, results.chosen_batch_size),
                                     self.bench_dir, initial=BENCH_TAB if bench_first else None,
                                     can_tune=not self.read_only))

    def action_compare(self) -> None:
        run_a = self.samples_dir()
        if run_a is None:
            self.notify("No run to compare yet: start one, or set an output directory that "
                        "holds one.", title="Compare", severity="warning")
            return

        def answered(comparison: Comparison | None) -> None:
            if comparison is not None:
                self.push_screen(CompareScreen(comparison))

        self.push_screen(CompareAskScreen(run_a), answered)

    def action_save_config(self) -> None:
        if self.read_only:
            return
        if self._valid_config("save") is None:
            return
        path = self.config_path or Path("eval.toml")
        # only what was changed here: a flag's value or a value the file spells its own
        # way (a table, a comment) is not written back
        changed = self.config_pane.unsaved()
        if not changed:
            self.notify(f"Nothing changed since {path} was read or saved.",
                        title="Not saved")
            return
        try:
            save_config(path, changed)
        except (OSError, UsageError) as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        self.config_pane.mark_saved(changed)
        self.config_path = path
        self.notify(f"Saved {', '.join(changed)} to {path}", title="Config saved")

    def stop_and_quit(self) -> None:
        """SIGHUP (the terminal went away): stop the run after the batch in flight, which
        writes partial metrics, then exit. Queued theme switches are dropped and no run
        starts; a watchdog ends the process if the clean exit has not come a few seconds
        after the run's files are closed: Textual's writer can block for good on a dead
        terminal."""
        self._start_watchdog()
        if self.hung_up:
            return
        self.hung_up = True
        self._theme_target = None
        self._cancel.cancel()
        if self.activity is None:
            self.exit(0)
        else:
            self._quit_when_idle = True

    def _start_watchdog(self) -> None:
        """Safe in a signal handler: a thread takes over (it takes no lock here). Not under
        a test's Pilot, whose process must outlive the app."""
        if self._watchdog is None and not self.is_headless:
            self._watchdog = threading.Thread(target=self._exit_if_stuck,
                                              name="hangup watchdog", daemon=True)
            self._watchdog.start()

    def _exit_if_stuck(self) -> None:
        self._cancel.cancel()  # the loop may be blocked: the run stops all the same
        self._engine_done.wait()  # the batch in flight and the partial metrics are written
        if not self._unmounted.wait(HANGUP_EXIT_GRACE_S):
            os._exit(0)

    def on_unmount(self) -> None:
        self._unmounted.set()
        if self._undo_hangup is not None:
            self._undo_hangup()

    async def action_quit(self) -> None:
        if self.activity is None or self.read_only:
            self.exit(0)
            return
        if self._quit_when_idle:
            self.notify("Still stopping after the batch in flight…")
            return

        def answered(stop: bool | None) -> None:
            if not stop:
                return
            self._quit_when_idle = True
            self._cancel.cancel()
            self.log_pane.add_line("NOTE", "quitting after the batch in flight…")
            self.notify("Stopping after the batch in flight, then quitting…")

        self.push_screen(ConfirmScreen(
            "A run is going. Stop it after the batch in flight and quit?\n"
            "Finished batches stay on disk.", yes="Stop and quit", no="Keep running"),
            answered)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not self.read_only:
            yield SystemCommand("Start evaluation", "Run with the settings shown (s)",
                                self.action_start)
            yield SystemCommand("Cancel run", "Stop after the batch in flight (c)",
                                self.action_cancel)
            yield SystemCommand("Auto-tune batch size", "Probe batch sizes and pick the "
                                "fastest that fits (a)", self.action_tune)
            yield SystemCommand("Save config", "Write the settings to the config file "
                                "(ctrl+s)", self.action_save_config)
        yield SystemCommand("Next theme", "Cycle the colour themes (t)", self.action_next_theme)
        yield SystemCommand("Focus log", "Scroll the run's log (l)", self.action_focus_log)
        yield SystemCommand("Focus results", "Scroll the metrics and the auto-tune's probe "
                            "table (r)", self.action_focus_results)
        yield SystemCommand("Browse samples", "Every finished sample: wrong ones, search, "
                            "one in full (p)", self.action_samples)
        yield SystemCommand("Chart", "samples/s and peak memory against batch size: the "
                            "auto-tune, the output directory's bench (g)", self.action_chart)
        yield SystemCommand("Compare with another run…", "Metrics side by side and the "
                            "samples whose verdict changed (v)", self.action_compare)

    # ── the engine worker ─────────────────────────────────────────────────────────────

    @work(thread=True, group="engine", exit_on_error=False, name="evaluation")
    def _evaluate(self, config: EvalConfig, cancel: CancelToken) -> None:
        try:
            Evaluation(config, self.bridge, cancel=cancel, resume_words=APP_RESUME_WORDS,
                       **self.run_options).run()
        finally:
            self._engine_done.set()

    @work(thread=True, group="engine", exit_on_error=False, name="auto-tune")
    def _tune(self, config: EvalConfig, cancel: CancelToken) -> None:
        try:
            run_auto_tune(config, self.bridge, cancel)
        finally:
            self._engine_done.set()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "engine" or not worker.is_finished:
            return
        if event.state == WorkerState.ERROR and not self._failure_reported:
            self.apply_event(RunFailed(error=describe_error(worker.error)))
        self._offer_tuned_size = False
        self._set_activity(None)
        if self._quit_when_idle:
            self.exit(0)

    def _offer_batch_size(self, size: int) -> None:
        if self.read_only:
            return
        if self.config_pane.values().get("batch_size") == size:
            self.notify(f"Batch size {size} is already set.", title="Auto-tune")
            return

        def answered(use: bool | None) -> None:
            if use:
                self.config_pane.set_value("batch_size", size)
                self.notify(f"Batch size set to {size} (ctrl+s saves it).", title="Auto-tune")

        self.push_screen(ConfirmScreen(f"Auto-tune chose batch size {size}.\n"
                                       "Use it for the next run?",
                                       yes=f"Use {size}", no="Keep current"), answered)

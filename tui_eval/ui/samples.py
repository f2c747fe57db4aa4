"""The samples browser (key ``p``): every finished sample of the run, filled in as batches
land, and one sample in full.

Both read the run's predictions.jsonl (``results.PredictionTail``), so the app and
``tui-eval watch`` show the same thing and nothing is kept twice in memory. A thread
follows the file and hands new rows to the screen. ``w`` shows only the wrong samples
(``PredictionRow.passed``: the run's first metric below 1, or an error), ``/`` searches
the id, the prompt and the prediction, Enter opens a sample, escape goes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from tui_eval import engine  # its face: each name loads on first use
from tui_eval.errors import UsageError
from tui_eval.results import PredictionRow, PredictionTail, RunConfig

MAX_SHOWN = 1000  # rows in the table at once; the rest are reached by searching
POLL_SECONDS = 0.5
CELL_CHARS = 28  # prediction and reference cells; the detail view has the whole text
RIGHT_MARK, WRONG_MARK = "✓", "✗"


def one_line(text: str, width: int = CELL_CHARS) -> str:
    """``text`` on one line of at most ``width`` characters."""
    flat = " ⏎ ".join(part.strip() for part in text.splitlines()) if "\n" in text else text
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def score_text(value: float) -> str:
    """1.0 → '1', 0.6667 → '0.67'."""
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def reference_text(row: PredictionRow) -> str:
    return " | ".join(row.references)


def choice_lines(row: PredictionRow) -> str:
    """A choice sample's choices, one a line: its number, summed log-probability, text, and
    which is the gold one and which each rule picked."""
    choices = row.choices or []
    logprobs = list(row.logprobs or [])
    lines = []
    for number, choice in enumerate(choices):
        logprob = logprobs[number] if number < len(logprobs) else None
        marks = [label for label, index in (("gold", row.gold), ("picked (acc)", row.pred),
                                            ("picked per character (acc_norm)", row.pred_norm))
                 if index == number]
        mark = (RIGHT_MARK if number == row.gold else " ") + \
            ("▶" if number == row.pred else " ")
        figure = f"{logprob:9.3f}" if logprob is not None else f"{'-':>9}"
        lines.append(f"{mark} {number + 1:>2}  {figure}  {one_line(choice, 60)}"
                     + (f"  ← {', '.join(marks)}" if marks else ""))
    return "\n".join(lines)


def select_rows(rows: dict[int, PredictionRow], *, wrong_only: bool, query: str
                ) -> list[PredictionRow]:
    """The rows the table shows, in dataset order."""
    return [row for _, row in sorted(rows.items())
            if (not wrong_only or not row.passed()) and (not query or row.matches(query))]


class SamplesScreen(Screen[None]):
    """``run_dir`` is asked again at each look, so that a run started meanwhile (in the
    app) is followed from its own directory."""

    AUTO_FOCUS = "#samples-table"
    COMPONENT_CLASSES: ClassVar[set[str]] = {"samples--right", "samples--wrong"}
    DEFAULT_CSS = """
    SamplesScreen > .samples--right { color: $success; }
    SamplesScreen > .samples--wrong { color: $error; text-style: bold; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the run (clears a search first)"),
        Binding("w", "toggle_wrong", "Wrong only", tooltip="Show only the wrong samples"),
        Binding("slash", "search", "Search", key_display="/",
                tooltip="Search the id, the prompt and the prediction"),
        Binding("enter", "open", "Open", key_display="⏎", tooltip="The sample in full"),
    ]

    def __init__(self, run_dir: Callable[[], Path | None], *,
                 interval: float = POLL_SECONDS) -> None:
        super().__init__()
        self.run_dir_of = run_dir
        self.interval = interval
        self.run_dir: Path | None = None
        self.rows: dict[int, PredictionRow] = {}
        self.metric_names: list[str] = []
        self.wrong_only = False
        self.search_text = ""
        self.shown: list[PredictionRow] = []
        self.loaded = False  # the first look at the file is done
        self.summary = Static("", markup=False, id="samples-summary")
        self.table: DataTable[Any] = DataTable(id="samples-table", cursor_type="row",
                                               zebra_stripes=True)
        self.search = Input(placeholder="search the id, prompt and prediction; enter keeps "
                            "it, escape clears it", id="samples-search", compact=True)
        self._columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.summary
        yield self.table
        yield self.search
        yield Footer()

    def on_mount(self) -> None:
        self.search.display = False
        self.sub_title = "samples"
        self._show()
        self._follow()

    # ── following predictions.jsonl ───────────────────────────────────────────────────

    @work(thread=True, exclusive=True, group="samples", exit_on_error=False,
          name="follow predictions.jsonl")
    def _follow(self) -> None:
        worker = get_current_worker()
        run_dir: Path | None = None
        tail: PredictionTail | None = None
        while not worker.is_cancelled:
            wanted = self.run_dir_of()
            start_over = False
            if wanted != run_dir:
                run_dir, start_over = wanted, True
                tail = PredictionTail(run_dir) if run_dir is not None else None
            rows = tail.poll() if tail is not None else []
            if tail is not None and tail.restarted:
                start_over = True  # rewritten in dataset order at the end, or started over
            if rows or start_over or not self.loaded:
                self.app.call_from_thread(self._take_rows, run_dir, rows, start_over)
            time.sleep(self.interval)

    def _take_rows(self, run_dir: Path | None, rows: list[PredictionRow],
                   start_over: bool) -> None:
        if start_over:
            self.rows.clear()
        self.run_dir = run_dir
        for row in rows:
            self.rows[row.index] = row
            if not self.metric_names:
                self.metric_names = list(row.scores)
        self.loaded = True
        self._show()

    # ── the table ─────────────────────────────────────────────────────────────────────

    def _show(self) -> None:
        view = select_rows(self.rows, wrong_only=self.wrong_only, query=self.search_text)
        self.shown = view[:MAX_SHOWN]
        self.summary.update(self._summary_text(len(view)))
        columns = ("", "id", "prediction", "reference", *self.metric_names, "error")
        selected = self._selected_row()
        if columns != self._columns:
            self.table.clear(columns=True)
            self.table.add_columns(*columns)
            self._columns = columns
        else:
            self.table.clear()
        right = self.get_component_rich_style("samples--right")
        wrong = self.get_component_rich_style("samples--wrong")
        for row in self.shown:
            self.table.add_row(*self._cells(row, right, wrong), key=str(row.index))
        if selected is not None and str(selected.index) in self.table.rows:
            self.table.move_cursor(row=self.table.get_row_index(str(selected.index)),
                                   animate=False)

    def _cells(self, row: PredictionRow, right: Style, wrong: Style) -> list[Any]:
        mark = Text(RIGHT_MARK, style=right) if row.passed() else Text(WRONG_MARK, style=wrong)
        prediction = "(failed)" if row.prediction is None else one_line(row.prediction)
        scores = [score_text(row.scores[name]) if name in row.scores else "-"
                  for name in self.metric_names]
        return [mark, row.id, prediction, one_line(reference_text(row)), *scores,
                one_line(row.error or "", 40)]

    def _summary_text(self, matching: int) -> str:
        if self.run_dir is None:
            return "no run yet: start one (s) and its samples appear here as batches finish"
        if not self.loaded:
            return f"reading {self.run_dir}…"
        if not self.rows:
            return f"no finished samples in {self.run_dir} yet; they appear as batches land"
        wrong = sum(1 for row in self.rows.values() if not row.passed())
        metric = self.metric_names[0] if self.metric_names else "the first metric"
        parts = [f"{len(self.rows):,} samples · {wrong:,} wrong ({metric} < 1 or an error)"]
        searched = f"matching {self.search_text!r}"
        filters = [name for name, active in (("wrong only", self.wrong_only),
                                             (searched, bool(self.search_text))) if active]
        if filters:
            parts.append(f"showing {matching:,} {' and '.join(filters)}")
        if matching > MAX_SHOWN:
            parts.append(f"the first {MAX_SHOWN:,} shown: search to find the others")
        return " · ".join(parts)

    def _selected_row(self) -> PredictionRow | None:
        if not self.shown or self.table.row_count == 0:
            return None
        position = self.table.cursor_row
        return self.shown[position] if 0 <= position < len(self.shown) else None

    def notify_style_update(self) -> None:
        # the marks' colours come from the theme
        super().notify_style_update()
        if self.is_mounted and self.rows:
            self.call_after_refresh(self._show)

    # ── keys ──────────────────────────────────────────────────────────────────────────

    def action_toggle_wrong(self) -> None:
        self.wrong_only = not self.wrong_only
        self._show()

    def action_search(self) -> None:
        self.search.display = True
        self.search.focus()

    @on(Input.Changed, "#samples-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search_text = event.value.strip()
        self._show()

    @on(Input.Submitted, "#samples-search")
    def _search_kept(self) -> None:
        self.table.focus()

    def action_back(self) -> None:
        if self.search.display:  # escape leaves the search first, clearing it
            self.search.value = ""
            self.search_text = ""
            self.search.display = False
            self.table.focus()
            self._show()
            return
        self.dismiss()

    def action_open(self) -> None:
        row = self._selected_row()
        if row is not None:
            self.app.push_screen(SampleScreen(row, chat_model=self._chat_model()))

    @on(DataTable.RowSelected, "#samples-table")
    def _row_chosen(self) -> None:
        self.action_open()

    def _chat_model(self) -> str | None:
        """The model whose chat template wrapped the prompts, when the run used one."""
        if self.run_dir is None:
            return None
        try:
            config = RunConfig.read(self.run_dir).config
        except UsageError:
            return None
        return str(config.get("model")) if config.get("chat_template") else None


def prompt_heading(row: PredictionRow, how: str = "") -> str:
    """The heading over a sample's prompt (``how``: e.g. " (with the chat template)"). A
    prompt cut to fit the context (truncate = "left") is kept whole in the row, so the
    heading says what the model did not see."""
    if not row.truncated:
        return f"Prompt, as the model saw it{how}"
    cut = f"first {row.truncated_tokens} tokens" if row.truncated_tokens else "start"
    return f"Prompt{how}, whole: cut to fit, the model did not see its {cut}"


class SampleScreen(Screen[None]):
    """One sample in full: the prompt as the model saw it, the raw output, a choice
    sample's choices with their log-probabilities, the scores."""

    AUTO_FOCUS = "#sample-body"
    BINDINGS = [Binding("escape", "back", "Back", tooltip="Back to the samples")]

    def __init__(self, row: PredictionRow, *, chat_model: str | None = None) -> None:
        super().__init__()
        self.row = row
        self.chat_model = chat_model
        verdict = "right" if row.passed() else "wrong"
        title, text = prompt_heading(row), row.prompt
        if row.rendered is not None:  # the run kept the text the model saw
            title, text = prompt_heading(row, " (with the chat template)"), row.rendered
        self.prompt_title = Static(title, classes="sample-heading")
        self.prompt = Static(text, markup=False, id="sample-prompt", classes="sample-text")
        self.heading = Static(f"Sample {row.id} (#{row.index + 1} in the dataset): {verdict}",
                              markup=False, id="sample-verdict")

    def compose(self) -> ComposeResult:
        row = self.row
        yield Header()
        with VerticalScroll(id="sample-body"):
            yield self.heading
            yield self.prompt_title
            yield self.prompt
            yield Static("Output", classes="sample-heading")
            output = "(no output: the sample failed)" if row.prediction is None \
                else row.prediction or "(empty)"
            yield Static(output, markup=False, id="sample-output", classes="sample-text")
            yield Static("Reference" if len(row.references) == 1 else "References",
                         classes="sample-heading")
            yield Static("\n".join(row.references), markup=False, classes="sample-text")
            if row.is_choice:
                yield Static(f"Choices ({RIGHT_MARK} gold, ▶ picked; summed log-probability)",
                             classes="sample-heading")
                yield Static(choice_lines(row), markup=False, id="sample-choices",
                             classes="sample-text")
            yield Static("Scores", classes="sample-heading")
            scores = "\n".join(f"{name}: {score_text(value)}"
                               for name, value in row.scores.items()) or "none"
            yield Static(f"{scores}\nnew tokens: {row.new_tokens}", markup=False,
                         id="sample-scores", classes="sample-text")
            if row.error:
                yield Static("Error", classes="sample-heading")
                yield Static(row.error, markup=False, classes="sample-text sample-error")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"sample {self.row.id}"
        if self.chat_model is not None and self.row.rendered is None:
            # a run from before rows kept the rendered text: render it as the engine did
            self.prompt_title.update(prompt_heading(self.row,
                                                    " (applying the chat template…)"))
            self._render_chat_prompt(self.chat_model)

    @work(thread=True, exit_on_error=False, name="chat template")
    def _render_chat_prompt(self, model: str) -> None:
        # the engine's own rendering, so that this is exactly what was generated from

        try:
            text = engine.render_prompt(model, self.row.prompt, self.row.turns)
            title = prompt_heading(self.row, " (with the chat template)")
        except Exception as exc:  # noqa: BLE001 - the sample is still worth showing
            text = self.row.prompt
            title = f"Prompt (the chat template could not be applied here: {exc})"
        self.app.call_from_thread(self._show_prompt, title, text)

    def _show_prompt(self, title: str, text: str) -> None:
        self.prompt_title.update(title)
        self.prompt.update(text)

    def action_back(self) -> None:
        self.dismiss()

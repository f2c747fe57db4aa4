"""The config pane: one editable field per config key, checked as you type with the CLI's
rules and messages (``tui_eval.config.check_value``).

Fields are generated from the key declarations in ``tui_eval.config`` (label, placeholder,
help as the tooltip, in declaration order), so a key added there shows up here. A field
shows its value as it would be typed in TOML (``tui_eval.config.format_text``) and reads
what is typed with the same rules; a value whose text would not read back as that very
value is shown read-only with a note and kept as it is.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.strip import Strip
from textual.validation import ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from tui_eval.config import KEYS, EvalConfig, Key, format_text, shows_exactly, validate_text

KEPT_NOTE = "kept as set: the form cannot edit this value"


class RuleValidator(Validator):
    """The CLI's check for one key, as a Textual validator."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def validate(self, value: str) -> ValidationResult:
        _, error = validate_text(self.key, value)
        return self.success() if error is None else self.failure(error)


def cut_to_fit(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` in ``width`` columns, '…' where it is cut: its end kept (a path's file or
    model name) or its start."""
    if cell_len(text) <= width:
        return text
    if width < 2:
        return "…"[:width]
    kept = text
    while cell_len(kept) > width - 1:
        kept = kept[1:] if keep_end else kept[:-1]
    return "…" + kept if keep_end else kept + "…"


def is_path(text: str) -> bool:
    return ("/" in text or "\\" in text) and not any(char.isspace() for char in text)


class FieldInput(Input):
    """A text field that, when not focused, shows a value (or placeholder) too long for it
    cut with '…'; editing, and the value read back, are the whole text."""

    def render_line(self, y: int) -> Strip:
        room = self.scrollable_content_region.width
        text = self.value or self.placeholder
        if y != 0 or self.has_focus or cell_len(text) <= room:
            return super().render_line(y)
        cut = cut_to_fit(text, room, keep_end=bool(self.value) and is_path(text))
        shown = Text(cut, no_wrap=True, overflow="ignore", end="")
        if not self.value:
            shown.stylize(self.get_component_rich_style("input--placeholder"))
        options = self.app.console_options.update_width(room + 1)
        strip = Strip(self.app.console.render(shown, options)).extend_cell_length(room + 1)
        return strip.apply_style(self.rich_style)

    def on_focus(self) -> None:
        self.refresh()  # the whole value again, to edit

    def on_blur(self) -> None:
        self.refresh()


class ConfigPane(VerticalScroll):
    """``values()`` is the config as the fields stand; ``errors()`` says what is wrong."""

    class Changed(Message):
        """A field now holds a valid value different from before."""

        def __init__(self, key: str, value: Any) -> None:
            super().__init__()
            self.key = key
            self.value = value

    def __init__(self, config: EvalConfig, *, theme_names: list[str], read_only: bool = False,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self._values: dict[str, Any] = config.to_dict()
        # the values as loaded or last saved: ctrl+s writes only the keys changed since
        self._saved: dict[str, Any] = dict(self._values)
        self._errors: dict[str, str] = {}
        self._kept: set[str] = set()  # shown read-only: their text is not read back
        self.theme_names = theme_names
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        for key in KEYS.values():
            label = Label(key.label, markup=False, classes="field-label")
            label.tooltip = f"{key.name}: {key.help}"
            editor = self._editor(key)
            editor.tooltip = f"{key.name}: {key.help}"
            kept = isinstance(editor, Input) and not shows_exactly(key.name,
                                                                   self._values[key.name])
            editor.disabled = self.read_only or kept
            if kept:
                self._kept.add(key.name)
            with Vertical(classes="field", id=f"field-{key.name}"):
                with Horizontal(classes="field-row"):
                    yield label
                    yield editor
                error = Static(KEPT_NOTE if kept else "", markup=False,
                               classes="field-error field-kept" if kept else "field-error",
                               id=f"error-{key.name}")
                error.display = kept
                yield error

    def _editor(self, key: Key) -> Widget:
        rule = key.rule
        value = self._values.get(key.name)
        editor_id = f"edit-{key.name}"
        if key.name == "theme":
            names = list(self.theme_names)
            if value and value not in names:
                names.append(value)
            return Select([(name, name) for name in names], value=value or Select.NULL,
                          allow_blank=True, prompt="default", compact=True, id=editor_id)
        if rule.type == "bool":
            return Select([("true", True), ("false", False)], value=bool(value),
                          allow_blank=False, compact=True, id=editor_id)
        if rule.type == "str" and rule.choices:
            blank = Select.NULL if value is None else value
            return Select([(choice, choice) for choice in rule.choices], value=blank,
                          allow_blank=rule.optional, prompt=key.placeholder or "unset",
                          compact=True, id=editor_id)
        return FieldInput(format_text(value, rule), placeholder=key.placeholder,
                          compact=True, validators=[RuleValidator(key.name)], id=editor_id)

    # ── reading the form ──────────────────────────────────────────────────────────────

    def values(self) -> dict[str, Any]:
        """The last valid value of every field."""
        return dict(self._values)

    def errors(self) -> dict[str, str]:
        """key → 'key: message' for every field whose text is not valid."""
        return dict(self._errors)

    def config(self) -> EvalConfig:
        return EvalConfig(**self._values)

    def unsaved(self) -> dict[str, Any]:
        """The keys whose value changed since the config was loaded or last saved."""
        return {key: value for key, value in self._values.items()
                if self._saved.get(key) != value}

    def mark_saved(self, values: dict[str, Any]) -> None:
        self._saved.update(values)

    def focus_field(self, key: str) -> None:
        self.query_one(f"#edit-{key}").focus()

    # ── setting fields from elsewhere (auto-tune's choice, the theme key) ─────────────

    def set_value(self, key: str, value: Any) -> None:
        editor = self.query_one(f"#edit-{key}")
        # The field's own Changed message would arrive later and could undo a newer value
        # set meanwhile (two quick theme changes): the value is taken here, at once.
        if isinstance(editor, Input):
            with editor.prevent(Input.Changed):
                editor.value = format_text(value, KEYS[key].rule)
        elif isinstance(editor, Select):
            if key == "theme" and value is not None and value not in self.theme_names:
                self.theme_names.append(value)
                editor.set_options([(name, name) for name in self.theme_names])
            with editor.prevent(Select.Changed):
                editor.value = Select.NULL if value is None else value
        self._accept(key, value)

    # ── keeping values and errors in step with the fields ─────────────────────────────

    def _accept(self, key: str, value: Any) -> None:
        self._errors.pop(key, None)
        self._show_error(key, None)
        if self._values.get(key) != value:
            self._values[key] = value
            self.post_message(self.Changed(key, value))

    def _show_error(self, key: str, error: str | None) -> None:
        label = self.query_one(f"#error-{key}", Static)
        label.update(error or "")
        label.display = error is not None
        self.query_one(f"#field-{key}").set_class(error is not None, "-invalid")

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        key = (event.input.id or "").removeprefix("edit-")
        if key in self._kept:
            return
        value, error = validate_text(key, event.value)
        if error is None:
            self._accept(key, value)
        else:
            self._errors[key] = error
            self._show_error(key, error)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        key = (event.select.id or "").removeprefix("edit-")
        self._accept(key, None if event.value is Select.NULL else event.value)

"""The gauges pane: one card per GPU (name, memory, utilisation, temperature, power and a
minute of history) and the host's CPU and RAM. Fed one ``Snapshot`` at a time.

Three or more GPUs whose cards do not all fit the pane are drawn a line each instead
(gpu_rows.py); the cards keep their history meanwhile, so a taller terminal brings them
back whole. One or two GPUs always get their cards.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget

from tui_eval.device.monitor import GpuReading, History, HostReading, Snapshot
from tui_eval.formatting import format_number, format_percent, gib_pair
from tui_eval.ui.widgets.gpu_rows import GpuRows
from tui_eval.ui.widgets.line import Line
from tui_eval.ui.widgets.meter import Meter
from tui_eval.ui.widgets.spark import Spark


def gpu_figures(reading: GpuReading) -> str:
    """'util 45% · 62°C · 310/700 W', or why there is nothing to show."""
    if not reading.responding:
        return "N/A: not responding"
    power = format_number(reading.power_w, digits=0)
    if reading.power_w is not None and reading.power_limit_w is not None:
        power = f"{reading.power_w:.0f}/{reading.power_limit_w:.0f}"
    power += " W" if reading.power_w is not None else ""
    return (f"util {format_percent(reading.util_percent)} · "
            f"{format_number(reading.temperature_c, '°C')} · {power}")


ROWS_FROM = 3  # GPUs; fewer always get their cards
CARD_ROWS = 6  # a card's five lines and the margin above it
HOST_ROWS = 2


def cards_height(gpus: int, note_shown: bool) -> int:
    """Rows the pane's content needs to show every GPU as a card."""
    return int(note_shown) + HOST_ROWS + gpus * CARD_ROWS


def use_rows(gpus: int, room: int, note_shown: bool = False) -> bool:
    """Whether the GPUs are drawn a line each: three or more that do not fit as cards in
    ``room`` rows."""
    return gpus >= ROWS_FROM and cards_height(gpus, note_shown) > room


class GpuCard(Vertical):
    """Five lines for one GPU."""

    def __init__(self, index: int) -> None:
        super().__init__(id=f"gpu-{index}", classes="gpu-card")
        self.index = index
        self.util_history = History()
        self.memory_history = History()
        # kept as attributes so a card can be updated before it has finished mounting
        self.name_line = Line(f"GPU {index}", classes="gpu-name")
        self.memory_meter = Meter("mem", classes="gpu-memory")
        self.figures_line = Line("", classes="gpu-figures")
        self.util_spark = Spark("util", classes="gpu-util-spark")
        self.memory_spark = Spark("mem", classes="gpu-memory-spark")

    def compose(self) -> ComposeResult:
        yield self.name_line
        yield self.memory_meter
        yield self.figures_line
        yield self.util_spark
        yield self.memory_spark

    def show(self, reading: GpuReading, when: float) -> None:
        memory = reading.memory_fraction
        self.util_history.add(when, reading.util_percent)
        self.memory_history.add(when, None if memory is None else memory * 100)
        self.name_line.set(f"GPU {reading.index} · {reading.name}")
        self.memory_meter.show(
            memory, gib_pair(reading.memory_used_bytes, reading.memory_total_bytes))
        self.figures_line.set(gpu_figures(reading))
        self.set_class(not reading.responding, "-not-responding")
        self.util_spark.values = tuple(self.util_history.values())
        self.memory_spark.values = tuple(self.memory_history.values())


class HostCard(Vertical):
    """CPU % and RAM of the machine the app runs on."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cpu_meter = Meter("CPU", id="host-cpu")
        self.ram_meter = Meter("RAM", id="host-ram")

    def compose(self) -> ComposeResult:
        yield self.cpu_meter
        yield self.ram_meter

    def show(self, reading: HostReading) -> None:
        cpu = reading.cpu_percent
        self.cpu_meter.show(None if cpu is None else cpu / 100, format_percent(cpu))
        self.ram_meter.show(
            reading.ram_fraction, gib_pair(reading.ram_used_bytes, reading.ram_total_bytes))


class GaugesPane(VerticalScroll):
    """GPU cards appear with the first snapshot that lists them."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshots_shown = 0
        self.note = Line("reading GPUs…", id="gpu-note")
        self.host = HostCard(id="host")
        self.cards = Vertical(id="gpu-cards")
        self.rows = GpuRows(id="gpu-rows")
        self.rows.display = False
        self.compact = False  # the GPUs are drawn a line each
        self._gpu_count = 0

    def compose(self) -> ComposeResult:
        yield self.note
        yield self.host  # before the GPUs: in view whatever their number
        yield self.cards
        yield self.rows

    def room(self) -> int:
        """Rows of content the pane may grow to: its max height (a share of its column)
        less its border and padding."""
        parent = self.parent
        if not isinstance(parent, Widget) or parent.size.height == 0:
            return self.size.height
        limit = parent.size.height
        max_height = self.styles.max_height
        if max_height is not None:
            limit = min(limit, int(max_height.resolve(parent.size, self.app.size)))
        return limit - self.styles.gutter.height

    def _choose_form(self) -> None:
        compact = use_rows(self._gpu_count, self.room(), bool(self.note.display))
        if compact != self.compact:
            self.compact = compact
            self.cards.display = not compact
            self.rows.display = compact

    def on_resize(self, event: events.Resize) -> None:
        self._choose_form()

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if not self.cards.is_attached:
            return  # the app is closing: a last reading arrived after the panes went
        note = self.note
        if note.text != (snapshot.gpu_note or "") or note.display != bool(snapshot.gpu_note):
            note.set(snapshot.gpu_note or "")
            note.tooltip = snapshot.gpu_note
            note.display = bool(snapshot.gpu_note)
        cards = self.cards
        present = {card.index: card for card in cards.query(GpuCard)}
        wanted = {reading.index for reading in snapshot.gpus}
        for index, card in present.items():
            if index not in wanted:
                card.remove()
        for reading in snapshot.gpus:
            shown = present.get(reading.index)
            if shown is None:
                shown = GpuCard(reading.index)
                cards.mount(shown)
            shown.show(reading, snapshot.time)
        self.rows.show(list(snapshot.gpus))
        self._gpu_count = len(snapshot.gpus)
        self._choose_form()
        self.host.show(snapshot.host)
        self.snapshots_shown += 1


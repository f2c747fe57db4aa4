"""The terminal without the app: printing a run's events as they happen (printer) and
following a run from its results directory in plain lines (watcher)."""

"""The tables a front end prints or writes: a run's summary (``summary``), the bench
table and bench.md with en/zh headers (``bench``), two runs compared (``compare``). Text
only: they read the results directory's types and the engine's outcomes, and load no
Textual.

This layer sits just under the front ends (ui, headless, commands) and over the engine,
which never imports it: what the engine writes itself (run.log, bench.json) stays the
engine's.
"""

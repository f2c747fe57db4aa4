"""When ``compile = "auto"`` turns a faster decode path on: the CUDA-graph one
(``GRAPH_SETUP_SECONDS``, ``GRAPH_SPEEDUP``; model.graph_decode) on CUDA.

The torch.compile figures below are kept for ``decide``'s defaults and the compile path's
messages; ``auto`` no longer picks that path (``--compile on`` does).

Compiling the decode step for a shape costs about ``COMPILE_SECONDS`` (40.2 s and 47.8 s in
two runs on an H200 for a 0.54 B Llama in bf16) and then makes each decode step about
``COMPILED_SPEEDUP`` times faster (6.66x and 5.28x per step at batch size 64 in those runs;
the second is in benchmarks/RESULTS.md). So it pays when the eager generation still ahead
is longer than COMPILE_SECONDS / (1 - 1/COMPILED_SPEEDUP), about 48 s.

``auto`` is off on CPU and MPS (no kernel-launch overhead to save on a CPU; torch's compiler
is not trusted with a run on MPS). On CUDA the run's first batch runs eagerly (its results
are kept like any other's); every batch left is taken to cost what it did (the first has
the longest prompts, so this leans to the high side), and the path is chosen from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui_eval.model.backend import resolve_compile

COMPILE_SECONDS = 40.0
COMPILED_SPEEDUP = 6.0
# Capturing the decode step for a shape: two warm-up steps and one recording. Measured by
# gpu_check on an H200 (0.54 B Llama, bf16, batch size 64, 128-token prompts): 0.11 s of
# setup, 6.28 ms per step against 36.16 ms eager (5.76x; torch.compile: 6.84 ms after a
# 47.8 s compile). Rounded to 1 s and 5x: larger models record more kernels.
GRAPH_SETUP_SECONDS = 1.0
GRAPH_SPEEDUP = 5.0
DECIDE_AFTER_FIRST_BATCH = "auto"


def starting_mode(requested: str, device: str, *, spread: bool = False) -> str:
    """"on", "graph" or "off" from the start, or "auto": eager for the first batch, then
    decide (for the graph path).
    A model spread over several devices (device_map) stays eager under "auto": its
    compiled path is unmeasured."""
    if requested in ("on", "off", "graph"):
        return requested
    if spread:
        return "off"
    return DECIDE_AFTER_FIRST_BATCH if resolve_compile("auto", device) else "off"


@dataclass
class CompileDecision:
    on: bool
    eager_seconds_left: float
    seconds_saved: float


def decide(first_batch_seconds: float, batches_left: int,
           compile_seconds: float = COMPILE_SECONDS,
           speedup: float = COMPILED_SPEEDUP) -> CompileDecision:
    """Compile when the time it would save on the batches left exceeds what it costs."""
    eager_left = max(0, batches_left) * first_batch_seconds
    saved = eager_left * (1 - 1 / speedup)
    return CompileDecision(on=saved > compile_seconds, eager_seconds_left=eager_left,
                           seconds_saved=saved)

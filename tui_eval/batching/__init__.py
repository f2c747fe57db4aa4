"""Batching without torch: the order and split of the work (plan), recovering from a failed
batch (oom_policies), one short probe and its full-length prediction (probe), measuring one
size through a backend (prober), the tuning budget (budget), the search strategies
(strategies: ``TUNE_MODES``) and the tuner that runs them (tuner).

Whatever touches the device (is an error an OOM, freeing memory, metering a call) comes in
as ``DeviceHooks`` (hooks); the engine passes the torch-aware ones from tui_eval.device."""

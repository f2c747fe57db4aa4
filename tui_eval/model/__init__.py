"""Everything that touches the model through Hugging Face and torch: loading it and
generating (backend, static_shapes), scoring choices by log-likelihood (loglikelihood,
prefix_sharing). Batching, OOM recovery and the batch-size search are tui_eval.batching.
Nothing here knows the run's config or its results directory."""

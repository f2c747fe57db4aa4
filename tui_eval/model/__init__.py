"""Everything that touches the model: loading it and generating (backend), scoring choices
by log-likelihood (loglikelihood), the order of samples (batching), recovering from a failed
batch (oom_policies) and finding the fastest batch size (tuner). Nothing here knows the
run's config or its results directory."""

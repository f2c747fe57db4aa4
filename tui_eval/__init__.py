"""tui-eval: evaluate Hugging Face causal language models on local datasets."""

__version__ = "0.1.0"

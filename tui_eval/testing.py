"""Tiny random models built offline, for tests, benchmarks and rehearsals.

Nothing here downloads anything: the tokenizer is trained on a few sentences with the
``tokenizers`` library and the Llama weights are random.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "Add 12 and 30. The sum of 12 and 30 is 42.",
    "Translate to French: cat. The answer is chat.",
    "Name a colour of the sky on a clear day. Blue.",
    "How many legs does a spider have? A spider has eight legs.",
    "Write the number after 99. The number after 99 is 100.",
] * 20


def build_tiny_model(directory: Path, *, with_pad_token: bool = True, hidden_size: int = 64,
                     num_layers: int = 2, vocab_size: int = 320, seed: int = 0) -> Path:
    """Save a random Llama model and a byte-level BPE tokenizer into ``directory``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>" if with_pad_token else None)
    def token_id(token: str) -> int:
        found = fast.convert_tokens_to_ids(token)
        assert isinstance(found, int)  # one token in, one id out
        return found

    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=token_id("<s>"), eos_token_id=token_id("</s>"),
        pad_token_id=token_id("<pad>") if with_pad_token else None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory

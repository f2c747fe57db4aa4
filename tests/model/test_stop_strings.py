"""Stop strings with a tokenizer whose vocabulary transformers' StopStringCriteria cannot
read (the demo model's character-level one): generation stops at them all the same."""

from __future__ import annotations

from tests.helpers import demo_prompts
from tui_eval.model.backend import HFBackend, cut_at_stop


def test_the_demo_tokenizer_stops_at_a_stop_string(demo: HFBackend) -> None:
    texts = demo_prompts(12)
    plain = demo.generate(texts, max_new_tokens=8)
    stopped = demo.generate(texts, max_new_tokens=8, stop=["3"])
    assert not demo._reads_stop_strings(["3"])  # the path under test: our own check
    assert stopped.texts == [cut_at_stop(text, ["3"]) for text in plain.texts]
    cut_rows = [i for i, text in enumerate(plain.texts) if "3" in text[:-1]]
    assert cut_rows, "the demo's answers hold a 3 before their end somewhere"
    for i in cut_rows:  # ended at the stop string, not at the model's end token
        assert stopped.new_tokens[i] < plain.new_tokens[i]
    # one row at a time: the same texts and token counts
    alone = [demo.generate([text], max_new_tokens=8, stop=["3"]) for text in texts]
    assert [g.texts[0] for g in alone] == stopped.texts
    assert [g.new_tokens[0] for g in alone] == stopped.new_tokens


def test_a_stop_string_in_the_prompt_does_not_stop_the_row(demo: HFBackend) -> None:
    [text] = demo_prompts(1)  # "5+8=": the prompt holds "+"
    assert "+" in text
    plain = demo.generate([text], max_new_tokens=8)
    assert demo.generate([text], max_new_tokens=8, stop=["+"]).texts == plain.texts

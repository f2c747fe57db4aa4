"""The samples browser (key p): every finished sample, the wrong ones, search, one in full,
filled live during a run, and the same screen in ``tui-eval watch``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PROMPTS, make_app, run_config, tap, wait_for, watch_app, write_jsonl
from tui_eval.config import EvalConfig
from tui_eval.results import PredictionRow
from tui_eval.ui.samples import RIGHT_MARK, SampleScreen, SamplesScreen, choice_lines

pytestmark = pytest.mark.slow  # Pilot tests: the full suite runs them

SIZE = (100, 32)


def sample_rows() -> list[PredictionRow]:
    """Five samples: three right, one wrong, one failed."""
    answers = [("q1", "2+2=", "4", "4"), ("q2", "3+3=", "6", "6"), ("q3", "4+4=", "8", "9"),
               ("q4", "5+5=", "10", None), ("q5", "6+6=", "12", "12")]
    rows = []
    for index, (sample_id, prompt, reference, prediction) in enumerate(answers):
        right = float(prediction == reference)
        rows.append(PredictionRow(
            index=index, id=sample_id, prompt=prompt, prediction=prediction,
            reference=reference, scores={"exact_match": right, "token_f1": right},
            new_tokens=2, error=None if prediction is not None else "CUDA out of memory"))
    return rows


@pytest.fixture()
def many_samples(tmp_path: Path) -> Path:
    """Enough samples that a run at batch size 1 is still going when the test looks."""
    rows = [{"id": f"{i}-{n}", "question": q, "answer": a}
            for n in range(20) for i, q, a in PROMPTS]
    return write_jsonl(tmp_path / "many.jsonl", rows)


def write_predictions(run_dir: Path, rows: list[PredictionRow]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "predictions.jsonl").write_text("".join(row.to_json() + "\n" for row in rows),
                                               encoding="utf-8")
    return run_dir


def shown_ids(screen: SamplesScreen) -> list[str]:
    return [str(screen.table.get_row_at(number)[1]) for number in range(screen.table.row_count)]


async def open_samples(pilot: Any, count: int) -> SamplesScreen:
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SamplesScreen)
                   and pilot.app.screen.table.row_count == count)
    return pilot.app.screen


def test_browse_filter_search_and_open_a_sample(tmp_path: Path) -> None:
    app = make_app(EvalConfig())
    app.run_dir = write_predictions(tmp_path / "run", sample_rows())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_samples(pilot, 5)
            assert shown_ids(screen) == ["q1", "q2", "q3", "q4", "q5"]
            assert str(screen.summary.render()).startswith(
                "5 samples · 2 wrong (exact_match < 1 or an error)")
            await pilot.press("w")
            assert shown_ids(screen) == ["q3", "q4"]  # the wrong one and the failed one
            assert "(failed)" in [str(cell) for cell in screen.table.get_row_at(1)]
            await pilot.press("w", "slash", *"Q5")  # every sample again, then a search
            assert shown_ids(screen) == ["q5"]
            await pilot.press("enter")  # keeps the search, back to the table
            assert screen.search.display and app.focused is screen.table
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
            detail = app.screen
            assert str(detail.prompt.render()) == "6+6="
            assert str(detail.query_one("#sample-output").render()) == "12"
            assert "exact_match: 1" in str(detail.query_one("#sample-scores").render())
            await pilot.press("escape")
            assert app.screen is screen
            await pilot.press("escape")  # clears the search first
            assert shown_ids(screen) == ["q1", "q2", "q3", "q4", "q5"]
            assert not screen.search.display
            await pilot.press("escape")
            assert len(app.screen_stack) == 1
            assert app.check_action("start", ()) is True  # the main screen's keys are back

    asyncio.run(scenario())


def test_the_browser_fills_while_the_run_goes_on(tiny_model: Path, many_samples: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "run"
    app = make_app(run_config(tiny_model, many_samples, out, batch_size=1, max_tokens=24))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await tap(pilot, "s")
            await wait_for(pilot, lambda: app.run_dir is not None)
            await tap(pilot, "p")
            await wait_for(pilot, lambda: isinstance(app.screen, SamplesScreen))
            screen = app.screen
            await wait_for(pilot, lambda: screen.table.row_count >= 1)
            first = screen.table.row_count
            await wait_for(pilot, lambda: screen.table.row_count > first)
            assert app.activity == "run"  # more rows came while the run went on
            await tap(pilot, "escape")
            await tap(pilot, "c")
            await wait_for(pilot, lambda: app.activity is None)

    asyncio.run(scenario())


def test_the_watch_app_browses_the_run_it_follows(tmp_path: Path) -> None:
    run_dir = write_predictions(tmp_path / "run", sample_rows())
    app = watch_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_samples(pilot, 5)
            await pilot.press("w")
            assert shown_ids(screen) == ["q3", "q4"]

    asyncio.run(scenario())
    assert sorted(path.name for path in run_dir.iterdir()) == ["predictions.jsonl"]


def test_one_sample_shows_its_few_shot_chat_turns_as_the_model_saw_them(
        tmp_path: Path) -> None:
    """A run with a chat template stores the prompt's turns; the screen renders them with
    the model's template again, examples and system turn included."""
    import json
    import shutil

    from tui_eval.engine.preparation import DEMO_MODEL

    model = tmp_path / "chat-model"
    shutil.copytree(DEMO_MODEL, model)
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    turns = [{"role": "system", "content": "Add."}, {"role": "user", "content": "2+2="},
             {"role": "assistant", "content": "4"}, {"role": "user", "content": "1+1="}]
    row = PredictionRow(index=0, id="q1", prompt="Add.2+2= 4\n\n1+1=", prediction="2",
                        reference="2", scores={"exact_match": 1.0}, turns=turns)
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = SampleScreen(row, chat_model=str(model))
            app.push_screen(screen)
            await wait_for(pilot, lambda: "with the chat template" in str(
                screen.prompt_title.render()), timeout=30)
            assert str(screen.prompt.render()) == (
                "<system>Add.<user>2+2=<assistant>4<user>1+1=<assistant>")

    asyncio.run(scenario())


def test_a_sample_shows_the_prompt_the_chat_template_made(tmp_path: Path) -> None:
    """A row that kept its rendered prompt shows it, for a choice run as for generation,
    without loading the tokenizer again."""
    rendered = "<|im_start|>user\nCows drink<|im_end|>\n<|im_start|>assistant\n"
    row = PredictionRow(index=0, id="c0", prompt="Cows drink", rendered=rendered,
                        prediction="water", reference="water", choices=["milk", "water"],
                        logprobs=[-3.0, -1.0], is_greedy=[False, True], pred=1, pred_norm=1,
                        gold=1, scores={"acc": 1.0, "acc_norm": 1.0})
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            app.push_screen(SampleScreen(row, chat_model=str(tmp_path / "no-model")))
            await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen), timeout=5)
            await pilot.pause()
            detail = app.screen
            assert str(detail.prompt.render()) == rendered
            assert str(detail.prompt_title.render()) == (
                "Prompt, as the model saw it (with the chat template)")

    asyncio.run(scenario())


def test_a_cut_prompt_says_what_the_model_did_not_see() -> None:
    from tui_eval.ui.samples import prompt_heading

    whole = PredictionRow(index=0, id="a", prompt="1+2=", prediction="3", reference="3")
    cut = PredictionRow(index=1, id="b", prompt="123+456=", prediction="579", reference="579",
                        truncated=True, truncated_tokens=5)
    assert prompt_heading(whole) == "Prompt, as the model saw it"
    assert prompt_heading(cut) == ("Prompt, whole: cut to fit, the model did not see its "
                                   "first 5 tokens")
    assert "as the model saw it" not in prompt_heading(cut, " (with the chat template)")


def test_a_choice_sample_shows_its_choices_with_log_probabilities_and_marks() -> None:
    row = PredictionRow(index=0, id="c1", prompt="The capital of France is", prediction=" Lyon",
                        reference=" Paris", scores={"acc": 0.0, "acc_norm": 1.0},
                        choices=[" Paris", " Lyon", " Nice"], logprobs=[-4.5, -3.25, None],
                        pred=1, pred_norm=0, gold=0)
    assert choice_lines(row).splitlines() == [
        f"{RIGHT_MARK}   1     -4.500   Paris  ← gold, picked per character (acc_norm)",
        " ▶  2     -3.250   Lyon  ← picked (acc)",
        "    3          -   Nice"]
    app = make_app(EvalConfig())

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            app.push_screen(SampleScreen(row))
            await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
            await pilot.pause()
            shown = str(app.screen.query_one("#sample-choices").render())
            assert shown == choice_lines(row)

    asyncio.run(scenario())

"""Score a multiple-choice set with lm-evaluation-harness and with tui-eval, and compare
acc, acc_norm and every pair's log-likelihood; or generate for a set of prompts with both
and compare every text (``--task generate``).

lm-eval runs in its own environment (``--lm-eval-python``), from a task YAML written here:
``output_type: multiple_choice`` over the local JSONL, with ``doc_to_text: prompt``,
``doc_to_choice: choices`` and ``doc_to_target: answer`` (``generate_until`` with
``until`` and ``max_gen_toks`` for generation). tui-eval runs in this interpreter.

    python scripts/compare_lm_eval.py --lm-eval-python /path/to/venv/bin/python \\
        --workdir /tmp/lmeval-compare --demo
    python scripts/compare_lm_eval.py --lm-eval-python ... --workdir ... --tiny --max-length 16
    python scripts/compare_lm_eval.py --lm-eval-python ... --workdir ... \\
        --model ~/.cache/tui-eval-test-models/SmolLM2-135M-Instruct --data choice.jsonl \\
        --apply-chat-template
    python scripts/compare_lm_eval.py ... --model ... --data qa.jsonl --task generate \\
        --apply-chat-template --max-tokens 32

``--apply-chat-template`` passes lm-eval its ``--apply_chat_template`` and runs tui-eval with
``chat_template = true``: the prompt is the user turn and, for choices, the continuation
follows the assistant header without the task's target delimiter (tui-eval's "auto").

``--task-file PATH.yaml`` (with ``--model``) runs one lm-eval task file through both: lm-eval
from a copy of it whose ``dataset_path`` is ``json``/``csv``/``parquet`` over the split files
tui-eval resolves (offline), ``--log_samples``; tui-eval as ``tui-eval --no-ui --task-file``.
It prints one row per sample where the two disagree: the prompt, the generation or chosen
answer, the verdicts and, for choice tasks, the largest log-likelihood difference.
``--apply-chat-template`` adds lm-eval's ``--fewshot_as_multiturn``.

    python scripts/compare_lm_eval.py --lm-eval-python ... --workdir ... \\
        --model ~/.cache/tui-eval-test-models/SmolLM2-135M-Instruct \\
        --task-file examples/tasks/science_mc.yaml --apply-chat-template

``--demo`` is the shipped arithmetic model and choice set (target delimiter ""); ``--tiny``
builds the test suite's random model and a set of boundary cases: trailing whitespace in
the context, an empty context, a choice that merges with the context's last token, and
single-token choices. ``--max-length`` cuts inputs from the left on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "tui_eval" / "demo"

BOUNDARY_ROWS = [
    ("What is the capital of France?", [" Paris", " Lyon", " The capital is Paris.", " chat"]),
    ("What is the capital of France? ", ["Paris", "Lyon", "Blue"]),  # trailing space
    ("Translate to French: cat.\n", ["chat", "cat", " chat"]),  # trailing newline
    ("", ["Paris is the capital of France.", "Blue.", "The number after 99 is 100."]),
    ("The sum of 12 and 3", ["0 is the sum.", "1 is the sum.", "5 is 42."]),  # "30" merges
    ("Add 12 and 30.", [" 42", " 43", " forty-two", " The sum of 12 and 30 is 42."]),
    ("How many legs does a spider have? Answer with a number please, thanks. A spider has",
     [" eight legs.", " 8", " six legs."]),
    ("Sky?", [" A", " B", " C", " D"]),  # one token each: the choices share a model input
    ("Name a colour of the sky on a clear day, in one word.", [" Blue", " blue", " Red."]),
    ("Write the number after 99. The number after 99 is", [" 100.", " 101.", " 100"]),
]


def write_boundary_set(path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for number, (prompt, choices) in enumerate(BOUNDARY_ROWS):
            row = {"id": f"b{number}", "prompt": prompt, "choices": choices,
                   "answer": number % len(choices)}
            out.write(json.dumps(row) + "\n")


def write_task(task_dir: Path, name: str, data: Path, delimiter: str) -> None:
    task_dir.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML: no quoting questions for the delimiter or the path
    task = {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
        "output_type": "multiple_choice", "doc_to_text": "prompt",
        "doc_to_choice": "choices", "doc_to_target": "answer", "target_delimiter": delimiter,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean",
                         "higher_is_better": True}],
    }
    (task_dir / f"{name}.yaml").write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")


def write_generation_task(task_dir: Path, name: str, data: Path, stop: list[str],
                          max_tokens: int) -> None:
    task_dir.mkdir(parents=True, exist_ok=True)
    task = {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
        "output_type": "generate_until", "doc_to_text": "prompt", "doc_to_target": "answer",
        "generation_kwargs": {"until": stop, "max_gen_toks": max_tokens, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                         "higher_is_better": True}],
    }
    (task_dir / f"{name}.yaml").write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")


def run_lm_eval(python: str, model: Path, task_dir: Path, name: str, out: Path,
                max_length: int | None, batch_size: int,
                chat: bool = False, multiturn: bool = False) -> tuple[dict, list[dict]]:
    model_args = f"pretrained={model},dtype=float32"
    if max_length:
        model_args += f",max_length={max_length}"
    command = [python, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
               "--device", "cpu", "--tasks", name, "--include_path", str(task_dir),
               "--batch_size", str(batch_size), "--log_samples", "--output_path", str(out)]
    if chat:
        command.append("--apply_chat_template")
    if multiturn:
        command.append("--fewshot_as_multiturn")
    print("$ " + " ".join(command), flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"lm-eval failed:\n{done.stderr[-3000:]}")
    results = max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    samples = max(out.rglob(f"samples_{name}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    figures = json.loads(results.read_text(encoding="utf-8"))["results"][name]
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    return figures, sorted(rows, key=lambda r: r["doc_id"])


def run_ours(model: Path, data: Path, delimiter: str, max_length: int | None,
             batch_size: int, chat: bool = False) -> list:
    """Every sample scored as the engine scores it: under a chat template the context is
    the backend's rendering and the delimiter is resolved as the engine resolves it."""
    from dataclasses import replace

    from tui_eval.data import load_choice_dataset
    from tui_eval.model.backend import HFBackend
    from tui_eval.model.loglikelihood import ChoiceScorer, resolve_target_delimiter

    backend = HFBackend(str(model), device="cpu", dtype="float32", chat_template=chat)
    if chat and not backend.use_chat_template:
        sys.exit(f"{model}: the tokenizer has no chat template")
    backend.load_model()
    samples = [replace(s, prompt=backend.render(s.prompt))
               for s in load_choice_dataset(data).samples]
    scorer = ChoiceScorer.from_backend(
        backend, max_length=max_length,
        target_delimiter=resolve_target_delimiter(delimiter, backend.use_chat_template))
    return scorer.score_samples(samples, batch_size=batch_size)


def generate_ours(model: Path, data: Path, workdir: Path, stop: list[str], max_tokens: int,
                  batch_size: int, chat: bool) -> list[dict]:
    """The rows of a tui-eval run of the engine over ``data``."""
    import shutil

    from tui_eval.config import EvalConfig
    from tui_eval.engine.evaluation import Evaluation

    out = workdir / "ours"
    shutil.rmtree(out, ignore_errors=True)
    config = EvalConfig(model=str(model), data=str(data), device="cpu", torch_dtype="float32",
                        lang="en", output_dir=str(out), batch_size=batch_size, task="generate",
                        max_tokens=max_tokens, stop=stop, chat_template=chat)
    Evaluation(config, lambda event: None).run()
    rows = [json.loads(line) for line in
            (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda row: row["index"])


def compare_generations(theirs: list[dict], ours: list[dict]) -> None:
    if len(theirs) != len(ours):
        sys.exit(f"lm-eval generated for {len(theirs)} samples, tui-eval {len(ours)}")
    differ = []
    for row, mine in zip(theirs, ours, strict=True):
        assert str(row["doc"]["id"]) == mine["id"]
        their_text = row["filtered_resps"][0]
        if their_text != mine["prediction"]:
            differ.append((mine["id"], their_text, mine["prediction"]))
    print(f"samples {len(ours)}: identical texts {len(ours) - len(differ)}/{len(ours)}")
    print("| id | lm-eval | tui-eval |\n|---|---|---|")
    for sample_id, their_text, my_text in differ:
        print(f"| {sample_id} | {their_text!r} | {my_text!r} |")


# the datasets builder lm-eval loads a split file with, by suffix
BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def check_lm_eval(python: str) -> None:
    done = subprocess.run([python, "-c", "import lm_eval"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{python}: lm-eval is not installed there (pip install lm-eval; it is not "
                 "a dependency of tui-eval)")


def offline_task_copy(task_file: Path, task_dir: Path) -> str:
    """Write the task file with its splits as local files lm-eval's datasets loader reads
    offline; return the task's name."""
    from tui_eval.taskfile import TaskFile

    task = TaskFile(task_file)
    raw = dict(task.raw)
    files: dict[str, str] = {}
    for key in SPLIT_KEYS:
        split = raw.get(key)
        if isinstance(split, str):
            found = task._split_file(split)  # where tui-eval reads the split from
            if found is None:
                sys.exit(f"{task_file}: {key}: no local file for split {split!r}")
            files[split] = str(found.resolve())
    builders = {BUILDERS[Path(f).suffix] for f in files.values()}
    if len(builders) != 1:
        sys.exit(f"{task_file}: the split files mix formats: {sorted(files.values())}")
    raw.pop("dataset_name", None)
    raw["dataset_path"] = builders.pop()
    raw["dataset_kwargs"] = {"data_files": files}
    task_dir.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML: no quoting questions for templates and delimiters
    (task_dir / f"{raw['task']}.yaml").write_text(json.dumps(raw, indent=2) + "\n",
                                                  encoding="utf-8")
    return str(raw["task"])


def run_task_file_ours(model: Path, task_file: Path, workdir: Path, batch_size: int,
                       chat: bool) -> list[dict]:
    """tui-eval's rows for the task file, from its headless CLI run in ``workdir`` (so that
    no eval.toml of the current directory applies)."""
    import shutil

    out = workdir / "ours"
    shutil.rmtree(out, ignore_errors=True)
    config = workdir / "chat.toml"
    config.write_text(f"chat_template = {'true' if chat else 'false'}\n", encoding="utf-8")
    command = [sys.executable, "-m", "tui_eval", "--no-ui", "-c", str(config), "-m", str(model),
               "--task-file", str(task_file.resolve()), "-b", str(batch_size), "--device",
               "cpu", "-o", str(out)]
    print("$ " + " ".join(command), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tui-eval failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in
            (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda row: row["index"])


def short(text: str, width: int = 60) -> str:
    """A table cell: the text's repr, its middle elided past ``width``; pipes escaped."""
    shown = repr(text)
    if len(shown) > width:
        shown = shown[:width // 2 - 2] + " … " + shown[-(width // 2 - 2):]
    return shown.replace("|", "\\|")


def compare_task_file(theirs: list[dict], ours: list[dict], chat: bool) -> int:
    """Print the summary and one table row per disagreeing sample; return how many
    samples disagree on a verdict."""
    from tui_eval.taskfile import METRICS

    if len(theirs) != len(ours):
        sys.exit(f"lm-eval has {len(theirs)} samples, tui-eval {len(ours)}")
    choice = "logprobs" in ours[0]
    rows: list[str] = []
    same_prompt = same_answer = same_verdict = 0
    worst = 0.0
    for row, mine in zip(theirs, ours, strict=True):
        args = row["arguments"]
        context = args["gen_args_0"]["arg_0"]
        my_context = mine.get("rendered", mine["prompt"]) if chat else mine["prompt"]
        if choice:
            their_lls = [float(lp) for lp, _ in row["filtered_resps"]]
            delta = max(abs(a - b) for a, b in zip(their_lls, mine["logprobs"], strict=True))
            worst = max(worst, delta)
            their_pick = max(range(len(their_lls)), key=their_lls.__getitem__)
            answer = f"{their_pick}: {mine['choices'][their_pick]}"
            my_answer = f"{mine['pred']}: {mine['choices'][mine['pred']]}"
            verdicts = [("acc", row["acc"], float(mine["pred"] == mine["gold"])),
                        ("acc_norm", row["acc_norm"], float(mine["pred_norm"] == mine["gold"]))]
        else:
            delta = 0.0
            answer = row["filtered_resps"][0]
            my_answer = mine["extracted"] if mine["extracted"] is not None \
                else mine["prediction"]
            verdicts = [(name, row[name], mine["scores"][METRICS[name]])
                        for name in row["metrics"] if name in METRICS]
        agree = all(a == b for _, a, b in verdicts)
        same_prompt += context == my_context
        same_answer += answer == my_answer
        same_verdict += agree
        if context != my_context or answer != my_answer or not agree:
            shown = "same" if context == my_context else \
                f"{short(context)} / {short(my_context)}"
            their_v = ", ".join(f"{n} {a:g}" for n, a, _ in verdicts)
            my_v = ", ".join(f"{n} {b:g}" for n, _, b in verdicts)
            rows.append(f"| {mine['id']} | {shown} | {short(answer, 30)} | "
                        f"{short(my_answer, 30)} | {their_v} | {my_v} |"
                        + (f" {delta:.1e} |" if choice else ""))
    n = len(ours)
    print(f"samples {n}: identical prompts {same_prompt}/{n}, identical "
          f"{'choices picked' if choice else 'answers'} {same_answer}/{n}, identical verdicts "
          f"{same_verdict}/{n}" + (f"; max |Δ log-likelihood| {worst:.1e}" if choice else ""))
    if rows:
        print("| id | prompt (lm-eval / tui-eval) | lm-eval answer | tui-eval answer | "
              "lm-eval verdict | tui-eval verdict |" + (" max \\|Δ ll\\| |" if choice else ""))
        print("|---" * (7 if choice else 6) + "|")
        print("\n".join(rows))
    return n - same_verdict


def task_file_mode(args: argparse.Namespace) -> None:
    check_lm_eval(args.lm_eval_python)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    chat = args.apply_chat_template
    name = offline_task_copy(args.task_file, workdir / "tasks")
    _, theirs = run_lm_eval(args.lm_eval_python, args.model, workdir / "tasks", name,
                            workdir / "out", args.max_length, args.batch_size, chat,
                            multiturn=chat)
    ours = run_task_file_ours(args.model, args.task_file, workdir, args.batch_size, chat)
    sys.exit(1 if compare_task_file(theirs, ours, chat) else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-eval-python", required=True,
                        help="python of an environment with lm-eval installed")
    parser.add_argument("--workdir", type=Path, required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--demo", action="store_true")
    which.add_argument("--tiny", action="store_true")
    which.add_argument("--model", type=Path,
                       help="a model directory (with --data or --task-file)")
    parser.add_argument("--data", type=Path,
                        help="JSONL with id, prompt, answer (and choices for a choice task)")
    parser.add_argument("--task-file", type=Path,
                        help="an lm-eval task YAML with local data (tui-eval --task-file): "
                             "both run it, disagreeing samples are listed")
    parser.add_argument("--task", choices=("choice", "generate"), default="choice")
    parser.add_argument("--apply-chat-template", action="store_true",
                        help="lm-eval's --apply_chat_template, tui-eval's chat_template")
    parser.add_argument("--target-delimiter", default=None,
                        help="choice tasks with --model: the task's delimiter (default ' '; "
                             "dropped under a chat template unless given here)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--stop", action="append",
                        help="a stop string for generation (repeatable; default \\n\\n)")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.task_file is not None:
        if args.model is None or args.data is not None:
            parser.error("--task-file goes with --model, without --data")
        task_file_mode(args)
        return
    if (args.model is None) != (args.data is None):
        parser.error("--model and --data go together")
    if args.task == "generate" and args.model is None:
        parser.error("--task generate needs --model and --data")

    from tui_eval.model.backend import quiet_transformers
    from tui_eval.model.loglikelihood import accuracy

    quiet_transformers()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    chat = args.apply_chat_template
    if args.task == "generate":
        stop = args.stop or ["\n\n"]
        name = "tui_eval_generate"
        write_generation_task(workdir / "tasks", name, args.data.resolve(), stop,
                              args.max_tokens)
        _, theirs = run_lm_eval(args.lm_eval_python, args.model, workdir / "tasks", name,
                                workdir / "out", args.max_length, args.batch_size, chat)
        compare_generations(theirs, generate_ours(args.model, args.data, workdir, stop,
                                                  args.max_tokens, args.batch_size, chat))
        return
    if args.model is not None:
        model, data, name = args.model, args.data.resolve(), "tui_eval_choice"
        # lm-eval drops the task's delimiter under --apply_chat_template unless the task
        # says otherwise; tui-eval's "auto" does the same
        delimiter = args.target_delimiter if args.target_delimiter is not None else (
            "auto" if chat else " ")
    elif args.demo:
        model, data, delimiter, name = DEMO / "model", DEMO / "arithmetic_choice.jsonl", "", \
            "tui_eval_demo_choice"
    else:
        from tui_eval.testing import build_tiny_model

        model = workdir / "tiny-model"
        if not (model / "config.json").is_file():
            build_tiny_model(model)
        data = workdir / "boundary.jsonl"
        write_boundary_set(data)
        delimiter, name = "", "tui_eval_boundary_choice"
    write_task(workdir / "tasks", name, data, " " if delimiter == "auto" else delimiter)
    figures, theirs = run_lm_eval(args.lm_eval_python, model, workdir / "tasks", name,
                                  workdir / "out", args.max_length, args.batch_size, chat)
    ours = run_ours(model, data, delimiter, args.max_length, args.batch_size, chat)

    if len(theirs) != len(ours):
        sys.exit(f"lm-eval scored {len(theirs)} samples, tui-eval {len(ours)}")
    worst = 0.0
    greedy_differs = acc_differs = 0
    for row, result in zip(theirs, ours, strict=True):
        their_pairs = [(float(lp), flag == "True") for lp, flag in row["filtered_resps"]]
        assert row["doc"]["id"] == result.sample.id
        for (their_lp, their_greedy), our_lp, our_greedy in zip(
                their_pairs, result.logprobs, result.is_greedy, strict=True):
            worst = max(worst, abs(their_lp - our_lp))
            greedy_differs += their_greedy != our_greedy
        acc_differs += (row["acc"] != result.acc) + (row["acc_norm"] != result.acc_norm)
    mine = accuracy(ours)
    pairs = sum(len(r.logprobs) for r in ours)
    print(f"samples {len(ours)}, pairs {pairs}, max_length {args.max_length or 'model'}")
    print(f"lm-eval : acc {figures['acc,none']:.4f}  acc_norm {figures['acc_norm,none']:.4f}")
    print(f"tui-eval: acc {mine['acc']:.4f}  acc_norm {mine['acc_norm']:.4f}")
    print(f"max |Δ log-likelihood| over pairs: {worst:.2e}; is_greedy differs on "
          f"{greedy_differs} pairs; per-sample acc/acc_norm differ {acc_differs} times")
    for row, result in list(zip(theirs, ours, strict=True))[:0 if args.demo else 20]:
        print(f"  {result.sample.id} {result.sample.prompt!r}: lm-eval "
              f"{[round(float(lp), 4) for lp, _ in row['filtered_resps']]} tui-eval "
              f"{[round(lp, 4) for lp in result.logprobs]}")


if __name__ == "__main__":
    main()

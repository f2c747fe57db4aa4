"""The engine's user-facing log messages in English and Chinese.

The two fallback lines are the seed guide's wording, kept verbatim.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Callable

LANGUAGES = ("en", "zh")

MESSAGES: dict[str, dict[str, str]] = {
    "batch_failed": {
        "en": "Batch generation failed: {error}",
        "zh": "批量生成失败: {error}",
    },
    "fallback_single": {
        "en": "Falling back to single-sample generation",
        "zh": "自动回退到单样本生成",
    },
    "sample_failed": {
        "en": "Sample {id} failed on its own: {error}",
        "zh": "样本 {id} 单独生成也失败: {error}",
    },
    "loading_model": {
        "en": "Loading model {model} (device={device}, dtype={dtype})",
        "zh": "加载模型 {model} (device={device}, dtype={dtype})",
    },
    "model_loaded": {
        "en": "Model loaded in {seconds:.1f}s on {device} ({dtype})",
        "zh": "模型加载完成，用时 {seconds:.1f}s，设备 {device} ({dtype})",
    },
    "data_loaded": {
        "en": "Loaded {n} samples from {path}",
        "zh": "从 {path} 加载了 {n} 个样本",
    },
    "skipped_lines": {
        "en": "Skipped {n} bad line(s) in {path}",
        "zh": "跳过 {path} 中的 {n} 行错误数据",
    },
    "skipped_line": {
        "en": "Skipping {where}: {reason}",
        "zh": "跳过 {where}: {reason}",
    },
    "run_started": {
        "en": "Evaluating {n} samples, batch size {batch_size}, max {max_tokens} new tokens",
        "zh": "开始评估 {n} 个样本，batch_size={batch_size}，最大生成长度 {max_tokens}",
    },
    "run_started_choice": {
        "en": "Scoring {n} samples ({pairs} choices) by log-likelihood, batch size "
              "{batch_size} (context, choice) pairs",
        "zh": "开始按对数似然评估 {n} 个样本（{pairs} 个选项），batch_size={batch_size}"
              "（每批的 (上下文, 选项) 对数）",
    },
    "task_generate_on_index": {
        "en": "task = generate, but the data's records hold a '{field}' list and an integer "
              "answer (an index into it): predictions are scored against that number; "
              "--task choice scores the choices",
        "zh": "task = generate，但数据记录中有 '{field}' 列表和整数答案（选项的下标）："
              "预测将与该数字比较评分；--task choice 按选项评分",
    },
    "task_choice_detected": {
        "en": "The data's records hold a '{field}' list: a multiple-choice task, scored by "
              "log-likelihood (acc, acc_norm); --task generate generates instead",
        "zh": "数据记录中有 '{field}' 列表：多项选择任务，按对数似然评分（acc、acc_norm）；"
              "如需生成请用 --task generate",
    },
    "run_finished": {
        "en": "Done: {n} samples in {seconds:.1f}s ({rate:.2f} samples/s); results in {run_dir}",
        "zh": "完成: {n} 个样本，用时 {seconds:.1f}s ({rate:.2f} 样本/秒)；结果保存在 {run_dir}",
    },
    "run_finished_resumed": {
        "en": "Done: {n} samples in {seconds:.1f}s ({rate:.2f} samples/s), {kept} kept from "
              "earlier tries; results in {run_dir}",
        "zh": "完成: {n} 个样本，用时 {seconds:.1f}s ({rate:.2f} 样本/秒)，另有 {kept} 个来自之前的"
              "运行；结果保存在 {run_dir}",
    },
    "already_complete": {
        "en": "{run_dir} already holds a complete run ({n} samples): nothing to do; its "
              "metrics are below (--overwrite starts over)",
        "zh": "{run_dir} 中已有完整的运行（{n} 个样本）：无需再运行；指标如下"
              "（--overwrite 重新开始）",
    },
    "already_complete_app": {
        "en": "{run_dir} already holds a complete run ({n} samples): nothing to do; its "
              "metrics are in Results (to run again, choose another output directory)",
        "zh": "{run_dir} 中已有完整的运行（{n} 个样本）：无需再运行；指标见 Results"
              "（如需重新运行，请选择其他输出目录）",
    },
    "tokenising": {
        "en": "Tokenising {n:,} prompts…",
        "zh": "正在分词 {n:,} 个提示…",
    },
    "tokenised": {
        "en": "Tokenised {n:,} prompts in {seconds:.1f}s",
        "zh": "已分词 {n:,} 个提示，用时 {seconds:.1f}s",
    },
    "run_cancelled": {
        "en": "Cancelled after {done}/{total} samples; finished batches are in {run_dir}",
        "zh": "已取消，完成 {done}/{total} 个样本；已完成的批次保存在 {run_dir}",
    },
    "chat_template_missing": {
        "en": "chat_template = true but the tokenizer has no chat template; using plain prompts",
        "zh": "chat_template = true 但分词器没有对话模板；使用原始提示",
    },
    "demo_max_tokens": {
        "en": "The demo's small model answers in {max_tokens} new tokens at most "
              "(--max-tokens)",
        "zh": "示例每个答案最多生成 {max_tokens} 个新 token（其模型很小）；可用 --max-tokens 另选",
    },
    "prompts_truncated": {
        "en": "{n} prompt(s) longer than {room} tokens are cut from the left to fit the "
              "model's {limit} positions with max_tokens {max_tokens}",
        "zh": "{n} 个提示超过 {room} 个 token，已从左侧截断，以在模型的 {limit} 个位置内容纳 "
              "max_tokens={max_tokens}",
    },
    "rescored": {
        "en": "Rescored {n} samples in {run_dir} (metrics: {metrics}; extract: {extract}); "
              "the previous metrics are kept in {previous}",
        "zh": "已重新评分 {run_dir} 中的 {n} 个样本（指标: {metrics}；抽取: {extract}）；"
              "之前的指标保存在 {previous}",
    },
    "demo_run": {
        "en": "No model or data given: running the built-in demo ({path})",
        "zh": "未指定模型或数据：运行内置示例 ({path})",
    },
    # OOM bisection, memory cap, batch-size tuning and bench
    "bisect_split": {
        "en": "Splitting the batch of {size} into parts of {part}",
        "zh": "将大小为 {size} 的批次拆分为每份 {part} 个样本",
    },
    "batch_size_lowered": {
        "en": "Lowering the batch size to {batch_size} for the rest of the run",
        "zh": "后续运行的 batch_size 降为 {batch_size}",
    },
    "max_memory_ignored": {
        "en": "--max-memory is ignored on {device}: it caps CUDA memory only",
        "zh": "--max-memory 在 {device} 上无效：它只限制 CUDA 显存",
    },
    "max_memory_set": {
        "en": "CUDA memory capped at {cap} ({percent:.0f}% of {total})",
        "zh": "CUDA 显存上限设为 {cap}（{total} 的 {percent:.0f}%）",
    },
    "tune_started": {
        "en": "Tuning the batch size ({mode}): short probes on the longest prompts, figures "
              "predicted for {max_tokens} new tokens, sizes up to {ceiling}, {limit}",
        "zh": "自动调整 batch_size（{mode}）：用最长的提示做短探测，按 {max_tokens} 个新 token "
              "预测，最大尝试 {ceiling}，{limit}",
    },
    "tune_memory_unknown": {
        "en": "The memory of {device} cannot be read: probing the largest size, {size}",
        "zh": "无法读取 {device} 的内存：探测最大尺寸 {size}",
    },
    "tune_limit_budget": {
        "en": "at most a tenth of the estimated run",
        "zh": "用时不超过预计运行时间的十分之一",
    },
    "tune_limit_none": {
        "en": "no time limit: doubling until OOM",
        "zh": "不限时：倍增直到内存不足",
    },
    "tune_started_choice": {
        "en": "Tuning the batch size ({mode}): forward passes over the longest (context, "
              "choice) pairs, sizes up to {ceiling}, {limit}",
        "zh": "自动调整 batch_size（{mode}）：对最长的 (上下文, 选项) 对做前向计算，最大尝试 "
              "{ceiling}，{limit}",
    },
    "tune_table_row": {"en": "{row}", "zh": "{row}"},
    "tune_chosen": {
        "en": "Chosen batch size {batch_size} ({rate:.1f} samples/s); {probes} probes took "
              "{seconds:.1f}s",
        "zh": "选定 batch_size={batch_size}（{rate:.1f} 样本/秒）；{probes} 次探测用时 "
              "{seconds:.1f}s",
    },
    "tune_chosen_choice": {
        "en": "Chosen batch size {batch_size} ({rate:.1f} pairs/s); {probes} probes took "
              "{seconds:.1f}s",
        "zh": "选定 batch_size={batch_size}（{rate:.1f} 选项/秒）；{probes} 次探测用时 "
              "{seconds:.1f}s",
    },
    "tune_declined": {
        "en": "Throughput fell by 10% or more at two sizes in a row, up to batch size "
              "{batch_size}: no larger size probed",
        "zh": "吞吐量连续两次下降 10% 以上（到 batch_size={batch_size}）：不再尝试更大的",
    },
    "tune_extrapolated": {
        "en": "The budget ended the search on a throughput still rising: batch size "
              "{batch_size}, not probed, should reach {rate:.1f} samples/s (extrapolated from "
              "the probes up to {probed})",
        "zh": "预算在吞吐量仍在上升时结束了搜索：batch_size={batch_size}（未探测）预计可达 "
              "{rate:.1f} 样本/秒（由最大到 {probed} 的探测外推）",
    },
    "tune_confirmed": {
        "en": "Measured the fastest sizes again: {sizes}",
        "zh": "再次测量最快的几个 batch_size：{sizes}",
    },
    "tune_over_headroom": {
        "en": "Batch size {batch_size} peaks at {peak}, above {percent:.0f}% of {capacity}: "
              "not chosen",
        "zh": "batch_size={batch_size} 峰值内存 {peak}，超过 {capacity} 的 {percent:.0f}%：不选用",
    },
    "tune_budget": {
        "en": "Tuning budget reached: {spent:.2f}s spent, {after:.2f}s after the next probe, "
              "over {budget:.2f}s (a tenth of the run, estimated at {run:.1f}s); keeping the "
              "best size so far",
        "zh": "已达到调整预算：已用 {spent:.2f}s，下一次探测后为 {after:.2f}s，超过预算 "
              "{budget:.2f}s（预计运行时间 {run:.1f}s 的十分之一）；保留目前最好的 batch_size",
    },
    "tune_from_memory": {
        "en": "Memory per row: KV cache {kv} + activations {activations} (measured at "
              "{candidate} rows); {usable} reachable, so up to {fit} rows stay under "
              "{percent:.0f}%: confirming {size}",
        "zh": "每行内存：KV 缓存 {kv} + 激活 {activations}（在 {candidate} 行处测得）；"
              "可用 {usable}，最多 {fit} 行不超过 {percent:.0f}%：确认 {size}",
    },
    "tune_from_cache": {
        "en": "Batch size {batch_size} from the tune cache ({path}), tuned {when}; --retune "
              "probes again",
        "zh": "batch_size={batch_size} 取自调整缓存（{path}，{when} 调整）；--retune 重新探测",
    },
    "tune_from_run_dir": {
        "en": "Batch size {batch_size} from this run's tune.json (resumed); --retune probes again",
        "zh": "batch_size={batch_size} 取自本次运行的 tune.json（继续运行）；--retune 重新探测",
    },
    "tune_cache_unwritable": {
        "en": "Could not save the tune result to {path}: {error}",
        "zh": "无法把调整结果保存到 {path}：{error}",
    },
    "compile_shape": {
        "en": "Compiling for shape {shape} (first batch only)",
        "zh": "正在为形状 {shape} 编译（仅第一个批次）",
    },
    "compile_shape_again": {
        "en": "Compiling for shape {shape} after an OOM",
        "zh": "内存不足后，为形状 {shape} 重新编译",
    },
    "static_shape": {
        "en": "Static KV cache for shape {shape} (decode step not compiled)",
        "zh": "静态 KV 缓存形状 {shape}（解码步未编译）",
    },
    "static_shape_again": {
        "en": "Static KV cache for shape {shape} after an OOM (decode step not compiled)",
        "zh": "内存不足后，改用静态 KV 缓存形状 {shape}（解码步未编译）",
    },
    "graph_shape": {
        "en": "CUDA graph decode: capturing shape {shape}",
        "zh": "CUDA graph 解码：正在捕获形状 {shape}",
    },
    "graph_shape_again": {
        "en": "CUDA graph decode: capturing shape {shape} after an OOM",
        "zh": "内存不足后，CUDA graph 解码重新捕获形状 {shape}",
    },
    "graph_captured": {
        "en": "CUDA graph decode: shape {shape} set up in {seconds:.2f}s",
        "zh": "CUDA graph 解码：形状 {shape} 准备用时 {seconds:.2f}s",
    },
    "graph_fallback": {
        "en": "compile graph: {reason} is not on the graph path; generating without it",
        "zh": "compile graph：{reason} 不走 graph 路径；改为普通生成",
    },
    "graph_auto_on": {
        "en": "compile auto: graph. The first batch took {first:.1f}s eagerly; {batches} more "
              "batches ≈ {left:.0f}s eager, ≈ {saving:.0f}s saved with CUDA graphs, more than "
              "the ~{setup:.0f}s setup",
        "zh": "compile auto：graph。第一个批次（未编译）用时 {first:.1f}s；剩余 {batches} 个批次"
              "未编译约 {left:.0f}s，CUDA graph 约省 {saving:.0f}s，多于约 {setup:.0f}s 的准备时间",
    },
    "graph_auto_off": {
        "en": "compile auto: off. The first batch took {first:.1f}s eagerly; {batches} more "
              "batches ≈ {left:.0f}s eager, ≈ {saving:.0f}s saved with CUDA graphs, less than "
              "the ~{setup:.0f}s setup",
        "zh": "compile auto：关闭。第一个批次（未编译）用时 {first:.1f}s；剩余 {batches} 个批次"
              "未编译约 {left:.0f}s，CUDA graph 约省 {saving:.0f}s，少于约 {setup:.0f}s 的准备时间",
    },
    "compile_auto_on": {
        "en": "compile auto: on. The first batch took {first:.1f}s eagerly; {batches} more "
              "batches ≈ {left:.0f}s eager, ≈ {saving:.0f}s saved compiled, more than the "
              "~{compile:.0f}s compile",
        "zh": "compile auto：开启。第一个批次（未编译）用时 {first:.1f}s；剩余 {batches} 个批次"
              "未编译约 {left:.0f}s，编译后约省 {saving:.0f}s，多于约 {compile:.0f}s 的编译时间",
    },
    "compile_auto_off": {
        "en": "compile auto: off. The first batch took {first:.1f}s eagerly; {batches} more "
              "batches ≈ {left:.0f}s eager, ≈ {saving:.0f}s saved compiled, less than the "
              "~{compile:.0f}s compile",
        "zh": "compile auto：关闭。第一个批次（未编译）用时 {first:.1f}s；剩余 {batches} 个批次"
              "未编译约 {left:.0f}s，编译后约省 {saving:.0f}s，少于约 {compile:.0f}s 的编译时间",
    },
    "tune_nothing_fits": {
        "en": "Even batch size 1 ran out of memory while tuning; using 1",
        "zh": "调整时 batch_size=1 也内存不足；使用 1",
    },
    "tune_summary": {
        "en": "Best batch size: {batch_size} (written to {path})",
        "zh": "最佳 batch_size：{batch_size}（已写入 {path}）",
    },
    "bench_started": {
        "en": "Benchmarking {n} samples at batch sizes {sizes}, max {max_tokens} new tokens; "
              "runs in {out}",
        "zh": "性能测试：{n} 个样本，batch_size {sizes}，最大生成长度 {max_tokens}；结果在 {out}",
    },
    "bench_started_choice": {
        "en": "Benchmarking {n} samples ({pairs} choices, scored by log-likelihood) at batch "
              "sizes {sizes}; runs in {out}",
        "zh": "性能测试：{n} 个样本（{pairs} 个选项，按对数似然评分），batch_size {sizes}；"
              "结果在 {out}",
    },
    "bench_row": {
        "en": "batch_size={batch_size}: {time}, {rate:.2f} samples/s, peak memory "
              "{peak}, GPU util {util}",
        "zh": "batch_size={batch_size}：{time}，{rate:.2f} 样本/秒，峰值内存 {peak}，"
              "GPU利用率 {util}",
    },
    "bench_oom_note": {
        "en": "* batch_size={batch_size} ran out of memory: {fallbacks} fallback(s), finished "
              "at batch size {final}",
        "zh": "* batch_size={batch_size} 内存不足：回退 {fallbacks} 次，最终 batch_size={final}",
    },
    # the same, under a narrow terminal's compact table
    "bench_oom_note_short": {
        "en": "* bs {batch_size}: out of memory, {fallbacks} fallback(s), finished at {final}",
        "zh": "* bs {batch_size}：内存不足，回退 {fallbacks} 次，最终 {final}",
    },
    "bench_auto_note": {
        "en": "a:MODE: compile = auto chose MODE",
        "zh": "a:MODE：compile = auto 选择了 MODE",
    },
    "bench_written": {
        "en": "Written: {json} and {md}",
        "zh": "已写入：{json} 和 {md}",
    },
    "bench_chart": {
        "en": "As a chart: tui-eval watch {out}",
        "zh": "图表：tui-eval watch {out}",
    },
    # where the settings came from: the run log's first line
    "config_file": {
        "en": "Config file {path} sets {keys}",
        "zh": "配置文件 {path} 设置了 {keys}",
    },
    "config_file_found": {
        "en": "Config file {path}, found in the working directory, sets {keys} "
              "(-c FILE names another)",
        "zh": "使用工作目录中的配置文件 {path}，设置了 {keys}（可用 -c FILE 指定其他文件）",
    },
    "config_file_empty": {
        "en": "Config file {path} sets no key",
        "zh": "配置文件 {path} 未设置任何键",
    },
    # resume, overwrite and signals
    "resume_auto": {
        "en": "{run_dir} holds a run of the same config: resuming it ({done}/{total} samples "
              "already done); use --overwrite to start over",
        "zh": "{run_dir} 中有相同配置的运行：继续该运行（已完成 {done}/{total} 个样本）；"
              "如需重新开始请使用 --overwrite",
    },
    "resume_auto_app": {
        "en": "{run_dir} holds a run of the same config: resuming it ({done}/{total} samples "
              "already done); to start over, choose another output directory",
        "zh": "{run_dir} 中有相同配置的运行：继续该运行（已完成 {done}/{total} 个样本）；"
              "如需重新开始，请选择其他输出目录",
    },
    "resume_explicit": {
        "en": "Resuming {run_dir}: {done}/{total} samples already done",
        "zh": "继续运行 {run_dir}：已完成 {done}/{total} 个样本",
    },
    "resume_torn": {
        "en": "predictions.jsonl ended in a torn line ({bytes} bytes, cut off); "
              "that sample will be generated again",
        "zh": "predictions.jsonl 末行不完整（{bytes} 字节，已截去）；该样本将重新生成",
    },
    "overwrite": {
        "en": "--overwrite: removed the previous run's files in {run_dir}",
        "zh": "--overwrite：已删除 {run_dir} 中上一次运行的文件",
    },
    "stop_requested": {
        "en": "{signal}: stopping after the batch in flight (send it again to stop at once)",
        "zh": "{signal}：当前批次完成后停止（再按一次立即停止）",
    },
    "stopped_at_once": {
        "en": "Stopped at once after {done}/{total} samples; finished batches are in {run_dir}",
        "zh": "已立即停止，完成 {done}/{total} 个样本；已完成的批次保存在 {run_dir}",
    },
    "hangup": {
        "en": "SIGHUP: the terminal went away; the run goes on (follow it with "
              "`tui-eval watch {run_dir}`)",
        "zh": "SIGHUP：终端已断开；运行继续（用 `tui-eval watch {run_dir}` 查看）",
    },
}


def default_language() -> str:
    """Chinese when the user's locale is Chinese, English otherwise."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    loc = locale.getlocale()[0] or ""
    return "zh" if loc.lower().startswith("zh") else "en"


def message(key: str, lang: str, **values: object) -> str:
    texts = MESSAGES[key]
    return texts.get(lang, texts["en"]).format(**values)


LogFn = Callable[..., None]  # log(level, message_key, **values)

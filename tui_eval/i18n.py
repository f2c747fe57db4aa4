"""The engine's user-facing log messages in English and Chinese.

The two fallback lines are the seed guide's wording, kept verbatim.
"""

from __future__ import annotations

import locale
import os

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
    "run_finished": {
        "en": "Done: {n} samples in {seconds:.1f}s ({rate:.2f} samples/s); results in {run_dir}",
        "zh": "完成: {n} 个样本，用时 {seconds:.1f}s ({rate:.2f} 样本/秒)；结果保存在 {run_dir}",
    },
    "run_cancelled": {
        "en": "Cancelled after {done}/{total} samples; finished batches are in {run_dir}",
        "zh": "已取消，完成 {done}/{total} 个样本；已完成的批次保存在 {run_dir}",
    },
    "chat_template_missing": {
        "en": "chat_template = true but the tokenizer has no chat template; using plain prompts",
        "zh": "chat_template = true 但分词器没有对话模板；使用原始提示",
    },
    "demo_run": {
        "en": "No model or data given: running the built-in demo ({path})",
        "zh": "未指定模型或数据：运行内置示例 ({path})",
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

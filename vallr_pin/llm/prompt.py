"""The one prompt builder used for LLM fine-tuning data (stage 7) and for refinement (stage 9).

Training and inference must see byte-identical system/user messages, otherwise the LoRA adapter is tuned to a
prompt it never gets at test time; both ``build_llm_data`` and ``llm_refine`` call :func:`build_messages`.

A prompt (paper section II.C, eq. 15) gives the task (correct a Mandarin lip-reading transcript), the predicted
toneless pinyin P^ and the numbered N-best character hypotheses Y^(1..K), and asks for the corrected sentence
only. Templates are plain text with the placeholders ``{pinyin}`` and ``{candidates}`` (and optionally
``{context}``); a template file is either
a ``.txt`` holding the user message (system message from the language default) or a ``.yaml``/``.json`` with keys
``system`` and ``user``.

Context-aware prompts (VSR-LLM's context-aware decoding): an utterance may come with a context text (the
preceding sentence of the same speaker, a topic: ``data/<set>/context``). A template with ``{context}`` places it
itself; any other template gets the line :data:`CONTEXT_LINES` ``[lang]`` in front of its user message. Without a
context the prompt is exactly the one without this feature, so an adapter trained without contexts sees the same
prompts as before.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import yaml

PathLike = Union[str, os.PathLike]

PLACEHOLDERS = ("{pinyin}", "{candidates}")
CONTEXT_PLACEHOLDER = "{context}"
CONTEXT_LINES = {"zh": "上文：{context}\n", "en": "Preceding text: {context}\n"}


@dataclass(frozen=True)
class PromptTemplate:
    """System message and user message template (with ``{pinyin}`` and ``{candidates}``)."""

    system: Optional[str]
    user: str


DEFAULT_TEMPLATES: Dict[str, PromptTemplate] = {
    "zh": PromptTemplate(
        system="你是一个中文唇语识别纠错助手。",
        user=(
            "任务：纠正普通话唇语识别的转写结果。唇语识别只看口型，常把同音字和口型相近的字认错。\n"
            "预测的拼音（不带声调）：{pinyin}\n"
            "候选句子：\n"
            "{candidates}\n"
            "请根据拼音和候选句子写出正确的句子。只输出纠正后的句子，不要解释。"
        ),
    ),
    "en": PromptTemplate(
        system="You correct transcripts of a Mandarin Chinese lip-reading system.",
        user=(
            "Task: correct the output of a Mandarin lip-reading (visual speech recognition) system. Lip reading "
            "sees only the mouth, so it confuses homophones and characters that look alike on the lips.\n"
            "Predicted toneless pinyin: {pinyin}\n"
            "Candidate sentences:\n"
            "{candidates}\n"
            "Using the pinyin and the candidates, write the correct Chinese sentence. "
            "Output only the corrected sentence, no explanation."
        ),
    ),
}


def load_template(path: Optional[PathLike] = None, lang: str = "zh") -> PromptTemplate:
    """The built-in template for ``lang``, or the one in ``path`` (``.txt`` user text, or yaml/json with
    ``system`` and ``user``). Raises ValueError naming the file when a placeholder is missing."""
    if lang not in DEFAULT_TEMPLATES:
        raise ValueError(f"unknown prompt language '{lang}'; choose one of {sorted(DEFAULT_TEMPLATES)}")
    if path is None:
        return DEFAULT_TEMPLATES[lang]
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml", ".json"):
        conf = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        if not isinstance(conf, dict) or "user" not in conf:
            raise ValueError(f"{path}: a yaml/json prompt template needs keys 'user' (and optionally 'system')")
        tmpl = PromptTemplate(system=conf.get("system", DEFAULT_TEMPLATES[lang].system), user=str(conf["user"]))
    else:
        tmpl = PromptTemplate(system=DEFAULT_TEMPLATES[lang].system, user=raw.rstrip("\n"))
    for ph in PLACEHOLDERS:
        if ph not in tmpl.user:
            raise ValueError(f"{path}: the user template must contain the placeholder {ph}")
    return tmpl


def format_candidates(nbest: Sequence[str], max_candidates: Optional[int] = None) -> str:
    """Number the hypotheses best first, one per line: ``1. 今天天气很好``. Duplicates are kept (ESPnet N-best
    lists are unique already); an empty hypothesis is shown as an empty line so numbering stays aligned."""
    cands = list(nbest)[: max_candidates] if max_candidates else list(nbest)
    return "\n".join(f"{i}. {text}" for i, text in enumerate(cands, 1))


def build_messages(
    pinyin: str,
    nbest: Sequence[str],
    answer: Optional[str] = None,
    lang: str = "zh",
    template: Optional[Union[PromptTemplate, PathLike]] = None,
    max_candidates: Optional[int] = 5,
    context: Optional[str] = None,
) -> List[Dict[str, str]]:
    """ms-swift ``messages`` for one utterance.

    Args:
        pinyin: predicted toneless pinyin, space-separated syllables ("ni hao").
        nbest: character hypotheses, best first (K strings of Hanzi).
        answer: the reference transcript for training samples; None for inference requests.
        lang: language of the built-in template ("zh" or "en"), used when ``template`` is None.
        template: a PromptTemplate or a path to a template file (see :func:`load_template`).
        max_candidates: keep at most this many hypotheses (None: all).
        context: text shown before the task (module docstring); None: no context line.
    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]`` plus ``{"role": "assistant", "content": answer}``
        when ``answer`` is given. The system message is left out when the template has none.
    """
    if not isinstance(template, PromptTemplate):
        template = load_template(template, lang)
    # str.replace, not str.format: a user template may contain other braces (JSON examples, etc.)
    user = template.user.replace("{pinyin}", " ".join(pinyin.split())).replace(
        "{candidates}", format_candidates(nbest, max_candidates)
    )
    ctx = " ".join((context or "").split())
    if CONTEXT_PLACEHOLDER in template.user:
        user = user.replace(CONTEXT_PLACEHOLDER, ctx)
    elif context is not None:
        user = CONTEXT_LINES.get(lang, CONTEXT_LINES["zh"]).replace("{context}", ctx) + user
    messages: List[Dict[str, str]] = []
    if template.system:
        messages.append({"role": "system", "content": template.system})
    messages.append({"role": "user", "content": user})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def template_words(template: Optional[Union[PromptTemplate, PathLike]] = None, lang: str = "zh") -> List[str]:
    """The fixed text of a template (system + user without placeholders): what a tokenizer built for a tiny
    model must cover so that the prompt is not all unknown bytes."""
    if not isinstance(template, PromptTemplate):
        template = load_template(template, lang)
    user = template.user
    for ph in (*PLACEHOLDERS, CONTEXT_PLACEHOLDER):
        user = user.replace(ph, "\n")
    return [t for t in [template.system or "", *user.split("\n")] if t.strip()]

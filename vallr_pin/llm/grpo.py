"""RL with a verifiable reward after SFT (issue 19, item 6): GRPO through ms-swift's ``swift rlhf --rlhf_type grpo``.

The RLVR paper (../shared/papers/, self-correction with verifiable rewards) trains a speech LLM to correct its
transcript with rewards a program checks: here the reward of one sampled answer is

- ``vsr_cer_gain`` = CER(1-best) - CER(answer), both against the reference and each capped at 1 (so a long
  hallucination costs at most as much as deleting everything), in [-1, 1]: positive when the LLM fixed errors,
  0 when it gave the 1-best back, negative when it broke a sentence; CER as the scorer counts it
  (``vallr_pin.scoring.cer``, sclite's alignment) on the answer line the output guard would keep (a ``<think>``
  block or a label prefix removed, then the transcript normaliser);
- ``vsr_format`` = 1 when the raw answer is one line of Chinese characters and nothing else (no think block,
  punctuation, explanation or second line), else 0: stage 9's guard cleans such answers, but the RL step should
  not learn to rely on that.

ms-swift weights them with ``reward_weights`` (``conf/llm_grpo.yaml``). The paper saw answers collapse to ever
shorter strings under a plain accuracy reward; a CER difference charges every deleted character.

The reward functions are plain Python here; ``vallr_pin/llm/swift_plugin/grpo_rewards.py`` registers them in ms-swift's
``orms`` registry and is what ``--external_plugins`` loads. :func:`write_grpo_data` turns stage 7's rows into
GRPO rows: the prompt (system + user), ``solution`` (the reference: ms-swift keeps this column for the reward)
and ``onebest``.
"""

from __future__ import annotations

import json
import os
import unicodedata
from typing import Optional, Union

from vallr_pin.llm.guard import OutputGuard
from vallr_pin.scoring.cer import normalize_hypothesis, score_utterance
from vallr_pin.text.normalize import is_hanzi, normalize_text

PathLike = Union[str, os.PathLike]
PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "swift_plugin", "grpo_rewards.py")


def answer_text(completion: Optional[str]) -> str:
    """The Hanzi transcript in a raw answer, as stage 9 scores an accepted one (guard line, normaliser)."""
    return normalize_text(OutputGuard.extract(completion or ""))


def capped_cer(ref: str, hyp: str) -> float:
    """(S + D + I) / N of ``hyp`` against ``ref`` (sclite alignment), at most 1; 0 for two empty strings."""
    ref, hyp = normalize_text(ref or ""), normalize_hypothesis(hyp or "")  # a <unk> is one wrong character
    if not ref:
        return 0.0 if not hyp else 1.0
    return min(1.0, score_utterance("", ref, hyp).errors / len(ref))


def cer_gain_reward(completion: Optional[str], ref: str, onebest: str) -> float:
    """CER(1-best) - CER(answer) against ``ref``, each capped at 1 (module docstring)."""
    return capped_cer(ref, onebest) - capped_cer(ref, answer_text(completion))


def format_reward(completion: Optional[str]) -> float:
    """1.0 when the completion is exactly one line of Chinese characters (surrounding whitespace allowed): every
    character a Hanzi of ``is_hanzi``, or a compatibility form whose NFKC fold is one (as the normaliser folds it)."""
    line = (completion or "").strip()
    return 1.0 if line and all(_folds_to_hanzi(c) for c in line) else 0.0


def _folds_to_hanzi(c: str) -> bool:
    folded = unicodedata.normalize("NFKC", c)  # may be several characters (㎏ -> kg)
    return is_hanzi(c) or (len(folded) == 1 and is_hanzi(folded))


def write_grpo_data(src: PathLike, dst: PathLike) -> int:
    """Stage-7 rows of ``src`` as GRPO rows in ``dst`` (``messages`` without the answer, ``solution`` = the
    reference, ``onebest``, ``utt``, ``ckpt``). Returns the number of rows. A row without ``onebest`` (stage 7
    of an older version) is a ValueError naming the file and line."""
    from vallr_pin.datadir import atomic_open

    n = 0
    with open(src, encoding="utf-8") as f, atomic_open(dst) as out:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row.get("messages") or []
            if "onebest" not in row or not messages or messages[-1].get("role") != "assistant":
                raise ValueError(f"{src}:{lineno}: not a stage-7 training row with 'onebest' and the reference as "
                                 "the last (assistant) message; re-run stage 7 (build_llm_data)")
            grpo = {"messages": messages[:-1], "solution": messages[-1]["content"], "onebest": row["onebest"]}
            grpo.update({k: row[k] for k in ("utt", "ckpt") if k in row})
            out.write(json.dumps(grpo, ensure_ascii=False) + "\n")
            n += 1
    return n

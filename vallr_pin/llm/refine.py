"""Batched LLM refinement of N-best lists through ms-swift's inference engines (stage 9).

Backends: ``transformers`` (ms-swift's ``TransformersEngine``: batched ``generate`` with left padding; CPU or
GPU) and ``vllm`` (ms-swift's ``VllmEngine``; GPU, when vLLM is installed). Both take the base model directory
and optionally the LoRA adapter of stage 8 (without it: zero-shot). Decoding is greedy.

The request for an utterance is built by :func:`vallr_pin.llm.prompt.build_messages`, the same function that
built the training samples, and the answer passes :class:`vallr_pin.llm.guard.OutputGuard`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from vallr_pin.llm.fusion import FusionWeights, ScoredNbest
from vallr_pin.llm.guard import OutputGuard
from vallr_pin.llm.nbest import NbestEntry
from vallr_pin.llm.prompt import PromptTemplate, build_messages

DEFAULT_MODEL_TYPE = "qwen3"
DEFAULT_TEMPLATE = "qwen3_nothinking"


def adapter_swift_args(adapter: Optional[str]) -> dict:
    """``model_type``/``template`` the adapter was trained with (ms-swift saves args.json beside it)."""
    if not adapter:
        return {}
    for cand in (Path(adapter) / "args.json", Path(adapter).parent / "args.json"):
        if cand.is_file():
            args = json.loads(cand.read_text(encoding="utf-8"))
            return {k: args.get(k) for k in ("model_type", "template") if args.get(k)}
    return {}


def make_engine(model: str, adapter: Optional[str] = None, backend: str = "transformers",
                model_type: Optional[str] = None, template: Optional[str] = None, torch_dtype: Optional[str] = None,
                batch_size: int = 16, gpu_memory_utilization: float = 0.9, max_model_len: Optional[int] = None):
    """An ms-swift inference engine for ``model`` (+ LoRA ``adapter``). model_type/template default to what the
    adapter was trained with, else qwen3 / qwen3_nothinking (the Qwen3-4B-Instruct-2507 template)."""
    import torch

    saved = adapter_swift_args(adapter)
    model_type = model_type or saved.get("model_type") or DEFAULT_MODEL_TYPE
    template = template or saved.get("template") or DEFAULT_TEMPLATE
    dtype = getattr(torch, torch_dtype) if torch_dtype else None
    adapters = [adapter] if adapter else None
    logging.info("engine %s: model %s, adapter %s, model_type %s, template %s", backend, model, adapter,
                 model_type, template)
    if backend == "transformers":
        from swift import TransformersEngine

        return TransformersEngine(model, adapters=adapters, model_type=model_type, template_type=template,
                                  torch_dtype=dtype, max_batch_size=batch_size)
    if backend == "vllm":
        if not _has_module("vllm"):
            raise RuntimeError("--backend vllm needs the vllm package (a GPU machine with `pip install vllm`); "
                               "use --backend transformers otherwise")
        from swift import VllmEngine

        return VllmEngine(model, adapters=adapters, model_type=model_type, template_type=template,
                          torch_dtype=dtype, max_num_seqs=max(batch_size, 1),
                          gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    raise ValueError(f"unknown backend '{backend}' (transformers or vllm)")


def resolve_backend(backend: str = "auto", mode: str = "generate") -> str:
    """The engine ``auto`` stands for: ``vllm`` when the vllm package is importable and torch sees a CUDA
    device, else ``transformers``; in ``rescore`` mode always ``transformers`` (it reads the model's
    log-probabilities directly, which vLLM's engine does not expose). Other values are returned as given."""
    if backend != "auto":
        return backend
    if mode == "rescore" or not _has_module("vllm"):
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def request_messages(entry: NbestEntry, lang: str = "zh", template: Optional[PromptTemplate] = None,
                     max_candidates: Optional[int] = 5) -> List[dict]:
    """The inference request for one utterance: stage 7's training sample without the assistant turn."""
    return build_messages(entry.pinyin, entry.texts, None, lang=lang, template=template,
                          max_candidates=max_candidates, context=entry.context)


@dataclass
class Refined:
    utt: str
    raw: str
    text: str
    reason: Optional[str]
    onebest: str
    ref: Optional[str]
    # rescore mode: every candidate with its scores, so the fusion weights can be re-tuned without the LLM
    candidates: Optional[List[str]] = None
    llm_scores: Optional[List[float]] = None
    vsr_scores: Optional[List[float]] = None


class _NbestLLM:
    """What both refinement modes hold: the engine, the guard, and the prompt settings of stage 7."""

    def __init__(self, engine, guard: OutputGuard, lang: str = "zh", template: Optional[PromptTemplate] = None,
                 max_candidates: Optional[int] = 5, batch_size: int = 16):
        self.engine = engine
        self.guard = guard
        self.lang = lang
        self.template = template
        self.max_candidates = max_candidates
        self.batch_size = max(1, batch_size)


class Refiner(_NbestLLM):
    """Refine N-best entries in batches of similar prompt length; greedy decoding.

    Args:
        engine: an ms-swift InferEngine (``make_engine``).
        guard: the output guard (its counts accumulate over calls).
        lang, template, max_candidates: passed to ``build_messages`` (must match stage 7's settings).
        batch_size: utterances per ``engine.infer`` call.
        max_new_ratio, max_new_slack: max_new_tokens = ceil(ratio * tokens of the longest candidate in the
            batch) + slack; the slack covers the end-of-turn token and a possible empty think block.
    """

    def __init__(self, engine, guard: OutputGuard, lang: str = "zh", template: Optional[PromptTemplate] = None,
                 max_candidates: Optional[int] = 5, batch_size: int = 16, max_new_ratio: float = 1.5,
                 max_new_slack: int = 8):
        super().__init__(engine, guard, lang, template, max_candidates, batch_size)
        self.max_new_ratio = max_new_ratio
        self.max_new_slack = max_new_slack
        self.tokenizer = engine.tokenizer

    def messages(self, e: NbestEntry) -> List[dict]:
        return request_messages(e, self.lang, self.template, self.max_candidates)

    def _n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def refine(self, entries: Sequence[NbestEntry], progress: bool = True) -> List[Refined]:
        """Refined results in the order of ``entries``."""
        from swift import InferRequest, RequestConfig
        from tqdm import tqdm

        cand_tokens = [max([self._n_tokens(t) for t in e.texts[: self.max_candidates or None]] or [0])
                       for e in entries]
        # similar lengths together: less padding per batch and a tight max_new_tokens
        order = sorted(range(len(entries)), key=lambda i: cand_tokens[i])
        results: List[Optional[Refined]] = [None] * len(entries)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="refine", disable=not progress, mininterval=5):
            max_new = math.ceil(self.max_new_ratio * max(cand_tokens[i] for i in batch)) + self.max_new_slack
            reqs = [InferRequest(messages=self.messages(entries[i])) for i in batch]
            if hasattr(self.engine, "max_batch_size"):
                self.engine.max_batch_size = len(reqs)
            responses = self.engine.infer(reqs, RequestConfig(max_tokens=max_new, temperature=0.0), use_tqdm=False)
            for i, resp in zip(batch, responses):
                e = entries[i]
                choices = getattr(resp, "choices", None)  # ms-swift returns the Exception for a failed request
                if not choices:
                    logging.warning("utterance '%s': no LLM answer (%s); the guard falls back", e.utt, resp)
                raw = (choices[0].message.content if choices else "") or ""
                text, reason = self.guard(raw, e.texts[: self.max_candidates or None])  # the ones it saw
                results[i] = Refined(e.utt, raw, text, reason, e.onebest, e.ref)
        return results  # type: ignore[return-value]


class Rescorer(_NbestLLM):
    """N-best rescoring with the LLM: each candidate is scored as the *answer* to the same prompt the
    generative mode sends (``log P_LLM(candidate | pinyin, N-best)``, summed over the answer tokens and the
    end-of-turn token, i.e. exactly the tokens SFT trains on) and the best is kept.

    This is eq. (18) of the paper with the arg max restricted to the N-best list. It suits LLMs too small to
    generate a correction reliably (the mini recipe's tiny model): the answer is always one of the candidates,
    so the guard never has to fall back. ``weights`` (:class:`vallr_pin.llm.fusion.FusionWeights`) fuse the
    LLM score with the VSR beam score (log-prob) of each candidate and a per-character length bonus; the
    default ranks by the LLM alone. Every candidate's scores are kept in the results, so
    :mod:`vallr_pin.bin.tune_fusion` can tune the weights on a development set afterwards.

    Args:
        engine: an ms-swift ``TransformersEngine`` (its ``model`` and ``template`` are used directly).
        guard: the output guard (counts are kept comparable with generative mode; a chosen candidate that is
            empty falls back to the 1-best like any other empty answer).
        batch_size: (prompt, candidate) sequences per forward pass.
    """

    def __init__(self, engine, guard: OutputGuard, lang: str = "zh", template: Optional[PromptTemplate] = None,
                 max_candidates: Optional[int] = 5, batch_size: int = 16,
                 weights: Optional[FusionWeights] = None):
        if not hasattr(engine, "template") or not hasattr(engine, "model"):
            raise ValueError("rescoring needs the transformers backend (--backend transformers)")
        super().__init__(engine, guard, lang, template, max_candidates, batch_size)
        self.weights = weights or FusionWeights()

    def _sequences(self, e: NbestEntry):
        cands = e.texts[: self.max_candidates or None]
        return cands, [build_messages(e.pinyin, cands, c, lang=self.lang, template=self.template,
                                      max_candidates=self.max_candidates, context=e.context) for c in cands]

    def answer_logprobs(self, conversations: Sequence[List[dict]]) -> List[float]:
        """Sum of log-probabilities of each conversation's assistant tokens (the SFT loss tokens)."""
        import torch

        tmpl, model = self.engine.template, self.engine.model
        tmpl.set_mode("train")  # encode with labels: -100 everywhere but the answer (+ end of turn)
        try:
            encoded = [tmpl.encode({"messages": list(m)}) for m in conversations]
        finally:
            tmpl.set_mode("transformers")
        out: List[float] = []
        model.eval()
        for i in range(0, len(encoded), self.batch_size):
            chunk = encoded[i:i + self.batch_size]
            batch = tmpl.data_collator(chunk)
            input_ids = batch["input_ids"].to(model.device)
            labels = batch["labels"].to(model.device)
            attn = batch.get("attention_mask")
            with torch.inference_mode():
                logits = model(input_ids=input_ids,
                               attention_mask=None if attn is None else attn.to(model.device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target = labels[:, 1:]
            mask = target != -100
            tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out.extend((tok * mask).sum(-1).tolist())
        return out

    def refine(self, entries: Sequence[NbestEntry], progress: bool = True) -> List[Refined]:
        from tqdm import tqdm

        results: List[Refined] = []
        step = max(1, self.batch_size // max(1, self.max_candidates or 5))
        for i in tqdm(range(0, len(entries), step), desc="rescore", disable=not progress, mininterval=5):
            group = entries[i:i + step]
            seqs = [self._sequences(e) for e in group]
            flat = [conv for _, convs in seqs for conv in convs]
            scores = iter(self.answer_logprobs(flat))
            for e, (cands, _) in zip(group, seqs):
                scored = ScoredNbest(e.utt, tuple(cands), tuple(next(scores) for _ in cands),
                                     tuple(e.scores[: len(cands)]), e.onebest)
                raw, text, reason = scored.pick(self.weights, self.guard)
                results.append(Refined(e.utt, raw, text, reason, e.onebest, e.ref, list(cands),
                                       list(scored.llm_scores), list(scored.vsr_scores)))
        return results


class ConstrainedRefiner(_NbestLLM):
    """Generation under the pinyin constraint (:mod:`vallr_pin.llm.constrained`): greedy decoding with a
    :class:`~vallr_pin.llm.constrained.PinyinLogitsProcessor`, so the answer has one allowed character per
    pinyin syllable and then ends. The prompt is the one of the other modes (``request_messages``).

    An utterance that cannot be constrained (empty pinyin, no candidate of the pinyin's length, a position with
    nothing allowed) is not sent to the LLM: it keeps its 1-best, and ``fallbacks`` counts it by reason.

    Args:
        engine: an ms-swift ``TransformersEngine`` (its ``model``, ``template`` and ``tokenizer`` are used).
        level: relaxation level, one of ``constrained.LEVELS``.
        batch_size: utterances per ``generate`` call.
    """

    def __init__(self, engine, guard: OutputGuard, lang: str = "zh", template: Optional[PromptTemplate] = None,
                 max_candidates: Optional[int] = 5, batch_size: int = 16, level: str = "nbest"):
        from collections import Counter

        from vallr_pin.llm.constrained import LEVELS, TokenTrie

        if not hasattr(engine, "template") or not hasattr(engine, "model"):
            raise ValueError("--mode constrained needs the transformers backend (--backend transformers)")
        if level not in LEVELS:
            raise ValueError(f"--constrain-level {level}: choose one of {LEVELS}")
        super().__init__(engine, guard, lang, template, max_candidates, batch_size)
        self.level = level
        self.tokenizer = engine.tokenizer
        self.trie = TokenTrie.for_tokenizer(self.tokenizer)
        self.eos_ids = _eos_ids(engine.model, self.tokenizer)
        self.fallbacks: Counter = Counter()

    def constraint(self, e: NbestEntry):
        """The utterance's PositionConstraint, or (None, reason)."""
        from vallr_pin.llm.constrained import PositionConstraint, position_sets

        cands = e.texts[: self.max_candidates or None]
        sets, reason = position_sets(e.pinyin.split(), cands, self.level)
        if sets is None:
            return None, reason
        try:
            return PositionConstraint(sets, self.trie, self.eos_ids), None
        except ValueError:
            return None, "no_allowed_character"

    def refine(self, entries: Sequence[NbestEntry], progress: bool = True) -> List[Refined]:
        import torch
        from swift import InferRequest
        from tqdm import tqdm
        from transformers import LogitsProcessorList

        from vallr_pin.llm.constrained import PinyinLogitsProcessor

        results: List[Optional[Refined]] = [None] * len(entries)
        todo = []
        for i, e in enumerate(entries):
            c, reason = self.constraint(e)
            if c is None:
                self.fallbacks[reason] += 1
                logging.debug("utterance '%s': not constrained (%s); keeping the 1-best", e.utt, reason)
                results[i] = Refined(e.utt, "", e.onebest, f"constraint_{reason}", e.onebest, e.ref)
            else:
                todo.append((i, c))
        todo.sort(key=lambda ic: ic[1].n)  # similar lengths together: less padding
        tmpl, model = self.engine.template, self.engine.model
        tmpl.set_mode("transformers")
        model.eval()
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        batches = [todo[k:k + self.batch_size] for k in range(0, len(todo), self.batch_size)]
        for batch in tqdm(batches, desc="constrained", disable=not progress, mininterval=5):
            encoded = [tmpl.encode(InferRequest(messages=request_messages(entries[i], self.lang, self.template,
                                                                          self.max_candidates)))
                       for i, _ in batch]
            inputs = tmpl.data_collator(encoded)  # left padding outside training
            input_ids = inputs["input_ids"].to(model.device)
            attn = inputs["attention_mask"].to(model.device)
            prompt_len = input_ids.shape[1]
            proc = PinyinLogitsProcessor([c for _, c in batch], prompt_len)
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=attn, do_sample=False,
                                     max_new_tokens=max(c.max_new_tokens() for _, c in batch),
                                     logits_processor=LogitsProcessorList([proc]), eos_token_id=self.eos_ids,
                                     pad_token_id=pad_id)
            for row, (i, c) in enumerate(batch):
                e = entries[i]
                gen = [t for t in out[row, prompt_len:].tolist() if t not in self.eos_ids and t != pad_id]
                raw = c.answer_bytes(gen).decode("utf-8", errors="replace")
                text, reason = self.guard(raw, e.texts[: self.max_candidates or None])
                results[i] = Refined(e.utt, raw, text, reason, e.onebest, e.ref)
        return results  # type: ignore[return-value]


def _eos_ids(model, tokenizer) -> List[int]:
    """End-of-turn ids: the generation config's (Qwen3: <|im_end|>, <|endoftext|>) and the tokenizer's."""
    ids = set()
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in ([gen] if isinstance(gen, int) else list(gen or [])):
        ids.add(int(v))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the model defines no end-of-sequence token (generation_config.eos_token_id)")
    return sorted(ids)


def with_candidate(e: NbestEntry, text: str) -> NbestEntry:
    """``e`` with ``text`` moved (or added) to the top of its N-best: the next polishing round's input. A text the
    N-best did not hold gets the 1-best's VSR score (it replaces the 1-best as the sentence to beat)."""
    import dataclasses

    rest = [(t, s) for t, s in zip(e.texts, e.scores) if t != text]
    score = next((s for t, s in zip(e.texts, e.scores) if t == text), e.scores[0] if e.scores else 0.0)
    return dataclasses.replace(e, texts=[text] + [t for t, _ in rest], scores=[score] + [s for _, s in rest])


def polish(refiner, entries: Sequence[NbestEntry], rounds: int = 1, progress: bool = True
           ) -> tuple:
    """Iterative polishing (VSR-LLM): the refined sentence goes back in as the top candidate for up to
    ``rounds`` rounds in all. An utterance whose answer equals its input's top candidate has converged (the next
    prompt would be the same, greedy decoding the same answer) and is not sent again.

    Returns ``(results, history, calls)``: the last round's :class:`Refined` per entry (``onebest`` the Stage I
    1-best), each entry's text after every round it took part in, and the entries sent per round."""
    import dataclasses

    results = list(refiner.refine(entries, progress))
    history = [[r.text] for r in results]
    calls = [len(entries)]
    active = [i for i, r in enumerate(results) if r.text != entries[i].onebest]
    for _ in range(2, rounds + 1):
        if not active:
            break
        inputs = [with_candidate(entries[i], results[i].text) for i in active]
        calls.append(len(inputs))
        still = []
        for i, e_in, r in zip(active, inputs, refiner.refine(inputs, progress)):
            results[i] = dataclasses.replace(r, onebest=entries[i].onebest)
            history[i].append(r.text)
            if r.text != e_in.texts[0]:
                still.append(i)
        active = still
    return results, history, calls

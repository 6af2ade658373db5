"""Decoding a trained dual-decoder VSR model: character N-best + pinyin 1-best, with pinyin rescoring.

Character branch: joint CTC/attention beam search with ESPnet's ``BatchBeamSearch`` (vectorised over the
hypotheses of one utterance; ``beam_search_impl="plain"`` uses ESPnet's one-hypothesis-at-a-time ``BeamSearch``,
same results up to float rounding, kept for comparison and benchmarking), scorers ``decoder`` (SAN-M), ``ctc``
(ESPnet's ``CTCPrefixScorer``, with the cheaper frame loop of :mod:`vallr_pin.decoding.ctc_prefix` in the batch
search) and ``length_bonus`` (``LengthBonus``), plus ``lm`` (a character LM, ``lm_weight``) and ``pinyin_ctc`` (the
pinyin branch's CTC, ``pinyin_search_weight``) when asked for. Pinyin branch: ``pinyin_decode_mode="attention"``
runs the same beam search on the pinyin decoder + pinyin CTC and keeps the best; ``"ctc"`` takes the greedy CTC
path (fast).

``pinyin_rescore_weight`` w (dual model only) lets the pinyin branch vote on the characters too: each character
hypothesis of the beam is read as toneless pinyin (stage 2's ``hanzi_to_pinyin``) and gets ``w`` times the pinyin
branch's joint CTC/attention log-likelihood of that reading (CTC share ``pinyin_ctc_weight``) added to its
score; the N-best is re-ranked by the sum. The pinyin branch predicts 400-odd syllables, each seen far more often
in training than any one character, so on unseen speakers and sentences it often knows the lip shapes better than
the character branch does; homophones tie under it and stay ranked by the character branch. 0 = the paper's
Stage I (the character branch alone decides).

``pinyin_search_weight`` v (dual model only) brings the same evidence into the search itself rather than after
it: the pinyin CTC becomes one more ESPnet ``CTCPrefixScorer`` of the character beam search, over the pinyin
branch's frame posteriors read through the characters (:class:`PinyinReadingCTC`: character c at frame t scores
the best of log P(reading of c | frame t) over its readings). A character LM in shallow fusion (``lm_weight``)
otherwise picks the character the language prefers even where the lips drew another syllable; with the pinyin
CTC in the search, a hypothesis that leaves what the lips drew pays for it at every step, while homophones tie
under it and stay for the decoder and the LM to choose between. Like the character CTC it is a partial scorer:
at each step ESPnet scores only the ``pre_beam_ratio`` x beam candidates (1.5 by default) that the decoder, the
LM and the length bonus rank highest, so it re-ranks what those propose and cannot bring back a character all of
them rank lower; a larger ``pre_beam_ratio`` shows it more of them.

:class:`VideoToText` is what stage 5/6 (``vallr_pin.bin.vsr_inference``, :mod:`vallr_pin.decoding.jobs`) and a
packed model (:mod:`vallr_pin.recognizer`) decode with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from typing import List, Optional, Sequence, Tuple

import torch


@dataclass
class Recognition:
    """Decoding result of one utterance: ``nbest`` = [(text, tokens, score)], best first; ``pinyin`` syllables."""

    nbest: List[Tuple[str, List[str], float]] = field(default_factory=list)
    pinyin: str = ""


class PinyinReadingCTC(torch.nn.Module):
    """The pinyin branch's CTC seen through a character token list, for ESPnet's ``CTCPrefixScorer``.

    ``log_softmax(hs)`` returns (B, T, V_char): for each character token the best, frame by frame, of the pinyin
    CTC's log-posteriors of its toneless readings (every pypinyin reading that is in the pinyin token list:
    the character search has no context to resolve a polyphone, so 行 scores as the better of xing and hang).
    ``<blank>`` maps to the pinyin ``<blank>``, ``<sos/eos>`` to the pinyin ``<sos/eos>``, and a token with no
    reading (``<unk>``, a Hanzi outside the pinyin list) to the pinyin ``<unk>``. The rows are not normalised
    over the characters (homophones share a posterior): the score is the pinyin branch's likelihood of a
    hypothesis's reading, which is what a scorer needs, not a distribution over characters.
    Approximation, kept on purpose: two homophones in a row (是事) need no blank between them here, where the
    pinyin CTC would need one."""

    def __init__(self, pinyin_ctc: torch.nn.Module, token_list: Sequence[str], pinyin_token_list: Sequence[str]):
        super().__init__()
        from vallr_pin.text.normalize import is_hanzi
        from vallr_pin.text.pinyin import char_readings

        self.pinyin_ctc = pinyin_ctc
        index = {t: i for i, t in enumerate(pinyin_token_list)}
        unk = index.get("<unk>", 1)
        rows = []
        for i, tok in enumerate(token_list):
            if i == 0:
                rows.append([0])  # <blank>
            elif i == len(token_list) - 1:
                rows.append([len(pinyin_token_list) - 1])  # <sos/eos>
            elif len(tok) == 1 and is_hanzi(tok):
                rows.append(sorted({index[r] for r in char_readings(tok) if r in index}) or [unk])
            else:
                rows.append([unk])
        width = max(len(r) for r in rows)
        # pad each row with its first reading: the max over the row is unchanged
        self.register_buffer("readings", torch.tensor([r + r[:1] * (width - len(r)) for r in rows]),
                             persistent=False)

    def log_softmax(self, hs: torch.Tensor) -> torch.Tensor:
        logp = self.pinyin_ctc.log_softmax(hs)  # (B, T, V_pinyin)
        return logp[..., self.readings.to(logp.device)].amax(dim=-1)  # (B, T, V_char, R) -> (B, T, V_char)


def build_beam_search(decoder, ctc, token_list: List[str], beam_size: int, ctc_weight: float, penalty: float,
                      impl: str, normalize_length: bool = False, lm=None, lm_weight: float = 0.0,
                      pinyin_ctc: Optional[PinyinReadingCTC] = None, pinyin_search_weight: float = 0.0,
                      pre_beam_ratio: float = 1.5):
    """ESPnet joint CTC/attention beam search over ``token_list`` (``<sos/eos>`` = last token), with an
    optional ESPnet language model (``lm``: the ``.lm`` of an ``LMTask`` model) in shallow fusion and an
    optional second CTC prefix scorer, the pinyin branch read through the characters (``pinyin_ctc``).
    ``pre_beam_ratio``: ESPnet's; the partial scorers (the CTCs) score ``int(pre_beam_ratio * beam_size)``
    candidates per step, those the full scorers (decoder, LM, length bonus) rank highest."""
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch
    from espnet.nets.scorer_interface import BatchScorerInterface
    from espnet.nets.scorers.length_bonus import LengthBonus

    from vallr_pin.decoding.ctc_prefix import FastCTCPrefixScorer as CTCPrefixScorer  # ESPnet's, faster loop

    eos = len(token_list) - 1
    scorers = dict(decoder=decoder, ctc=CTCPrefixScorer(ctc=ctc, eos=eos), length_bonus=LengthBonus(len(token_list)))
    weights = dict(decoder=1.0 - ctc_weight, ctc=ctc_weight, length_bonus=penalty)
    if lm is not None and lm_weight:
        scorers["lm"], weights["lm"] = lm, lm_weight
    if pinyin_ctc is not None and pinyin_search_weight:
        scorers["pinyin_ctc"] = CTCPrefixScorer(ctc=pinyin_ctc, eos=eos)
        weights["pinyin_ctc"] = pinyin_search_weight
    beam_search = BeamSearch(
        beam_size=beam_size, weights=weights, scorers=scorers, sos=eos, eos=eos, vocab_size=len(token_list),
        token_list=token_list, pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        pre_beam_ratio=pre_beam_ratio,
        normalize_length=normalize_length,
    )
    if impl == "batch":
        non_batch = [k for k, v in beam_search.full_scorers.items() if not isinstance(v, BatchScorerInterface)]
        if non_batch:
            raise RuntimeError(f"scorers {non_batch} are not ESPnet batch scorers; use --beam_search_impl plain")
        beam_search.__class__ = BatchBeamSearch
    elif impl != "plain":
        raise ValueError(f"--beam_search_impl must be batch or plain, got {impl}")
    return beam_search.eval()


def load_lm(lm_train_config: Optional[str], lm_file: Optional[str], token_list: List[str], device: str):
    """The scorer of an ESPnet character LM (``LMTask``), checked to share the VSR model's token list."""
    from vallr_pin.lean_imports import import_lm_task

    LMTask = import_lm_task()  # without g2p_en's nltk.download (a network attempt) at import

    if not lm_train_config or not lm_file:
        raise ValueError("a non-zero --lm_weight needs --lm_train_config and --lm_file (the LM of stage 4)")
    for path in (lm_train_config, lm_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"language model file {path} not found; train it (vsr.sh --use_lm true, "
                                    "stage 4) or decode with --lm_weight 0")
    lm, lm_args = LMTask.build_model_from_file(lm_train_config, lm_file, device)
    if list(lm_args.token_list) != list(token_list):
        raise ValueError(f"the LM of {lm_train_config} has another token list than the VSR model; train it on "
                         "the VSR model's token list (stage 2's data/token_list/char/tokens.txt)")
    return lm.lm.eval()


class VideoToText:
    """A trained model + its beam searches. ``__call__`` takes normalised video and returns recognitions.

    Args:
        train_config: the training ``config.yaml`` (holds both token lists).
        model_file: any checkpoint of that run: ``{N}epoch.pth``, ``ckpt_keep/{N}epoch.pth``, ``*.ave.pth``.
        beam_size, ctc_weight, penalty, maxlenratio, minlenratio, nbest: character beam search (ESPnet meaning).
        beam_search_impl: ``batch`` (BatchBeamSearch) or ``plain`` (BeamSearch).
        pinyin_decode_mode: ``attention`` or ``ctc``; pinyin_beam_size / pinyin_ctc_weight for ``attention``.
        pinyin_rescore_weight: weight of the pinyin branch's score of each character hypothesis's reading
            (module docstring); needs a dual model when > 0.
        pinyin_search_weight: weight of the pinyin CTC as a prefix scorer inside the character beam search
            (module docstring); needs a dual model when > 0.
        pre_beam_ratio: the character search's CTC scorers see ``int(pre_beam_ratio * beam_size)`` candidates
            per step (ESPnet's default 1.5); more lets the pinyin CTC weigh characters the decoder and the LM
            rank lower.
        lm_train_config, lm_file, lm_weight: a character language model trained by ESPnet's ``lm_train``
            (``config.yaml`` and a checkpoint of the same run) and its weight in the character beam search
            (shallow fusion, as ESPnet's ``asr_inference``); its token list must be the model's.
    """

    def __init__(self, train_config: str, model_file: str, device: str = "cpu", beam_size: int = 10,
                 ctc_weight: float = 0.3, penalty: float = 0.0, maxlenratio: float = 0.0,
                 minlenratio: float = 0.0, nbest: int = 10, beam_search_impl: str = "batch",
                 pinyin_decode_mode: str = "attention", pinyin_beam_size: int = 5, pinyin_ctc_weight: float = 0.3,
                 normalize_length: bool = False, pinyin_rescore_weight: float = 0.0,
                 lm_train_config: Optional[str] = None, lm_file: Optional[str] = None, lm_weight: float = 0.0,
                 pinyin_search_weight: float = 0.0, pre_beam_ratio: float = 1.5):
        from vallr_pin.tasks.vsr import VSRTask

        model, train_args = VSRTask.build_model_from_file(train_config, None, device)
        for opt, w in (("pinyin_rescore_weight", pinyin_rescore_weight),
                       ("pinyin_search_weight", pinyin_search_weight)):
            if w and not model.has_pinyin_branch:
                raise ValueError(f"--{opt} {w} needs a dual model; {train_config} has no pinyin branch (use 0 for "
                                 "a char-only model)")
        states = torch.load(model_file, map_location=device, weights_only=False)
        try:
            # ESPnet's loader is strict=False: a dual config on a char-only checkpoint would silently decode with
            # a random pinyin decoder. Be strict.
            model.load_state_dict(states, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{model_file} does not match {train_config}: {e}") from None
        model.eval()
        self.model = model
        self.train_args = train_args
        self.device = device
        self.token_list = list(model.token_list)
        self.pinyin_token_list = list(model.pinyin_token_list) if model.has_pinyin_branch else None
        self._pinyin_index = {t: i for i, t in enumerate(self.pinyin_token_list or [])}
        self.maxlenratio, self.minlenratio, self.nbest = maxlenratio, minlenratio, nbest
        if pinyin_decode_mode not in ("attention", "ctc"):
            raise ValueError(f"--pinyin_decode_mode must be attention or ctc, got {pinyin_decode_mode}")
        self.pinyin_decode_mode = pinyin_decode_mode
        self.pinyin_rescore_weight = pinyin_rescore_weight
        self.pinyin_ctc_weight = pinyin_ctc_weight
        lm = load_lm(lm_train_config, lm_file, self.token_list, device) if lm_weight else None
        pinyin_ctc = (PinyinReadingCTC(model.pinyin_ctc, self.token_list, self.pinyin_token_list)
                      if pinyin_search_weight else None)
        self.beam_search = build_beam_search(model.decoder, model.ctc, self.token_list, beam_size, ctc_weight,
                                             penalty, beam_search_impl, normalize_length, lm, lm_weight,
                                             pinyin_ctc, pinyin_search_weight, pre_beam_ratio).to(device)
        self.pinyin_beam_search = None
        if model.has_pinyin_branch and pinyin_decode_mode == "attention":
            self.pinyin_beam_search = build_beam_search(
                model.pinyin_decoder, model.pinyin_ctc, self.pinyin_token_list, pinyin_beam_size,
                pinyin_ctc_weight, 0.0, beam_search_impl, normalize_length,
            ).to(device)

    def _ids_to_tokens(self, ids: Sequence[int], token_list: List[str]) -> List[str]:
        eos = len(token_list) - 1
        return [token_list[i] for i in ids if i != 0 and i != eos]  # drop <blank> and <sos/eos>

    def _pinyin(self, enc: torch.Tensor) -> str:
        """enc: (T, D) encoder output of one utterance -> best pinyin syllables, space separated."""
        if self.pinyin_token_list is None:
            return ""
        if self.pinyin_decode_mode == "ctc":
            ids = self.model.pinyin_ctc.argmax(enc.unsqueeze(0))[0]
            ids = torch.unique_consecutive(ids).tolist()
        else:
            hyps = self.pinyin_beam_search(x=enc, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
            ids = hyps[0].yseq[1:-1].tolist() if hyps else []
        return " ".join(self._ids_to_tokens(ids, self.pinyin_token_list))

    @staticmethod
    def reading(tokens: Sequence[str]) -> List[str]:
        """Toneless pinyin of character tokens, one syllable each (``pinyin_per_char``: polyphones resolved in
        context); a token that is not one Hanzi (``<unk>``), or a Hanzi without a reading, reads ``<unk>``."""
        from vallr_pin.text.normalize import is_hanzi
        from vallr_pin.text.pinyin import UNK, pinyin_per_char

        text = "".join(t if len(t) == 1 and is_hanzi(t) else "?" for t in tokens)  # one character per token
        return [p or UNK for p in pinyin_per_char(text)]

    def pinyin_scores(self, enc: torch.Tensor, hyps: Sequence[Sequence[str]]) -> List[float]:
        """log P(reading of each hypothesis | H) under the pinyin branch: ``pinyin_ctc_weight`` * CTC + the rest
        * attention decoder (teacher-forced, ending with <sos/eos>), as the pinyin beam search weighs them.

        enc: (T, D) encoder output of one utterance; hyps: character token lists (may be empty), or strings
        of Hanzi (one token per character)."""
        from espnet.nets.pytorch_backend.nets_utils import pad_list

        index = self._pinyin_index
        unk, eos = index.get("<unk>", 1), len(self.pinyin_token_list) - 1
        ys = [torch.tensor([index.get(s, unk) for s in self.reading(list(h))], dtype=torch.long) for h in hyps]
        n = len(ys)
        ylens = torch.tensor([len(y) for y in ys])
        hs = enc.unsqueeze(0).expand(n, -1, -1)
        hlens = torch.full((n,), enc.size(0), dtype=torch.long)
        # CTC: -loss is log P(y | H) summed over alignments; inf (a reading longer than the video) -> -inf
        # the frame posteriors are the same for every hypothesis: compute them once, not n times
        logp = self.model.pinyin_ctc.log_softmax(enc.unsqueeze(0)).transpose(0, 1).expand(-1, n, -1)  # (T, n, V)
        targets = torch.cat(ys) if int(ylens.sum()) else torch.zeros(0, dtype=torch.long)
        ctc = -torch.nn.functional.ctc_loss(logp, targets, hlens, ylens, blank=0, reduction="none")
        # attention: sum of log P(y_i | y_<i, H) over the reading and <sos/eos>
        ys_in = pad_list([torch.cat([torch.tensor([eos]), y]) for y in ys], eos)
        ys_out = pad_list([torch.cat([y, torch.tensor([eos])]) for y in ys], -1)
        dec_out, _ = self.model.pinyin_decoder(hs, hlens, ys_in, ylens + 1)
        lp = torch.log_softmax(dec_out, dim=-1)
        att = (lp.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (ys_out != -1)).sum(-1)
        w = self.pinyin_ctc_weight
        return (w * ctc + (1.0 - w) * att).tolist()

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, video_lengths: torch.Tensor) -> List[Recognition]:
        """video: (B, T, h*w) float, normalised as in training (VSRPreprocessor, train=False); (B,) frames."""
        enc, enc_lens = self.model.encode(video.to(self.device), video_lengths.to(self.device))
        results = []
        for b in range(enc.size(0)):
            x = enc[b, : int(enc_lens[b])]
            hyps = self.beam_search(x=x, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
            nbest, seen = [], set()
            for hyp in hyps:
                tokens = self._ids_to_tokens(hyp.yseq[1:-1].tolist(), self.token_list)
                text = "".join(tokens)
                if text in seen:  # two hypotheses that differ only by a <blank> token read the same
                    continue
                seen.add(text)
                nbest.append((text, tokens, float(hyp.score)))
            if self.pinyin_rescore_weight and nbest:
                # re-rank the whole beam, then cut to K: the pinyin vote may lift a hypothesis from below K
                py = self.pinyin_scores(x, [toks for _, toks, _ in nbest])
                nbest = [(t, toks, s + self.pinyin_rescore_weight * p) for (t, toks, s), p in zip(nbest, py)]
                nbest.sort(key=lambda h: h[2], reverse=True)
            results.append(Recognition(nbest=nbest[: self.nbest], pinyin=self._pinyin(x)))
        return results

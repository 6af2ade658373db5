"""vallr_pin.decoding.ctc_prefix: ESPnet's CTC prefix scorer with a cheaper frame loop must score as ESPnet's does.

The recursion is ESPnet's; only the rounding of a two-way log-sum-exp differs (torch.logaddexp against logsumexp
over a stacked pair), so scores agree to float32 rounding and whole beam searches find the same hypotheses.
"""
import pytest
import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH
from espnet.nets.scorers.ctc import CTCPrefixScorer

from vallr_pin.decoding.ctc_prefix import FastCTCPrefixScorer, FastCTCPrefixScoreTH
from vallr_pin.decoding.search import build_beam_search

V, D = 24, 16  # tokens (0 = <blank>, V-1 = <sos/eos>), encoder width


class RandomCTC(torch.nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(D, V)

    def log_softmax(self, hs):
        return torch.log_softmax(3.0 * self.proj(hs), dim=-1)  # peaky, as a trained CTC is


def _decoder(seed: int):
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

    torch.manual_seed(seed)
    return TransformerDecoder(vocab_size=V, encoder_output_size=D, attention_heads=2, linear_units=32,
                              num_blocks=1, dropout_rate=0.0, positional_dropout_rate=0.0,
                              self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0).eval()


def _search(seed: int, ctc_weight: float, pre_beam_ratio: float, fast: bool, second_ctc: bool):
    tokens = ["<blank>"] + [f"t{i}" for i in range(1, V - 1)] + ["<sos/eos>"]
    bs = build_beam_search(_decoder(seed), RandomCTC(seed + 1), tokens, beam_size=5, ctc_weight=ctc_weight,
                           penalty=0.5, impl="batch", pinyin_ctc=RandomCTC(seed + 2) if second_ctc else None,
                           pinyin_search_weight=0.3 if second_ctc else 0.0, pre_beam_ratio=pre_beam_ratio)
    for name in ("ctc", "pinyin_ctc"):
        if name in bs.scorers:
            assert type(bs.scorers[name]) is FastCTCPrefixScorer  # what the recipes decode with
            if not fast:
                bs.scorers[name].__class__ = CTCPrefixScorer  # ESPnet's own, as the reference
    torch.manual_seed(seed + 3)
    x = torch.randn(40, D)
    with torch.no_grad():
        return bs(x=x, maxlenratio=0.0, minlenratio=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ctc_weight,pre_beam_ratio,second_ctc", [
    (0.5, 1.5, False),  # partial scoring of the pre-beam (ESPnet's default)
    (0.5, 3.0, True),   # two CTC scorers, a wider pre-beam: the mini recipe's decode
    (1.0, 1.5, False),  # CTC alone: no pre-beam, every token scored
])
def test_beam_search_finds_espnets_hypotheses_with_espnets_scores(seed, ctc_weight, pre_beam_ratio, second_ctc):
    ref = _search(seed, ctc_weight, pre_beam_ratio, fast=False, second_ctc=second_ctc)
    got = _search(seed, ctc_weight, pre_beam_ratio, fast=True, second_ctc=second_ctc)
    assert len(ref) == len(got) > 0
    for r, g in zip(ref, got):
        assert r.yseq.tolist() == g.yseq.tolist()
        assert float(g.score) == pytest.approx(float(r.score), abs=1e-3)
        for k, v in r.scores.items():
            assert float(g.scores[k]) == pytest.approx(float(v), abs=1e-3), k
    # the hypotheses are not trivial (repeated labels, the phi = r^b path, are driven by the test below)
    assert max(len(h.yseq) for h in got) >= 5


def _drive(impl_cls, logp, steps, seed, scoring_num, requires_grad=False):
    """Run ``steps`` prefix extensions of 3 hypotheses, choosing the labels from a fixed generator, and return
    every step's scores. The candidates are distinct and may hold <blank> and <sos/eos> (ESPnet's pre-beam can
    pick them); every other step they hold each hypothesis's last label (a repeat needs a blank in between), and
    every third step a hypothesis repeats it."""
    gen = torch.Generator().manual_seed(seed)
    x = logp.clone().requires_grad_(requires_grad)
    impl = impl_cls(x, torch.tensor([logp.size(1)]), 0, V - 1)
    n = 3
    ys = [torch.tensor([V - 1]) for _ in range(n)]
    state, out = None, []
    for step in range(steps):
        ids = None
        if scoring_num:
            rows = []
            for y in ys:
                last = int(y[-1])
                perm = [int(i) for i in torch.randperm(V, generator=gen) if int(i) != last]
                rows.append(([last] if step % 2 and last != V - 1 else []) + perm)
            ids = torch.tensor([r[:scoring_num] for r in rows])
        scores, full_state = impl(ys, state, ids)
        out.append(scores.detach())
        labels = [[int(i) for i in (ids[h] if ids is not None else torch.randperm(V, generator=gen))
                   if 0 < int(i) < V - 1] for h in range(n)]  # a hypothesis grows by a label, not blank or eos
        new = torch.tensor([lab[int(torch.randint(len(lab), (1,), generator=gen))] for lab in labels])
        if step % 3 == 2:
            new = torch.tensor([int(y[-1]) if int(y[-1]) != V - 1 else int(nw) for y, nw in zip(ys, new)])
        best = (torch.arange(n) * V + new).view(1, -1)  # (batch, hyps) in the (hyps x V) space
        r, s, f_min, f_max = impl.index_select_state(full_state, best)
        state = (r, s, f_min, f_max)
        ys = [torch.cat([y, nw.view(1)]) for y, nw in zip(ys, new)]
    return out


def _assert_same_scores(ref, got):
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        finite = r > -1e9  # logzero entries (blank, unscored labels) are -1e10 in both
        assert torch.equal(finite, g > -1e9)
        assert torch.allclose(g[finite], r[finite], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("scoring_num", [0, 6])
def test_every_step_scores_as_espnets_scorer(scoring_num):
    """Step by step, through ESPnet's own state selection, repeated labels, <blank> and <sos/eos> among the
    candidates included, the scores are ESPnet's to float32 rounding (the state it carries is ESPnet's layout:
    index_select_state is inherited)."""
    torch.manual_seed(7)
    logp = torch.log_softmax(3.0 * torch.randn(1, 30, V), dim=-1)
    _assert_same_scores(_drive(CTCPrefixScoreTH, logp, 6, 11, scoring_num),
                        _drive(FastCTCPrefixScoreTH, logp, 6, 11, scoring_num))


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_prefixes_as_long_as_the_input_score_as_espnets(frames):
    """Up to a prefix as long as the input (the frame loop then has nothing to do), as ESPnet scores them."""
    torch.manual_seed(frames)
    logp = torch.log_softmax(3.0 * torch.randn(1, frames, V), dim=-1)
    for scoring_num in (0, 6):
        _assert_same_scores(_drive(CTCPrefixScoreTH, logp, frames, 5, scoring_num),
                            _drive(FastCTCPrefixScoreTH, logp, frames, 5, scoring_num))


def test_posteriors_that_require_grad_are_scored():
    """ESPnet's BeamSearch does not turn autograd off; a CTC whose output requires grad still scores."""
    torch.manual_seed(3)
    logp = torch.log_softmax(torch.randn(1, 12, V), dim=-1)
    _assert_same_scores(_drive(CTCPrefixScoreTH, logp, 4, 2, 6),
                        _drive(FastCTCPrefixScoreTH, logp, 4, 2, 6, requires_grad=True))


def test_margin_is_refused():
    with pytest.raises(ValueError, match="margin"):
        FastCTCPrefixScoreTH(torch.zeros(1, 5, V), torch.tensor([5]), 0, V - 1, margin=2)

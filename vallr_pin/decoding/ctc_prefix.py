"""ESPnet's vectorised CTC prefix scorer with a cheaper frame loop: the same algorithm, faster on a CPU.

ESPnet's ``CTCPrefixScoreTH`` (Watanabe et al. 2017, Algorithm 2; vectorised by Seki et al. 2019) spends most of
a CPU beam search in its loop over frames: every decoding step walks every frame, and each frame stacks four
(hyps x candidates) tensors to take a two-way ``logsumexp``. In the mini recipe's decode (two CTC scorers, the
character CTC and the pinyin CTC read through the characters) that loop was half of the search's CPU time (a
cProfile of a stage-6 decode; ``test/bench/bench_decode.py --ctc-prefix both`` measures the gain). Here the
forward variables live in one (T, 3, hyps, candidates) tensor laid out as (r^n, phi, r^b), so one ``logaddexp``
of r^n against the contiguous (phi, r^b) slice gives both new variables of a frame and one strided
``add(out=)`` stores them (ESPnet's loop stacks four tensors per frame); the per-hypothesis Python loops that
index tensors around it become index operations.

What is computed is ESPnet's recursion, unchanged (``r^n_t = lse(r^n_{t-1}, phi_{t-1}) + x_t(c)``,
``r^b_t = lse(r^n_{t-1}, r^b_{t-1}) + x_t(blank)``). ``torch.logaddexp`` rounds differently from ESPnet's
``logsumexp`` over a stacked pair, by a few units in the last place of a float32 (test/test_ctc_prefix.py bounds
it), so a beam may break a near-tie the other way. On the mini recipe's trained models the stage-5 texts were
those of ESPnet's scorer, and its RESULTS.md is decoded with this one.
Only what the beam searches of this package use is supported: batch size 1 (``CTCPrefixScorer`` always
builds it so), no attention-window margin.
"""
from __future__ import annotations

import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH
from espnet.nets.scorers.ctc import CTCPrefixScorer


class FastCTCPrefixScoreTH(CTCPrefixScoreTH):
    """``CTCPrefixScoreTH`` with the frame loop above; state layout and ``index_select_state`` are ESPnet's."""

    def __init__(self, x, xlens, blank, eos, margin=0):
        if margin:
            raise ValueError("FastCTCPrefixScoreTH has no attention-window margin; use ESPnet's CTCPrefixScoreTH")
        super().__init__(x, xlens, blank, eos, margin)

    @torch.no_grad()  # a search needs no gradient, and add(out=) refuses autograd (ESPnet's forward may have it on)
    def __call__(self, y, state, scoring_ids=None, att_w=None):
        output_length = len(y[0]) - 1  # ignore sos
        n_bh = len(y)  # batch * hyps
        n_hyps = n_bh // self.batch
        last_ids = torch.tensor([int(yi[-1]) for yi in y], device=self.device)
        hyp = torch.arange(n_bh, device=self.device)
        self.scoring_num = scoring_ids.size(-1) if scoring_ids is not None else 0
        if state is None:
            r_prev = torch.full((self.input_length, 2, self.batch, n_hyps), self.logzero, dtype=self.dtype,
                                device=self.device)
            r_prev[:, 1] = torch.cumsum(self.x[0, :, :, self.blank], 0).unsqueeze(2)
            r_prev = r_prev.view(-1, 2, n_bh)
            s_prev = 0.0
        else:
            r_prev, s_prev, _, _ = state

        # the candidates' posteriors: (2, T, n_bh, snum), [0] the candidate's, [1] blank's
        if self.scoring_num > 0:
            snum = self.scoring_num
            scoring_idmap = torch.full((n_bh, self.odim), -1, dtype=torch.long, device=self.device)
            scoring_idmap[hyp.unsqueeze(1), scoring_ids] = torch.arange(snum, device=self.device)
            scoring_idx = (scoring_ids + self.idx_bo.repeat(1, n_hyps).view(-1, 1)).view(-1)
            x_ = torch.index_select(self.x.view(2, -1, self.batch * self.odim), 2, scoring_idx).view(
                2, -1, n_bh, snum)
            pos = scoring_idmap[hyp, last_ids]  # where each hypothesis's last label sits among its candidates
        else:
            scoring_idmap = None
            snum = self.odim
            x_ = self.x.unsqueeze(3).repeat(1, 1, 1, n_hyps, 1).view(2, -1, n_bh, snum)
            pos = last_ids

        # rr[:, 0] = r^n, rr[:, 1] = phi (prefix probability a new label may follow), rr[:, 2] = r^b
        rr = torch.full((self.input_length, 3, n_bh, snum), self.logzero, dtype=self.dtype, device=self.device)
        if output_length == 0:
            rr[0, 0] = x_[0, 0]
        r_sum = torch.logsumexp(r_prev, 1)  # (T, n_bh)
        rr[:, 1] = r_sum.unsqueeze(2)
        # a repeated label needs a blank in between: its phi is r^b only
        keep = pos >= 0
        rr[:, 1, hyp[keep], pos[keep]] = r_prev[:, 1, hyp[keep]]

        start = max(output_length, 1)
        end = self.input_length
        # per-frame views made once (unbind), so the loop body is two kernels and no Python indexing
        x_t = x_.transpose(0, 1).unbind(0)  # T x (2, n_bh, snum): the label's and blank's posteriors
        rn, phi_rb = rr[:, 0].unbind(0), rr[:, 1:].unbind(0)
        r_out = rr[:, 0::2]  # (r^n, r^b) of every frame, a view
        out = r_out.unbind(0)
        for t in range(start, end):
            torch.add(torch.logaddexp(rn[t - 1], phi_rb[t - 1]), x_t[t], out=out[t])

        # log prefix probabilities psi
        log_phi = rr[:, 1]
        log_phi_x = torch.cat((log_phi[0].unsqueeze(0), log_phi[:-1]), dim=0) + x_[0]
        log_psi_ = torch.logsumexp(torch.cat((log_phi_x[start:end], rr[start - 1, 0].unsqueeze(0)), dim=0), dim=0)
        if scoring_ids is not None:
            log_psi = torch.full((n_bh, self.odim), self.logzero, dtype=self.dtype, device=self.device)
            log_psi.scatter_(1, scoring_ids, log_psi_)
        else:
            log_psi = log_psi_
        # (.to: ESPnet's extend_prob leaves end_frames on the CPU)
        log_psi[:, self.eos] = r_sum[self.end_frames.to(self.device)[hyp // n_hyps], hyp]
        if self.eos != self.blank:
            log_psi[:, self.blank] = self.logzero  # exclude blank probs

        r = r_out.contiguous()  # (T, 2, n_bh, snum), ESPnet's state layout
        return (log_psi - s_prev), (r, log_psi, 0, 0, scoring_idmap)


class FastCTCPrefixScorer(CTCPrefixScorer):
    """ESPnet's ``CTCPrefixScorer`` whose batch path (``BatchBeamSearch``) uses ``FastCTCPrefixScoreTH``; the
    plain ``BeamSearch`` path (numpy ``CTCPrefixScore``) is ESPnet's."""

    def batch_init_state(self, x: torch.Tensor):
        logp = self.ctc.log_softmax(x.unsqueeze(0))  # batch size 1, as ESPnet's
        self.impl = FastCTCPrefixScoreTH(logp, torch.tensor([logp.size(1)]), 0, self.eos)
        return None

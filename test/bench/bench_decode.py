#!/usr/bin/env python3
"""Decoding speed of one stage-5/6 job for the paper-size model: utterances per second and seconds per frame.

Builds the model of ``--config`` (random weights; the recipe's paper config by default), saves it as a trained
model is saved (config.yaml + .pth), and decodes ``--utts`` clips of ``--frames`` frames with the real decoder
(``vallr_pin.decoding.search.VideoToText``) and ``--decode_config``'s settings: character beam 10 / 10-best,
pinyin beam 5. A random model never ends a hypothesis, so the hypotheses run to ``maxlenratio x frames`` tokens:
the defaults are a mean CNVSRC-Multi.Dev utterance, 128 frames and 21.5 characters (the CNVSRC baselines'
lists of its 20,450 utterances), so 22 characters. The encoder (frontend + SAN-M) is
timed apart from the searches, since it scales with frames and the searches with tokens x beam.

``--ctc-prefix both`` times the same searches with ESPnet's own CTC prefix scorer and with the one the recipes
decode with (:mod:`vallr_pin.decoding.ctc_prefix`), one after the other in one process, and prints the ratio.

    python test/bench/bench_decode.py                      # CPU, 1 thread, as one stage-6 job of vsr.sh runs
    python test/bench/bench_decode.py --device cuda --utts 20
    python test/bench/bench_decode.py --config egs/mini_cnvsrc/vsr1/conf/train_vsr_dual.yaml \
        --decode_config egs/mini_cnvsrc/vsr1/conf/decode_vsr.yaml --frames 60 --maxlenratio 0.27 --ctc-prefix both
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "egs/cnvsrc/vsr1/conf/train_vsr_dual.yaml")
    p.add_argument("--decode_config", type=Path, default=REPO / "egs/cnvsrc/vsr1/conf/decode_vsr.yaml")
    p.add_argument("--utts", type=int, default=3, help="utterances decoded (after one warm-up)")
    p.add_argument("--frames", type=int, default=128, help="frames per utterance (CNVSRC-Multi.Dev: 128 on average)")
    p.add_argument("--maxlenratio", type=float, default=0.172, help="hypothesis length / frames (see above)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (vsr.sh's jobs use 1)")
    p.add_argument("--ctc-prefix", choices=["fast", "espnet", "both"], default="fast",
                   help="CTC prefix scorer of the searches: the recipes' (fast), ESPnet's own, or both in turn")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from bench_train_step import build

    from vallr_pin.decoding.search import VideoToText
    from vallr_pin.packing import decode_kwargs

    dec = yaml.safe_load(args.decode_config.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from vallr_pin.tasks.vsr import VSRTask

        model = build(args.config, 4000, 400, 88, tmp)  # also writes the token lists and the config it used
        torch.save(model.state_dict(), tmp / "model.pth")
        train_args = VSRTask.get_parser().parse_args([
            "--config", str(tmp / args.config.name), "--token_list", str(tmp / "c.txt"),
            "--pinyin_token_list", str(tmp / "p.txt"), "--output_dir", str(tmp)])
        (tmp / "config.yaml").write_text(yaml.safe_dump(vars(train_args), allow_unicode=True), encoding="utf-8")
        # the decode config's options as a packed model passes them, less the LM (a random model has none)
        opts = {**decode_kwargs(dec), "maxlenratio": args.maxlenratio, "lm_weight": 0.0}
        v2t = VideoToText(str(tmp / "config.yaml"), str(tmp / "model.pth"), device=args.device, **opts)
    clips = [torch.randn(1, args.frames, 88 * 88) for _ in range(args.utts + 1)]
    lengths = torch.tensor([args.frames])

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def use_ctc_prefix(kind):
        from espnet.nets.scorers.ctc import CTCPrefixScorer

        from vallr_pin.decoding.ctc_prefix import FastCTCPrefixScorer

        for search in (v2t.beam_search, v2t.pinyin_beam_search):
            for scorer in (search.scorers.values() if search is not None else ()):
                if isinstance(scorer, CTCPrefixScorer):
                    scorer.__class__ = FastCTCPrefixScorer if kind == "fast" else CTCPrefixScorer

    # On a CPU the job's CPU time is its cost (a shared host stretches the wall time, not the work); on a GPU
    # the wall time is.
    clock = time.perf_counter if args.device.startswith("cuda") else time.process_time

    def timed():
        v2t(clips[0], lengths)  # warm-up
        sync()
        t0, w0 = clock(), time.perf_counter()
        recs = [v2t(c, lengths)[0] for c in clips[1:]]
        sync()
        return recs, (clock() - t0) / args.utts, (time.perf_counter() - w0) / args.utts

    runs = {}
    for kind in (("fast", "espnet") if args.ctc_prefix == "both" else (args.ctc_prefix,)):
        use_ctc_prefix(kind)
        runs[kind] = timed()
    recs = next(iter(runs.values()))[0]
    with torch.no_grad():
        t0 = clock()
        for c in clips[1:]:
            v2t.model.encode(c.to(args.device), lengths.to(args.device))
        sync()
        enc = (clock() - t0) / args.utts
    params = sum(p.numel() for p in v2t.model.parameters()) / 1e6
    tokens = sum(len(r.nbest[0][0]) for r in recs) / len(recs) if recs and recs[0].nbest else float("nan")
    print(f"{args.config.name}: {params:.1f}M parameters, device {args.device}, {args.threads} thread(s); "
          f"{args.frames} frames, {tokens:.0f} characters per utterance, beam {dec['beam_size']}, "
          f"pinyin beam {dec['pinyin_beam_size']} ({dec['pinyin_decode_mode']}), pinyin CTC in the search "
          f"{dec.get('pinyin_search_weight', 0)}, pre-beam ratio {dec.get('pre_beam_ratio', 1.5)}")
    kind = "GPU wall" if clock is time.perf_counter else "CPU"
    for name, (_, total, wall) in runs.items():
        print(f"[CTC prefix scorer: {name}] per utterance: {total:.2f} {kind} s ({1 / total:.3f} utt/s per job; "
              f"wall {wall:.2f} s), of which encoder {enc:.2f} s and searches {total - enc:.2f} s; "
              f"{1000 * total / args.frames:.1f} ms per frame")
    if len(runs) == 2:
        (ra, ta, _), (rb, tb, _) = runs["espnet"], runs["fast"]
        same = [[t for t, _, _ in a.nbest] == [t for t, _, _ in b.nbest] for a, b in zip(ra, rb)]
        print(f"ESPnet's / fast CTC prefix scorer: x{ta / tb:.2f} per utterance, x{(ta - enc) / (tb - enc):.2f} in "
              f"the searches; the same N-best texts for {sum(same)} of {len(same)} utterances")

if __name__ == "__main__":
    main()

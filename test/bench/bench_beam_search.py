#!/usr/bin/env python3
"""Utterances per second of ESPnet's BatchBeamSearch vs BeamSearch at beam 10, same model and data.

With ``--train_config/--model_file/--feats_scp`` it decodes real ROIs with a trained checkpoint (e.g. the mini
recipe's ``exp/vsr_*``); otherwise it builds the tiny dual model from its config with random weights and decodes
synthetic clips with a fixed ``--maxlenratio`` so both searches do the same, deterministic amount of work.
Encoder time is excluded: both searches get the same encoder output. Prints the speed ratio and whether the
two searches returned the same 1-best.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test" / "bench"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_config", default=None, help="config.yaml of a trained model (optional)")
    parser.add_argument("--model_file", default=None, help="its checkpoint (optional)")
    parser.add_argument("--feats_scp", default=None, help="ROI feats.scp to decode (optional)")
    parser.add_argument("--utts", type=int, default=4, help="utterances to decode")
    parser.add_argument("--frames", type=int, default=75, help="frames per synthetic clip")
    parser.add_argument("--beam_size", type=int, default=10, help="beam width")
    parser.add_argument("--ctc_weight", type=float, default=0.3, help="CTC weight")
    parser.add_argument("--maxlenratio", type=float, default=0.25, help="max tokens / frames (synthetic mode)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("espnet").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from vallr_pin.decoding.search import build_beam_search

    if args.train_config:
        import kaldiio
        from vallr_pin.decoding.search import VideoToText
        from vallr_pin.tasks.vsr import VSRTask

        v2t = VideoToText(args.train_config, args.model_file, device=args.device)
        model, train_args = v2t.model, v2t.train_args
        pre = VSRTask.build_preprocess_fn(train_args, train=False)
        clips = [torch.from_numpy(pre(k, {"video": v})["video"])
                 for k, v in list(kaldiio.load_scp(args.feats_scp).items())[: args.utts]]
        maxlenratio = 0.0
    else:
        from bench_train_step import CONF, build

        with tempfile.TemporaryDirectory() as tmp:
            model = build(CONF / "train_vsr_dual_tiny.yaml", 3000, 400, 88, Path(tmp))
        clips = [torch.randn(args.frames, 88 * 88) for _ in range(args.utts)]
        maxlenratio = args.maxlenratio
    model.to(args.device).eval()
    with torch.no_grad():
        encs = [model.encode(c[None].to(args.device), torch.tensor([len(c)], device=args.device))[0][0]
                for c in clips]

    results = {}
    for impl in ("plain", "batch"):
        bs = build_beam_search(model.decoder, model.ctc, model.token_list, args.beam_size, args.ctc_weight, 0.0,
                               impl).to(args.device)
        with torch.no_grad():
            bs(x=encs[0], maxlenratio=maxlenratio)  # warm-up
            t0 = time.perf_counter()
            best = [bs(x=e, maxlenratio=maxlenratio)[0].yseq.tolist() for e in encs]
            dt = time.perf_counter() - t0
        results[impl] = (len(encs) / dt, best)
        print(f"{'BatchBeamSearch' if impl == 'batch' else 'BeamSearch     '}: {len(encs) / dt:.2f} utt/s "
              f"(beam {args.beam_size}, {len(encs)} utts, mean {sum(len(b) for b in best) / len(best):.1f} tokens)")
    print(f"BatchBeamSearch / BeamSearch speed: {results['batch'][0] / results['plain'][0]:.1f}x; "
          f"same 1-best: {results['batch'][1] == results['plain'][1]}")


if __name__ == "__main__":
    main()

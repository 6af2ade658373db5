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
decode with (:mod:`vallr_pin.decoding.ctc_prefix`), in turn on each utterance in one process (so a host whose
speed drifts weighs on both alike), and prints the ratio.

    python test/bench/bench_decode.py                      # CPU, 1 thread, as one stage-6 job of vsr.sh runs
    python test/bench/bench_decode.py --device cuda --utts 20
    python test/bench/bench_decode.py --config egs/mini_cnvsrc/vsr1/conf/train_vsr_dual.yaml \
        --decode_config egs/mini_cnvsrc/vsr1/conf/decode_vsr.yaml --frames 60 --maxlenratio 0.27 --ctc-prefix both

``--recipe DIR`` decodes, instead, a recipe's own stage-1 crops (``dump/roi/<--set>``, the first ``--utts``) with
its trained model (``exp/vsr_dual/<--model>``), its ``conf/decode_vsr.yaml`` and, when it was trained, its
character LM (``exp/lm_char``), as stages 5-6 do; ``--inference-args`` are stage 6's overrides:

    python test/bench/bench_decode.py --recipe egs/mini_cnvsrc/vsr1 --set train_sub1200 --model ckpt_keep/12epoch.pth \
        --inference-args "--beam_size 5 --nbest 5" --utts 100 --ctc-prefix both
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
    p.add_argument("--recipe", type=Path, help="decode this recipe's crops with its trained model (see above)")
    p.add_argument("--set", default="dev", help="--recipe: the dump/roi set")
    p.add_argument("--model", default="valid.acc_char.ave.pth", help="--recipe: checkpoint under exp/vsr_dual")
    p.add_argument("--inference-args", default="", help='--recipe: e.g. "--beam_size 5 --nbest 5" (stage 6)')
    args = p.parse_args(argv)
    if args.recipe:
        return bench_recipe(args)
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
    clips = [(torch.randn(1, args.frames, 88 * 88), torch.tensor([args.frames])) for _ in range(args.utts + 1)]
    runs, enc, recs = time_searches(v2t, clips, args)
    tokens = sum(len(r.nbest[0][0]) for r in recs) / len(recs) if recs and recs[0].nbest else float("nan")
    print(f"{args.config.name}: {sum(p.numel() for p in v2t.model.parameters()) / 1e6:.1f}M parameters, device "
          f"{args.device}, {args.threads} thread(s); {args.frames} frames, {tokens:.0f} characters per utterance, "
          f"{describe({**dec, 'lm_weight': 0.0})}")
    report(runs, enc, args.frames, args)


def describe(dec: dict) -> str:
    return (f"beam {dec['beam_size']}, pinyin beam {dec['pinyin_beam_size']} ({dec['pinyin_decode_mode']}), pinyin "
            f"CTC in the search {dec.get('pinyin_search_weight', 0)}, pre-beam ratio {dec.get('pre_beam_ratio', 1.5)}"
            f", LM weight {dec.get('lm_weight', 0)}")


def time_searches(v2t, clips, args):
    """Decode clips[1:] (clips[0] warms up) with each CTC prefix scorer asked for; return {scorer: (recognitions,
    seconds per utterance, wall seconds per utterance)}, the encoder's seconds per utterance, and recognitions."""
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
    n = len(clips) - 1
    kinds = ("fast", "espnet") if args.ctc_prefix == "both" else (args.ctc_prefix,)
    # utterance by utterance, the scorers in turn (first one, then the other, alternately), so that a host
    # whose speed drifts (a shared VM) weighs on both alike
    recs = {k: [] for k in kinds}
    cpu = {k: 0.0 for k in kinds}
    wall = {k: 0.0 for k in kinds}
    for k in kinds:
        use_ctc_prefix(k)
        v2t(*clips[0])  # warm-up
    for i, (x, xl) in enumerate(clips[1:]):
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            use_ctc_prefix(k)
            sync()
            t0, w0 = clock(), time.perf_counter()
            recs[k].append(v2t(x, xl)[0])
            sync()
            cpu[k] += clock() - t0
            wall[k] += time.perf_counter() - w0
    runs = {k: (recs[k], cpu[k] / n, wall[k] / n) for k in kinds}
    with torch.no_grad():
        t0 = clock()
        for x, xl in clips[1:]:
            v2t.model.encode(x.to(args.device), xl.to(args.device))
        sync()
        enc = (clock() - t0) / n
    return runs, enc, next(iter(runs.values()))[0]


def report(runs, enc, frames, args):
    kind = "GPU wall" if args.device.startswith("cuda") else "CPU"
    for name, (_, total, wall) in runs.items():
        print(f"[CTC prefix scorer: {name}] per utterance: {total:.3f} {kind} s ({1 / total:.3f} utt/s per job; "
              f"wall {wall:.3f} s), of which encoder {enc:.3f} s and searches {total - enc:.3f} s; "
              f"{1000 * total / frames:.1f} ms per frame")
    if len(runs) == 2:
        (ra, ta, _), (rb, tb, _) = runs["espnet"], runs["fast"]
        same = [[t for t, _, _ in a.nbest] == [t for t, _, _ in b.nbest] for a, b in zip(ra, rb)]
        print(f"ESPnet's / fast CTC prefix scorer: x{ta / tb:.2f} per utterance, x{(ta - enc) / (tb - enc):.2f} in "
              f"the searches; the same N-best texts for {sum(same)} of {len(same)} utterances")


def bench_recipe(args):
    """--recipe: the recipe's trained model, decode config (+ stage 6's overrides) and LM on its own crops."""
    import shlex

    import kaldiio

    from vallr_pin.decoding.search import VideoToText
    from vallr_pin.tasks.vsr import VSRTask

    import os

    r = args.recipe.resolve()
    for need in ("exp/vsr_dual/config.yaml", f"exp/vsr_dual/{args.model}", f"dump/roi/{args.set}/feats.scp"):
        if not (r / need).is_file():
            raise SystemExit(f"bench_decode: {r / need} not found; run the recipe through stage 5 (stage 6 for "
                             "train_sub<N> and ckpt_keep/) first")
    os.chdir(r)  # the scp files hold paths relative to the recipe directory
    dec = yaml.safe_load((r / "conf/decode_vsr.yaml").read_text(encoding="utf-8"))
    extra = shlex.split(args.inference_args)  # "--beam_size 5 --nbest 5": options of the decode config
    for k, v in zip(extra[::2], extra[1::2]):
        k = k.lstrip("-")
        if k not in dec:
            raise SystemExit(f"--inference-args: {k} is not an option of {r}/conf/decode_vsr.yaml")
        dec[k] = type(dec[k])(v)
    lm = r / "exp/lm_char"
    lm_opts = (dict(lm_train_config=str(lm / "config.yaml"), lm_file=str(lm / "valid.loss.best.pth"))
               if (lm / "valid.loss.best.pth").is_file() else dict(lm_weight=0.0))
    from vallr_pin.packing import decode_kwargs

    exp = r / "exp/vsr_dual"
    v2t = VideoToText(str(exp / "config.yaml"), str(exp / args.model), device=args.device,
                      **{**decode_kwargs(dec), **lm_opts})
    pre = VSRTask.build_preprocess_fn(v2t.train_args, train=False)
    clips = []
    for i, (key, mat) in enumerate(kaldiio.load_scp_sequential(str(r / "dump/roi" / args.set / "feats.scp"))):
        if i > args.utts:
            break
        x = torch.as_tensor(pre(key, {"video": mat})["video"]).float()
        clips.append((x[None], torch.tensor([x.shape[0]])))
    runs, enc, recs = time_searches(v2t, clips, args)
    frames = sum(int(xl) for _, xl in clips[1:]) / (len(clips) - 1)
    chars = sum(len(rec.nbest[0][0]) for rec in recs if rec.nbest) / len(recs)
    print(f"{r} exp/vsr_dual/{args.model} on dump/roi/{args.set} ({len(recs)} utterances, {frames:.0f} frames and "
          f"{chars:.1f} characters per utterance), {args.threads} thread(s); {describe(dec)}")
    report(runs, enc, frames, args)

if __name__ == "__main__":
    main()

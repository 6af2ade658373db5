"""Score a decoded ``text`` against the reference: CER with S/D/I, sentence error rate, sclite cross-check.

Writes into ``--out-dir`` (normally ``<decode dir>/score_cer``), each file atomically:
  ref.trn, hyp.trn   ESPnet-style trn files (characters separated by spaces, TAB, ``(<spk>-<utt>)``)
  result.txt         sclite's full report (only when sclite is found)
  utt_errors.txt     per utterance, Kaldi ``wer_per_utt_details`` layout: ref / hyp / op / #csid lines
  summary.json       {"cer", "sub", "del", "ins", "n_ref", "ser", "n_sent", ...}; written last, so its presence
                     means the scoring finished

Reference and hypothesis go through the same normaliser first, stage 2's (``vallr_pin.text.normalize``: Hanzi
only, punctuation, spaces and Latin dropped, digits read out), so the punctuation of a reference that was never
normalised is not counted against the hypothesis (a warning names such a reference); a decoder's ``<unk>``
stays one character. The trn files hold the normalised texts.

Our counts and sclite's must agree exactly per utterance; if they do not, this exits non-zero and writes no
summary.json.

Example:
  python -m vallr_pin.bin.score --ref data/test/text --hyp exp/vsr_dual/decode_x/test/text \\
      --out-dir exp/vsr_dual/decode_x/test/score_cer
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv
from vallr_pin.scoring.cer import CorpusScore, UttScore, normalize_transcripts, score_corpus
from vallr_pin.scoring.sclite import compare_with_sclite, find_sclite, run_sclite, trn_id, write_trn

def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Character error rate (S/D/I, SER) of a hypothesis text against a reference text, "
        "cross-checked with NIST sclite; writes <out-dir>/{ref.trn,hyp.trn,result.txt,utt_errors.txt,"
        "summary.json}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ref", required=True, help="Reference Kaldi text file (<utt> <hanzi>), e.g. data/test/text.")
    parser.add_argument(
        "--hyp", required=True,
        help="Hypothesis Kaldi text file, e.g. exp/<model>/decode_<conf>/<set>/text. Utterances missing from it "
        "are scored as empty hypotheses (all deletions) with a warning; utterances not in --ref are an error.",
    )
    parser.add_argument("--out-dir", required=True, help="Output directory, normally <decode dir>/score_cer.")
    parser.add_argument(
        "--utt2spk", default=None,
        help="utt2spk giving the speaker in the trn ids (<spk>-<utt>). Default: utt2spk beside --ref if it "
        "exists, else each utterance is its own speaker.",
    )
    parser.add_argument(
        "--sclite", default="auto",
        help="sclite binary: 'auto' (PATH, then /usr/lib/sctk/bin/sclite; skipped with a warning if absent), "
        "'none' (do not run it), or a path (must exist).",
    )
    parser.add_argument(
        "--allow-empty-ref", action="store_true",
        help="Score utterances whose reference is empty (their hypothesis characters count as insertions, "
        "N=0) instead of stopping with an error naming the utterance.",
    )
    add_log_level(parser)
    return parser


def format_utt_errors(u: UttScore) -> str:
    """Kaldi's per-utterance detail block (utils/scoring/wer_per_utt_details.pl): four lines per utterance."""
    ref = " ".join(r if r is not None else "***" for _, r, _ in u.alignment)
    hyp = " ".join(h if h is not None else "***" for _, _, h in u.alignment)
    ops = " ".join(op for op, _, _ in u.alignment)
    return (
        f"{u.utt} ref  {ref}\n{u.utt} hyp  {hyp}\n{u.utt} op   {ops}\n"
        f"{u.utt} #csid {u.correct} {u.sub} {u.dele} {u.ins}\n"
    )


def resolve_utt2spk(ref: Path, utt2spk: Optional[str], utts: List[str]) -> Dict[str, str]:
    path = Path(utt2spk) if utt2spk else ref.parent / "utt2spk"
    if utt2spk is None and not path.is_file():
        logging.info("no utt2spk beside %s: using each utterance id as its speaker in the trn ids", ref)
        return {u: u for u in utts}
    mapping = read_kv(path)
    missing = [u for u in utts if u not in mapping]
    if missing:
        raise ValueError(f"{path}: no speaker for {len(missing)} reference utterance(s), e.g. '{missing[0]}'; "
                         "run utils/fix_data_dir.sh on the data dir or pass the matching --utt2spk")
    return {u: mapping[u] for u in utts}


def score_files(
    ref: str | os.PathLike,
    hyp: str | os.PathLike,
    out_dir: str | os.PathLike,
    utt2spk: Optional[str] = None,
    sclite: str = "auto",
    allow_empty_ref: bool = False,
) -> CorpusScore:
    """Score ``hyp`` against ``ref`` and write the score_cer directory (see the module docstring)."""
    ref, hyp, out_dir = Path(ref), Path(hyp), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A stale summary from an earlier run must not survive a failed re-run.
    (out_dir / "summary.json").unlink(missing_ok=True)

    refs, hyps = read_kv(ref), read_kv(hyp)
    if not refs:
        raise ValueError(f"{ref}: no utterances; nothing to score")
    raw_refs = refs
    refs, hyps, changed = normalize_transcripts(refs, hyps)
    if changed:
        logging.warning(
            "%s: %d reference utterance(s) are not normalised, e.g. %s '%s'; scored after the stage-2 normaliser "
            "like the hypotheses (punctuation, spaces and Latin do not count): normalise the reference with "
            "python -m vallr_pin.bin.prepare_text to score what you see", ref, len(changed), changed[0],
            raw_refs[changed[0]])
    score = score_corpus(refs, hyps, allow_empty_ref=allow_empty_ref, ref_name=str(ref), hyp_name=str(hyp))
    missing = score.missing_hyp
    if missing:
        logging.warning("%s: %d of %d reference utterances have no hypothesis (scored as all deletions), e.g. %s",
                        hyp, len(missing), len(refs), ", ".join(missing[:5]))
    if score.empty_ref:
        logging.warning("%s: %d utterance(s) with an empty reference scored with N=0 (--allow-empty-ref), e.g. %s",
                        ref, len(score.empty_ref), ", ".join(score.empty_ref[:5]))

    utts = list(refs)
    spk = resolve_utt2spk(ref, utt2spk, utts)
    write_trn(out_dir / "ref.trn", {u.utt: u.ref for u in score.utts}, spk, utts)
    write_trn(out_dir / "hyp.trn", {u.utt: u.hyp for u in score.utts}, spk, utts)
    with atomic_open(out_dir / "utt_errors.txt") as f:
        for u in score.utts:
            f.write(format_utt_errors(u))

    binary = None if sclite == "none" else find_sclite(None if sclite == "auto" else sclite)
    summary = dict(score.summary())
    if binary is None:
        if sclite == "auto":
            logging.warning("sclite not found (PATH, /usr/lib/sctk/bin/sclite): result.txt not written, counts "
                            "not cross-checked; install it with tools/ (apt-get install sctk)")
        (out_dir / "result.txt").unlink(missing_ok=True)
        summary["sclite"] = None
    else:
        result = run_sclite(out_dir / "ref.trn", out_dir / "hyp.trn", out_dir / "result.txt", sclite=binary)
        problems = list(compare_with_sclite(
            ((trn_id(u.utt, spk[u.utt]), u.correct, u.sub, u.dele, u.ins) for u in score.utts), result))
        totals_ours = (score.n_sent, score.n_ref, score.sub, score.dele, score.ins, score.n_sent_err)
        totals_sclite = (result.n_sent, result.n_ref, result.sub, result.dele, result.ins, result.n_sent_err)
        if totals_ours != totals_sclite:
            problems.insert(0, f"totals (sent, N, S, D, I, sent err): ours {totals_ours}, sclite {totals_sclite}")
        if problems:
            raise RuntimeError(
                f"our CER counts and sclite's ({out_dir / 'result.txt'}) disagree on {len(problems)} item(s); "
                "this is a bug in vallr_pin.scoring, please report it with the trn files. First: "
                + "; ".join(problems[:5])
            )
        summary["sclite"] = binary
    summary["ref"] = str(ref)
    summary["hyp"] = str(hyp)
    with atomic_open(out_dir / "summary.json") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
        f.write("\n")
    return score


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level, catch=(ValueError, OSError, RuntimeError)):
        score = score_files(args.ref, args.hyp, args.out_dir, args.utt2spk, args.sclite, args.allow_empty_ref)
    print(score.summary_line())
    logging.info("wrote %s", Path(args.out_dir) / "summary.json")


if __name__ == "__main__":
    main()

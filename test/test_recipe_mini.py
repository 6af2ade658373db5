"""The embedded default recipe, egs/mini_cnvsrc/vsr1, through all ten stages in a reduced configuration.

The recipe is copied into a temporary egs/ tree (test/mini_recipe.py, a session fixture of conftest.py) so the
test never touches a user's demo outputs. The corpus is 3+1+1 speakers x 4 utterances, training 2 epochs, LoRA
a few steps: it checks that the stages fit together and that re-running one stage reproduces its outputs
without touching earlier ones, not how well the model reads lips (that is `make demo` and RESULTS.md).
"""

import collections
import json
import os
import shutil
import subprocess
from pathlib import Path

from mini_recipe import ROOT, owner_stage, run_recipe, snapshot

from vallr_pin.bin.tune_fusion import load_guard
from vallr_pin.datadir import read_kv
from vallr_pin.llm.fusion import FusionWeights, ScoredNbest


def test_all_stages_write_results_md_with_every_system(recipe):
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    for test_set in ("dev", "test"):
        assert f"### {test_set}" in results
    for system in ("char-only (stage I)", "dual decoder (stage I)", "dual + zero-shot LLM", "dual + fine-tuned LLM"):
        rows = [ln for ln in results.splitlines() if ln.startswith(f"|{system}|")]
        assert len(rows) == 2, f"{system}: expected a row per test set in RESULTS.md"
        assert all("n/a" not in r for r in rows), rows
    stages = [int(ln.split()[1]) for ln in (recipe / "exp" / "stage_times.txt").read_text().splitlines()]
    assert stages == list(range(10))
    assert "time per stage" in results


def test_stage_outputs_fit_together(recipe):
    exp = recipe / "exp"
    # stage 4 kept the early/late checkpoints for stage 6, and stage 6 decoded the training set with each
    assert sorted(p.name for p in (exp / "vsr_dual" / "ckpt_keep").glob("*epoch.pth")) == ["1epoch.pth", "2epoch.pth"]
    pinyin_tokens = set((recipe / "data" / "token_list" / "pinyin" / "tokens.txt").read_text().split())
    train_utts = set()
    for ckpt in ("1epoch", "2epoch"):
        rows = [json.loads(ln) for ln in open(exp / "vsr_dual" / f"decode_vsr_{ckpt}" / "train_sub6" / "nbest.jsonl",
                                              encoding="utf-8")]
        assert len(rows) == 6 and all(r["ref"] for r in rows)
        assert sorted(collections.Counter(r["utt"].split("_")[0] for r in rows).values()) == [2, 2, 2]
        for r in rows:
            scores = [h["score"] for h in r["nbest"]]
            assert scores == sorted(scores, reverse=True)
            assert len({h["text"] for h in r["nbest"]}) == len(r["nbest"])
            assert set(r["pinyin"].split()) <= pinyin_tokens
        train_utts |= {r["utt"] for r in rows}
    # stage 7: ms-swift messages with the reference as the answer; stage 8: the paper's LoRA shape
    sample = json.loads((exp / "llm_data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant"]
    assert sample["utt"] in train_utts
    adapter = json.loads((exp / "llm_lora" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 32)
    # stage 9: every test utterance refined by both systems and scored by the same scorer as stage 5
    n_test = len((recipe / "dump" / "roi" / "test" / "text").read_text(encoding="utf-8").splitlines())
    for mode in ("finetuned", "zeroshot"):
        out = exp / "llm_lora" / f"refine_{mode}" / "test"
        assert len((out / "text").read_text(encoding="utf-8").splitlines()) == n_test
        assert json.loads((out / "score_cer" / "summary.json").read_text())["n_sent"] == n_test
        # rescore mode with llm_tune_fusion: the weights were tuned on dev only and picked every test text
        fusion = json.loads((out / "fusion.json").read_text())
        assert Path(fusion["tuned_on"]).parts[-2:] == (f"refine_{mode}", "dev")
        weights = FusionWeights(**fusion["weights"])
        texts = read_kv(out / "text")
        for line in (out / "raw.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            raw, text, reason = ScoredNbest.from_record(rec).pick(weights, load_guard(out))
            assert texts[rec["utt"]] == rec["text"] == text and (rec["raw"], rec["reason"]) == (raw, reason)


def test_every_stage_rerun_alone_reproduces_its_outputs_and_leaves_earlier_stages_alone(recipe):
    """`run.sh --stage N --stop-stage N` for N = 1..9, one after the other: no result file changes content, and
    no file an earlier stage wrote is even rewritten (same mtime). Stage 0 re-writes data/<set>/text as the
    corpus has it (stage 2 normalises it in place), so it is checked as `--stage 0` then `--stage 2`."""
    dirs = ("downloads", "data", "dump", "exp", "RESULTS.md")
    before = snapshot(recipe, *dirs)
    assert {owner_stage(k) for k in before} == set(range(10))
    for n in list(range(1, 10)) + [0]:
        prev = snapshot(recipe, *dirs)
        run_recipe(recipe, "--stage", str(n), "--stop-stage", str(n))
        if n == 0:
            run_recipe(recipe, "--stage", "2", "--stop-stage", "2")
        after = snapshot(recipe, *dirs)
        changed = sorted(k for k in before if before[k][0] != after.get(k, (None,))[0])
        assert not changed, f"re-running stage {n} changed: {changed[:10]}"
        touched = sorted(k for k in prev if owner_stage(k) < n and prev[k][1] != after[k][1])
        assert not touched, f"re-running stage {n} rewrote files of earlier stages: {touched[:10]}"
        if n == 0:  # nothing re-rendered, the tiny LLM not rebuilt (the corpus lists are re-written, same bytes)
            kept = [k for k in prev if k.endswith((".mp4", ".npy")) or "/tiny_qwen3/" in k]
            assert kept and all(prev[k][1] == after[k][1] for k in kept)


def test_stage2_refines_an_external_recognisers_nbest_with_context_gate_and_polishing(recipe):
    """Issue 19: stages 7-9 on another system's N-best lists (the char-only model stands in for it: no pinyin
    branch, so the prompt's pinyin is derived from its hypotheses), in both documented layouts, with the
    context-aware prompt, the dev-tuned confidence gate and two polishing rounds on. Runs last: it rewrites
    RESULTS.md and figures/ (its own exp_ext/ holds the rest)."""
    import sys

    from vallr_pin.llm.nbest import hypothesis_pinyin

    env = dict(os.environ, PATH=f"{ROOT / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}")
    char = recipe / "exp" / "vsr_char"
    dec = char / "decode_vsr_valid.acc_char.ave"
    ext = recipe / "ext"
    # training set: the external system decodes it itself (here: vsr_inference's whole layout, empty pinyin)
    subprocess.run([sys.executable, "-m", "vallr_pin.bin.vsr_inference", "--config", "conf/decode_vsr.yaml",
                    "--train_config", str(char / "config.yaml"), "--model_file", str(char / "valid.acc_char.ave.pth"),
                    "--data_path_and_name_and_type", "dump/roi/train_sub6/feats.scp,video,kaldi_ark",
                    "--key_file", "dump/roi/train_sub6/feats.scp", "--output_dir", str(ext / "train"),
                    "--pinyin_rescore_weight", "0", "--pinyin_search_weight", "0",  # a char-only model
                    "--beam_size", "4", "--nbest", "4", "--maxlenratio", "0.5",
                    # the 2-epoch CI model with the mini recipe's length bonus writes to the maximum length, and
                    # ms-swift drops every training sample that long: decode as a plain recogniser would
                    "--lm_weight", "0", "--penalty", "0"],
                   cwd=recipe, env=env, check=True, capture_output=True, timeout=600)
    for k in dec.glob("dev/*best_recog"):  # dev: ESPnet's {k}best_recog/ alone
        shutil.copytree(k, ext / "dev" / k.name)
    (ext / "test").mkdir()  # test: JSONL without pinyin or references
    with open(ext / "test" / "nbest.jsonl", "w", encoding="utf-8") as f:
        for line in open(dec / "test" / "nbest.jsonl", encoding="utf-8"):
            row = json.loads(line)
            f.write(json.dumps({"utt": row["utt"], "nbest": row["nbest"]}, ensure_ascii=False) + "\n")
    subprocess.run([sys.executable, "-m", "vallr_pin.bin.make_context", "--data-dir", "data/train", "data/dev",
                    "data/test"], cwd=recipe, env=env, check=True, capture_output=True, timeout=300)
    run_recipe(recipe, "--stage", "7", "--stop-stage", "9", "--external_nbest", "ext", "--expdir", "exp_ext",
               "--llm_context", "true", "--llm_gate", "true",
               "--llm_refine_opts", "--mode rescore --rescore-vsr-weight 1 --polish-rounds 2")
    exp = recipe / "exp_ext"
    for dset in ("train", "dev", "test"):
        rows = [json.loads(ln) for ln in open(exp / "nbest_external" / dset / "nbest.jsonl", encoding="utf-8")]
        assert rows and all(r["pinyin"] == hypothesis_pinyin(r["nbest"][0]["text"]) for r in rows)
        assert all(r["ref"] for r in rows)  # attached from data/<set>/text
    samples = [json.loads(ln) for ln in open(exp / "llm_data" / "train.jsonl", encoding="utf-8")]
    assert 0 < len(samples) <= 6 and {s["ckpt"] for s in samples} == {"external"}
    assert all(s["messages"][1]["content"].startswith("上文：") for s in samples)
    # Stage I of the external system is the char-only model's own 1-best: the same CER
    cer = {d: json.loads((d / "test" / "score_cer" / "summary.json").read_text())["cer"]
           for d in (dec, exp / "nbest_external")}
    assert cer[dec] == cer[exp / "nbest_external"]
    n_test = len(read_kv(recipe / "data" / "test" / "text"))
    for mode in ("finetuned", "zeroshot"):
        out = exp / "llm_lora" / f"refine_{mode}" / "test"
        assert len(read_kv(out / "text")) == n_test
        gate = json.loads((out / "gate.json").read_text())
        assert Path(gate["tuned_on"]).parts[-2:] == (f"refine_{mode}", "dev") and gate["n"] == n_test
        assert len(json.loads((out / "guard_stats.json").read_text())["polish"]["cer_per_round"]) == 3
        assert (recipe / "figures" / f"gate_curve_{mode}.png").is_file()
    results = (recipe / "RESULTS.md").read_text(encoding="utf-8")
    for system in ("external (stage I)", "external + zero-shot LLM", "external + fine-tuned LLM"):
        rows = [ln for ln in results.splitlines() if ln.startswith(f"|{system}|")]
        assert len(rows) == 2 and all("n/a" not in r for r in rows), (system, rows)

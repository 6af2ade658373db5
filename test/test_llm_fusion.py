"""LLM/VSR score fusion for rescore mode (vallr_pin.llm.fusion) and its dev-set tuning (vallr_pin.bin.tune_fusion)."""

import json

import pytest

from vallr_pin.bin import tune_fusion
from vallr_pin.llm.fusion import FusionWeights, ScoredNbest, choose, corpus_errors, tune


def test_choose_fuses_llm_vsr_and_length():
    cands = ["我们明天去北京", "我们明天去", "我们今天去北京"]
    llm = [-20.0, -12.0, -15.0]  # the LLM prefers the short candidate (fewer tokens to pay for)
    vsr = [-1.0, -6.0, -2.0]
    assert choose(cands, llm, vsr, FusionWeights()) == 1  # LLM alone
    assert choose(cands, llm, vsr, FusionWeights(llm_weight=0.0, vsr_weight=1.0)) == 0  # VSR alone
    # LLM + VSR: 0 -> -21, 1 -> -18, 2 -> -17
    assert choose(cands, llm, vsr, FusionWeights(1.0, 1.0)) == 2
    # a per-character bonus of 2 pays the 2 missing characters back: 0 -> -7, 1 -> -8, 2 -> -3
    assert choose(cands, llm, vsr, FusionWeights(1.0, 1.0, 2.0)) == 2
    assert choose(cands, llm, vsr, FusionWeights(0.1, 1.0, 0.0)) == 0
    assert choose([], [], [], FusionWeights()) is None
    with pytest.raises(ValueError, match="2 candidates but 1 LLM"):
        choose(["a", "b"], [0.0], [0.0, 0.0], FusionWeights())


def _nbest(utt, cands, llm, vsr):
    return ScoredNbest(utt, tuple(cands), tuple(llm), tuple(vsr), cands[0])


def test_pick_passes_the_choice_through_the_output_guard():
    u = _nbest("u", ["外面下雨了", "", "你好，世界"], [-5.0, 0.0, -4.0], [0.0, 0.0, 0.0])
    # the LLM alone prefers the empty candidate: the guard falls back to the 1-best, as in llm_refine
    assert u.pick(FusionWeights()) == ("", "外面下雨了", "empty")
    # the guard's normaliser drops punctuation, so the text is scored like the references
    assert _nbest("v", ["你好，世界", "你好"], [-1.0, -9.0], [0.0, 0.0]).pick(FusionWeights()) == (
        "你好，世界", "你好世界", None)


# The VSR 1-best drops characters and confuses look-alikes; the LLM fixes the look-alike, but per token it
# prefers short answers, so it keeps the deletions unless a length bonus pays for the missing characters.
DEV = [
    _nbest("u1", ["我们明天去", "我们明天去北京"], [-14.0, -16.0], [-1.0, -1.5]),
    _nbest("u2", ["他喜欢喝茶", "他喜欢喝绿茶"], [-12.0, -13.0], [-2.0, -2.2]),
    _nbest("u3", ["外面下语了", "外面下雨了"], [-15.0, -10.0], [-0.8, -1.0]),
]
REFS = {"u1": "我们明天去北京", "u2": "他喜欢喝绿茶", "u3": "外面下雨了"}


def test_tune_finds_the_weights_that_fix_the_deletions():
    # VSR alone (the 1-best): 2 + 1 deletions and the look-alike 语 for 雨
    assert corpus_errors(DEV, REFS, FusionWeights(0.0, 1.0)) == (4, 18)
    assert corpus_errors(DEV, REFS, FusionWeights(1.0, 1.0)) == (3, 18)  # LLM + VSR: still too short
    weights, grid = tune(DEV, REFS, llm_weights=(0.5, 1.0), length_bonuses=(0.0, 1.0, 2.0))
    assert corpus_errors(DEV, REFS, weights) == (0, 18)
    assert weights == FusionWeights(1.0, 1.0, 2.0)  # ties go to the larger LLM weight, then the smaller bonus
    assert len(grid) == 6 and min(g["cer"] for g in grid) == 0.0
    assert {g["cer"] for g in grid if g["length_bonus"] == 0.0} == {round(100 * 3 / 18, 2)}
    with pytest.raises(ValueError, match="no utterance of the N-best has a reference"):
        tune(DEV, {"other": "你好"})
    with pytest.raises(ValueError, match="empty grid"):
        tune(DEV, REFS, llm_weights=(), length_bonuses=(0.0,))


def _write_raw(d, nbests, text_from_first=True):
    d.mkdir(parents=True)
    with open(d / "raw.jsonl", "w", encoding="utf-8") as f:
        for u in nbests:
            f.write(json.dumps({"utt": u.utt, "raw": u.candidates[0], "text": u.candidates[0], "reason": None,
                                "onebest": u.onebest, "ref": REFS.get(u.utt), "candidates": list(u.candidates),
                                "llm_scores": list(u.llm_scores), "vsr_scores": list(u.vsr_scores)},
                               ensure_ascii=False) + "\n")
    (d / "guard_stats.json").write_text(json.dumps({"n_changed_from_1best": 0}), encoding="utf-8")
    (d / "text").write_text("".join(f"{u.utt} {u.onebest}\n" for u in nbests), encoding="utf-8")


def test_tune_fusion_tunes_on_dev_and_applies_to_test(tmp_path):
    dev, test = tmp_path / "dev", tmp_path / "test"
    _write_raw(dev, DEV)
    # test has the same kind of error; its own best weights would not matter: it is never looked at
    _write_raw(test, [_nbest("t1", ["你吃饭了", "你吃饭了吗"], [-9.0, -10.5], [-1.0, -1.1])])
    ref = tmp_path / "ref"
    ref.write_text("".join(f"{k} {v}\n" for k, v in REFS.items()), encoding="utf-8")
    out = tune_fusion.main(["--tune-dir", str(dev), "--ref", str(ref), "--apply-dir", str(dev), str(test),
                            "--llm-weights", "0.5", "1.0", "--length-bonuses", "0", "1", "2"])
    assert out["weights"] == {"llm_weight": 1.0, "vsr_weight": 1.0, "length_bonus": 2.0} and out["cer"] == 0.0
    assert (dev / "text").read_text(encoding="utf-8") == "u1 我们明天去北京\nu2 他喜欢喝绿茶\nu3 外面下雨了\n"
    assert (test / "text").read_text(encoding="utf-8") == "t1 你吃饭了吗\n"
    raw = [json.loads(x) for x in (test / "raw.jsonl").read_text(encoding="utf-8").splitlines()]
    assert raw[0]["text"] == raw[0]["raw"] == "你吃饭了吗" and raw[0]["llm_scores"] == [-9.0, -10.5]
    assert json.loads((test / "fusion.json").read_text())["tuned_on"] == str(dev)
    assert json.loads((test / "guard_stats.json").read_text())["n_changed_from_1best"] == 1
    assert json.loads((dev / "fusion_grid.json").read_text())["chosen"]["length_bonus"] == 2.0
    # re-running gives the same result (the scores are kept, only the picks are rewritten)
    tune_fusion.main(["--tune-dir", str(dev), "--ref", str(ref), "--apply-dir", str(test),
                      "--llm-weights", "0.5", "1.0", "--length-bonuses", "0", "1", "2"])
    assert (test / "text").read_text(encoding="utf-8") == "t1 你吃饭了吗\n"


def test_tune_fusion_refuses_generative_output(tmp_path):
    d = tmp_path / "gen"
    d.mkdir()
    (d / "raw.jsonl").write_text(json.dumps({"utt": "u1", "raw": "x", "text": "x", "onebest": "x"}) + "\n")
    ref = tmp_path / "ref"
    ref.write_text("u1 外面下雨了\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not written by llm_refine --mode rescore"):
        tune_fusion.main(["--tune-dir", str(d), "--ref", str(ref), "--apply-dir", str(d), "--log-level", "DEBUG"])
    with pytest.raises(FileNotFoundError, match="run vallr_pin.bin.llm_refine --mode rescore"):
        tune_fusion.main(["--tune-dir", str(tmp_path / "none"), "--ref", str(ref), "--apply-dir", str(d),
                          "--log-level", "DEBUG"])
    with pytest.raises(SystemExit) as e:  # without DEBUG: the same message as one line, exit 1
        tune_fusion.main(["--tune-dir", str(d), "--ref", str(ref), "--apply-dir", str(d)])
    assert e.value.code == 1

"""Prompt builder, output guard and stage-7 data builder (no LLM needed: fast)."""

import json

import pytest

from vallr_pin.bin import build_llm_data
from vallr_pin.llm.guard import OutputGuard
from vallr_pin.llm.prompt import build_messages, load_template

NBEST = ["今天天气很的", "今天天气很好", "今天田气很好"]
PINYIN = "jin tian tian qi hen hao"


# ---------------------------------------------------------------- prompt


def test_prompt_holds_task_pinyin_and_numbered_candidates():
    msgs = build_messages(PINYIN, NBEST, None)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "唇语" in user and "只输出纠正后的句子" in user
    assert PINYIN in user
    assert "1. 今天天气很的\n2. 今天天气很好\n3. 今天田气很好" in user
    train = build_messages(PINYIN, NBEST, "今天天气很好")
    assert train[:2] == msgs and train[2] == {"role": "assistant", "content": "今天天气很好"}


def test_prompt_max_candidates_and_english():
    user = build_messages(PINYIN, NBEST, None, lang="en", max_candidates=2)[1]["content"]
    assert "Mandarin" in user and "2. 今天天气很好" in user and "3." not in user


def test_prompt_template_file(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("拼音 {pinyin}\n{candidates}\n{\"json\": 1}\n", encoding="utf-8")
    user = build_messages("ni  hao", ["你好"], None, template=txt)[1]["content"]
    assert user == "拼音 ni hao\n1. 你好\n{\"json\": 1}"
    yml = tmp_path / "p.yaml"
    yml.write_text("system: S\nuser: '{pinyin}|{candidates}'\n", encoding="utf-8")
    assert build_messages("a", ["啊"], "啊", template=yml) == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "a|1. 啊"},
        {"role": "assistant", "content": "啊"}]
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholders", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt.*{pinyin}"):
        load_template(bad)


# ---------------------------------------------------------------- guard

GOOD = [
    ("<think>\n\n</think>\n\n今天天气很好", "今天天气很好"),
    ("<think>嗯，拼音是jin tian</think>今天天气很好", "今天天气很好"),
    ("修正后的句子：今天天气很好", "今天天气很好"),
    ("答案: “今天天气很好。”", "今天天气很好"),
    ("修正后的句子：\n今天天气很好\n解释：把“的”改成了“好”。", "今天天气很好"),
    ("Corrected sentence: 今天天气，很好！", "今天天气很好"),
    ("今天天气很好（把的改成好）", "今天天气很好"),
    ("  今天 天气 很好  ", "今天天气很好"),
    # the prompt's candidate numbering echoed back (issue 21: it became 一今天天气很好)
    ("1. 今天天气很好", "今天天气很好"),
    ("2.今天天气很好", "今天天气很好"),
    ("10. 今天天气很好", "今天天气很好"),
    ("1、今天天气很好", "今天天气很好"),
    ("修正后的句子：1. 今天天气很好", "今天天气很好"),
]
BAD = [
    ("", "empty"),
    ("<think>\n\n</think>\n\n", "empty"),
    ("<think>the budget ran out while thinking", "empty"),
    ("。。。！", "empty"),
    ("The weather is nice today.", "not_chinese"),
    ("jin tian tian qi hen hao", "not_chinese"),
    ("今天天气很好今天天气很好今天天气很好", "too_long"),
    ("今", "too_short"),
    ("他不喜欢吃苹果", "too_different"),  # fluent, right length, but unrelated to every candidate
]


@pytest.mark.parametrize("raw,expected", GOOD)
def test_guard_accepts_and_cleans(raw, expected):
    guard = OutputGuard()
    assert guard(raw, NBEST) == (expected, None)
    assert guard.counts == {"ok": 1}


def test_guard_reads_digits_like_the_reference_normaliser():
    assert OutputGuard()("今天有3个人。", ["今天有山个人", "今天有三个人"]) == ("今天有三个人", None)
    # a leading number that is not list numbering is still read
    assert OutputGuard()("3.5个人来了", ["三点五个人来了"]) == ("三点五个人来了", None)
    assert OutputGuard()("3个人来了", ["三个人来了"]) == ("三个人来了", None)


def test_guard_falls_back_to_1best_and_counts_reasons():
    guard = OutputGuard()
    for raw, reason in BAD:
        assert guard(raw, NBEST) == (NBEST[0], reason), raw
    stats = guard.stats()
    assert stats["n"] == len(BAD) and stats["ok"] == 0 and stats["fallback"] == len(BAD)
    assert stats["by_reason"]["empty"] == 4 and stats["by_reason"]["not_chinese"] == 2
    assert stats["by_reason"]["too_long"] == 1 and stats["by_reason"]["too_short"] == 1
    assert stats["by_reason"]["too_different"] == 1


def test_guard_ratio_bounds_configurable():
    long = "今天天气很好今天天"  # 9 chars vs 6: 1.5x
    assert OutputGuard(max_ratio=1.5)(long, NBEST)[1] is None
    assert OutputGuard(max_ratio=1.2)(long, NBEST)[1] == "too_long"
    assert OutputGuard()("好", [])[1] == "no_candidates"
    unrelated = "他不喜欢吃苹果"
    assert OutputGuard(max_edit_ratio=None)(unrelated, NBEST) == (unrelated, None)
    # a real correction (2 of 6 characters changed w.r.t. the 1-best) passes the default bound
    assert OutputGuard()("今天天汽很好", ["今天田汽很的"]) == ("今天天汽很好", None)


# ---------------------------------------------------------------- stage 7 data builder


def _write_nbest(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for utt, hyps, ref in rows:
            f.write(json.dumps({"utt": utt, "nbest": [{"text": h, "score": -float(i)} for i, h in enumerate(hyps)],
                                "pinyin": PINYIN, "ref": ref}, ensure_ascii=False) + "\n")


def test_build_llm_data_tags_dedups_and_reports(tmp_path):
    early, late, dev = tmp_path / "early.jsonl", tmp_path / "late.jsonl", tmp_path / "dev.jsonl"
    _write_nbest(early, [("s1-a", ["今天天气很的", "今天天气很好"], "今天天气很好"),
                         ("s1-b", ["我门走吧"], "我们走吧")])
    # late: s1-a already right; s1-b has the same N-best as early -> identical prompt, dropped
    _write_nbest(late, [("s1-a", ["今天天气很好", "今天天气很的"], "今天天气很好"),
                        ("s1-b", ["我门走吧"], "我们走吧")])
    _write_nbest(dev, [("s2-a", ["他来了"], None)])
    text = tmp_path / "text"
    text.write_text("s2-a 他来了\n", encoding="utf-8")
    out = tmp_path / "llm_data"
    stats = build_llm_data.main(["--nbest", f"early={early}", f"late={late}", "--dev-nbest", f"late={dev}",
                                 "--text", str(text), "--out-dir", str(out)])
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["utt"], r["ckpt"]) for r in rows] == [("s1-a", "early"), ("s1-b", "early"), ("s1-a", "late")]
    assert rows[0]["messages"] == build_messages(PINYIN, ["今天天气很的", "今天天气很好"], "今天天气很好")
    st = stats["train"]
    assert st["n_duplicate"] == 1 and st["n_conflict"] == 0 and st["n_out"] == 3
    assert st["share_1best_correct"] == pytest.approx(100 / 3, abs=0.01)
    assert st["per_ckpt"]["early"]["cer_1best"] == pytest.approx(100 * 2 / 10)
    assert st["per_ckpt"]["late"]["cer_1best"] == pytest.approx(100 * 1 / 10)
    dev_rows = [json.loads(line) for line in (out / "dev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert dev_rows[0]["messages"][-1]["content"] == "他来了"  # reference filled from --text
    assert json.loads((out / "stats.json").read_text())["train"]["n_out"] == 3


def test_build_llm_data_errors_name_file_and_utt(tmp_path):
    nb = tmp_path / "nb.jsonl"
    _write_nbest(nb, [("s1-x", ["你好"], None)])
    with pytest.raises(ValueError, match=r"nb\.jsonl.*s1-x.*--text"):
        build_llm_data.main(["--nbest", str(nb), "--out-dir", str(tmp_path / "o"), "--log-level", "DEBUG"])
    with pytest.raises(SystemExit) as e:  # without DEBUG: one line, exit 1
        build_llm_data.main(["--nbest", str(nb), "--out-dir", str(tmp_path / "o")])
    assert e.value.code == 1
    assert not (tmp_path / "o" / "train.jsonl").exists()


def test_build_llm_data_hash_split_keeps_utterance_on_one_side(tmp_path):
    early, late = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    rows = [(f"s{i:02d}-u", ["你好吗", "你号吗"], "你好吗") for i in range(40)]
    _write_nbest(early, rows)
    _write_nbest(late, [(u, ["你号吗", "你好吗"], r) for u, _, r in rows])
    build_llm_data.main(["--nbest", f"early={early}", f"late={late}", "--dev-fraction", "0.3",
                         "--out-dir", str(tmp_path / "d")])
    utts = {}
    for split in ("train", "dev"):
        for line in (tmp_path / "d" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            utts.setdefault(json.loads(line)["utt"], set()).add(split)
    assert all(len(s) == 1 for s in utts.values())
    n_dev = sum("dev" in s for s in utts.values())
    assert 0 < n_dev < 40

"""The scoring entry points on a tiny decode: score.py output files, error_analysis.py categories."""

import json

import pytest

from vallr_pin.bin import error_analysis as error_analysis_bin
from vallr_pin.bin import score as score_bin
from vallr_pin.datadir import write_kv
from vallr_pin.scoring.cer import score_corpus
from vallr_pin.scoring.error_analysis import (HOMOPHONE, OTHER, SAME_VISEME, analyse, pinyin_per_char,
                                              reading_errors, viseme_confusion)
from vallr_pin.scoring.sclite import find_sclite

SCLITE = find_sclite()

REF = {
    "spk1-spk1_a": "我是中国人",
    "spk1-spk1_b": "他来了",
    "spk2-spk2_c": "你好",
    "spk2-spk2_d": "爸爸去银行",
}
HYP = {
    "spk1-spk1_a": "我事中人",  # 是->事 homophone, 国 deleted
    "spk1-spk1_b": "她来了吗",  # 他->她 homophone, 吗 inserted
    "spk2-spk2_d": "妈爸去银行",  # 爸(ba)->妈(ma): same lip shape; spk2_c has no hypothesis
}


@pytest.fixture
def decode(tmp_path):
    data = tmp_path / "data" / "test"
    dec = tmp_path / "exp" / "vsr" / "decode_x" / "test"
    write_kv(data / "text", REF)
    write_kv(data / "utt2spk", {u: u.split("-")[0] for u in REF})
    write_kv(dec / "text", HYP)
    return data, dec


def test_score_writes_trn_summary_and_utt_errors(decode, capsys, caplog):
    data, dec = decode
    out = dec / "score_cer"
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    line = capsys.readouterr().out.strip()
    # N=15: S=3 (是/事, 他/她, 爸/妈), D=1+2 (国; 你好 missing), I=1 (吗)
    assert line.startswith("CER 46.67% [S=3 D=3 I=1 N=15] SER 100.00%")
    assert "spk2-spk2_c" in caplog.text and "no hypothesis" in caplog.text

    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert {k: summary[k] for k in ("sub", "del", "ins", "n_ref", "n_sent")} == {
        "sub": 3, "del": 3, "ins": 1, "n_ref": 15, "n_sent": 4}
    assert summary["cer"] == pytest.approx(46.6667, abs=1e-3)
    assert summary["ser"] == pytest.approx(100.0)
    assert summary["n_missing_hyp"] == 1

    # ESPnet trn form: characters, TAB, (spk-utt); the missing hypothesis is an empty line with its id.
    ref_trn = (out / "ref.trn").read_text("utf-8").splitlines()
    hyp_trn = (out / "hyp.trn").read_text("utf-8").splitlines()
    assert ref_trn[0] == "我 是 中 国 人\t(spk1-spk1-spk1_a)"
    assert hyp_trn[2] == "\t(spk2-spk2-spk2_c)"
    details = (out / "utt_errors.txt").read_text("utf-8")
    assert "spk1-spk1_a hyp  我 事 中 *** 人\n" in details
    assert "spk1-spk1_a #csid 3 1 1 0\n" in details
    if SCLITE:
        assert summary["sclite"] == SCLITE
        assert "Sum/Avg" in (out / "result.txt").read_text("utf-8")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_score_refuses_hypothesis_from_another_set_and_leaves_no_summary(decode):
    data, dec = decode
    out = dec / "score_cer"
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    assert (out / "summary.json").is_file()
    write_kv(dec / "text", {**HYP, "spk9-spk9_z": "多余"})
    with pytest.raises(SystemExit) as e:
        score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    assert e.value.code == 1
    # The earlier summary must not pass for the result of this failed run.
    assert not (out / "summary.json").exists()


def test_score_empty_reference_needs_the_flag(decode, capsys):
    data, dec = decode
    write_kv(data / "text", {**REF, "spk2-spk2_e": ""})
    args = ["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(dec / "score_cer")]
    with pytest.raises(SystemExit):
        score_bin.main(args)
    write_kv(data / "utt2spk", {u: u.split("-")[0] for u in [*REF, "spk2-spk2_e"]})
    score_bin.main(args + ["--allow-empty-ref"])
    assert "N=15" in capsys.readouterr().out


def test_score_without_sclite_still_writes_summary(decode):
    data, dec = decode
    out = dec / "score_cer"
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out), "--sclite", "none"])
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["sclite"] is None and summary["sub"] == 3
    assert not (out / "result.txt").exists()


def test_error_analysis_separates_homophones_from_other_substitutions():
    s = score_corpus(
        {"a": "他是你", "b": "爸爸", "c": "行走"},
        {"a": "她事我", "b": "妈爸", "c": "航走"},  # 行 is xing here (行走), 航 hang: not a homophone
    )
    a = analyse(s)
    assert a["substitution_categories"] == {HOMOPHONE: 2, SAME_VISEME: 1, OTHER: 2}
    by_pair = {(c["ref"], c["hyp"]): c for c in a["top_confusions"]}
    assert by_pair[("他", "她")]["category"] == HOMOPHONE
    assert by_pair[("是", "事")]["category"] == HOMOPHONE
    assert by_pair[("你", "我")]["category"] == OTHER
    assert by_pair[("爸", "妈")]["category"] == SAME_VISEME
    assert (by_pair[("行", "航")]["ref_pinyin"], by_pair[("行", "航")]["hyp_pinyin"]) == ("xing", "hang")
    # 7 reference characters, 5 substituted: 2 homophones read right; 爸->妈 is a look-alike syllable
    assert a["reading_error_rate"] == pytest.approx(100 * 3 / 7, abs=1e-3)
    assert a["viseme_error_rate"] == pytest.approx(100 * 2 / 7, abs=1e-3)


def test_reading_and_viseme_errors_count_insertions_deletions_and_unreadable_characters():
    assert reading_errors("爸爸去", "妈爸") == (2, 1)  # ba->ma looks alike; 去 deleted
    assert reading_errors("他a", "她b") == (1, 1)  # ta = ta; the non-Hanzi a/b stand for themselves
    assert reading_errors("你好", "你好吗") == (1, 1)


def test_pinyin_in_context_and_non_hanzi():
    assert pinyin_per_char("银行a行走") == ["yin", "hang", None, "xing", "zou"]


def test_error_analysis_bin_writes_reports(decode):
    data, dec = decode
    error_analysis_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--top-k", "5"])
    a = json.loads((dec / "score_cer" / "error_analysis.json").read_text("utf-8"))
    assert a["substitution_categories"] == {HOMOPHONE: 2, SAME_VISEME: 1, OTHER: 0}
    assert a["top_insertions"] == [{"char": "吗", "count": 1}]
    text = (dec / "score_cer" / "error_analysis.txt").read_text("utf-8")
    assert "homophone" in text and "他  -> 她" in text


def test_viseme_confusion_counts_aligned_pairs_by_initial_class():
    score = score_corpus({"a": "爸爸去", "b": "他来"}, {"a": "妈爸去A", "b": "来"})
    conf = viseme_confusion(score.utts)
    cell = {(r, c): n for r, row in zip(conf.rows, conf.counts) for c, n in zip(conf.cols, row) if n}
    # 爸->妈 and 爸 (b, m: bilabial), 去 (q: palatal), 他 deleted, 来 (l: alveolar); the inserted A has no reading
    assert cell == {("bilabial", "bilabial"): 2, ("palatal", "palatal"): 1, ("alveolar", "del"): 1,
                    ("alveolar", "alveolar"): 1}
    assert conf.unreadable == 1
    assert conf.row_normalised()[conf.rows.index("alveolar")][conf.cols.index("del")] == 0.5
    plain = viseme_confusion(score.utts, indels=False)
    assert len(plain.rows) == len(plain.cols) == 8 and plain.unreadable == 0


def test_error_analysis_bin_draws_the_viseme_confusion_figure(decode):
    data, dec = decode
    out = dec / "score_cer"
    error_analysis_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--no-plot"])
    assert (out / "error_analysis.txt").is_file() and not (out / "viseme_confusion.png").exists()
    error_analysis_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text")])
    png = (out / "viseme_confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    conf = json.loads((out / "error_analysis.json").read_text("utf-8"))["viseme_confusion"]
    assert conf["rows"][0] == "bilabial" and conf["cols"][-1] == "del"
    assert sum(map(sum, conf["counts"])) + conf["unreadable"] == 15 + 1  # every reference character + 吗


def test_score_normalises_the_reference_like_the_hypothesis(decode, capsys, caplog):
    """Issue 21: an unnormalised reference's punctuation counted as characters (15.4% CER for a perfect
    hypothesis)."""
    data, dec = decode
    write_kv(data / "text", {"spk1-spk1_a": "我是中国人，你呢？", "spk1-spk1_b": "他来了！"})
    write_kv(dec / "text", {"spk1-spk1_a": "我是中国人你呢", "spk1-spk1_b": "他来了"})
    out = dec / "score_cer"
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert (summary["cer"], summary["n_ref"]) == (0.0, 10)
    assert "2 reference utterance(s) are not normalised" in caplog.text
    # a hypothesis with punctuation or full-width digits is normalised the same way; <unk> is one error
    write_kv(dec / "text", {"spk1-spk1_a": "我是中国人，你<unk>？", "spk1-spk1_b": "他来了 ！"})
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert (summary["sub"], summary["del"], summary["ins"], summary["n_ref"]) == (1, 0, 0, 10)


def test_score_traditional_hypothesis_matches_the_simplified_reference(decode):
    """The scorer's normaliser converts traditional characters (an LLM may answer in them), like stage 2."""
    data, dec = decode
    write_kv(data / "text", {"spk2-spk2_d": "爸爸去银行"})
    write_kv(dec / "text", {"spk2-spk2_d": "爸爸去銀行"})
    out = dec / "score_cer"
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(out)])
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert (summary["cer"], summary["n_ref"]) == (0.0, 5)


def test_score_gbk_hypothesis_is_one_line_error(decode, capsys, caplog):
    data, dec = decode
    (dec / "text").write_bytes("spk1-spk1_a 我事中人\n".encode("gbk"))
    with pytest.raises(SystemExit) as e:
        score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(dec / "s")])
    assert e.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"{dec / 'text'}: line 1 is not UTF-8" in errors[0] and "iconv" in errors[0]
    (dec / "text").write_text("spk1-spk1_a 我事中人\n", encoding="utf-8")
    score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(dec / "s")])
    with pytest.raises(ValueError, match="not UTF-8"):  # --log-level DEBUG: the exception, with its traceback
        (dec / "text").write_bytes("spk1-spk1_a 我事中人\n".encode("gbk"))
        score_bin.main(["--ref", str(data / "text"), "--hyp", str(dec / "text"), "--out-dir", str(dec / "s"),
                        "--log-level", "DEBUG"])

"""Bootstrap over utterances: CER intervals, paired win rates, and the RESULTS.md columns and orderings built on
the utt_errors.txt that vallr_pin.bin.score writes."""

import re

import pytest

from vallr_pin.bin import score as score_bin
from vallr_pin.bin import show_results
from vallr_pin.datadir import write_kv
from vallr_pin.scoring.bootstrap import cer_interval, paired_win_rate
from vallr_pin.scoring.results_table import HOLDS, NOT_SIGNIFICANT, REVERSED, Ordering, paired_errors

# 200 utterances of 10 characters; system A gets 3 wrong in every utterance, B 1, so B is clearly better.
LENS = [10] * 200
ERRS_A = [3] * 100 + [2, 4] * 50
ERRS_B = [1] * 100 + [0, 2] * 50


def test_interval_contains_the_corpus_cer_and_is_deterministic():
    cer = 100.0 * sum(ERRS_A) / sum(LENS)
    low, high = cer_interval(ERRS_A, LENS, resamples=500, seed=3)
    assert low < cer < high
    assert high - low < 5.0  # 2000 characters: the CER is known to a few points
    assert cer_interval(ERRS_A, LENS, resamples=500, seed=3) == (low, high)
    assert cer_interval(ERRS_A, LENS, resamples=500, seed=4) != (low, high)
    # A wider interval for a lower coverage would be a bug in the percentiles.
    low90, high90 = cer_interval(ERRS_A, LENS, resamples=500, seed=3, alpha=0.1)
    assert low <= low90 < high90 <= high


def test_paired_win_rate_clear_winner_identical_and_equally_good_systems():
    assert paired_win_rate(ERRS_A, ERRS_B, LENS) == 1.0
    assert paired_win_rate(ERRS_B, ERRS_A, LENS) == 0.0
    # Identical systems tie in every resample: never strictly better, always no worse.
    assert paired_win_rate(ERRS_A, ERRS_A, LENS) == 0.0
    assert paired_win_rate(ERRS_A, ERRS_A, LENS, strict=False) == 1.0
    # Equally good, different utterances wrong: each wins about half the resamples.
    alt_a, alt_b = [1, 0] * 100, [0, 1] * 100
    assert paired_win_rate(alt_a, alt_b, LENS) == pytest.approx(0.5, abs=0.06)
    assert paired_win_rate(alt_a, alt_b, LENS, seed=1) == paired_win_rate(alt_a, alt_b, LENS, seed=1)
    with pytest.raises(ValueError, match="same utterances"):
        paired_win_rate(ERRS_A, ERRS_B[:-1], LENS)


def test_paired_errors_counts_an_utterance_one_system_lacks_as_deletions():
    a = {"u1": (1, 5), "u2": (0, 3)}
    b = {"u2": (2, 3), "u3": (1, 4)}
    assert paired_errors(a, b) == ([1, 0, 4], [5, 2, 1], [5, 3, 4])
    with pytest.raises(ValueError, match="'u2'.*different references"):
        paired_errors(a, {"u2": (0, 7)}, "a/utt_errors.txt", "b/utt_errors.txt")


def test_ordering_parse():
    assert Ordering.parse("dual + zero-shot LLM >= dual + fine-tuned LLM") == Ordering(
        "dual + zero-shot LLM", ">=", "dual + fine-tuned LLM")
    assert Ordering.parse("char-only (stage I) > dual decoder (stage I)").op == ">"
    with pytest.raises(ValueError, match="LABEL_A > LABEL_B"):
        Ordering.parse("char-only < dual")


REF = {f"s{k % 4}-u{k:02d}": "我们今天去学校上课" for k in range(40)}  # 40 x 9 characters


@pytest.fixture
def scored(tmp_path, monkeypatch):
    """score_cer dirs written by vallr_pin.bin.score: 'bad' gets 4 characters wrong per utterance, 'good' 1 in
    every other utterance, 'same' the same as 'good', 'old' scored but without utt_errors.txt."""
    monkeypatch.chdir(tmp_path)
    write_kv(tmp_path / "data" / "test" / "text", REF)
    hyps = {
        "bad": {u: "我们明天去学" for u in REF},       # 今->明, 校上课 deleted
        "good": {u: "我们今天去学校上可" if k % 2 else r for k, (u, r) in enumerate(REF.items())},  # 课->可
    }
    hyps["same"] = hyps["old"] = dict(hyps["good"])
    for name, hyp in hyps.items():
        write_kv(tmp_path / "exp" / name / "test" / "text", hyp)
        score_bin.main(["--ref", "data/test/text", "--hyp", f"exp/{name}/test/text",
                        "--out-dir", f"exp/{name}/test/score_cer", "--sclite", "none"])
    (tmp_path / "exp" / "old" / "test" / "score_cer" / "utt_errors.txt").unlink()
    return tmp_path


def test_show_results_interval_column_and_orderings(scored, capsys):
    show_results.main([
        "--out", "RESULTS.md", "--sets", "test",
        "--system", "bad=exp/bad/{set}/score_cer", "--system", "good=exp/good/{set}/score_cer",
        "--system", "same=exp/same/{set}/score_cer", "--system", "old=exp/old/{set}/score_cer",
        "--ordering", "bad > good", "--ordering", "good >= same", "--ordering", "good > same",
        "--ordering", "good > bad", "--ordering", "bad > old",
    ])
    md = (scored / "RESULTS.md").read_text("utf-8")
    assert md == capsys.readouterr().out
    assert "|system|CER (%)|95% CI|S|D|I|N|SER (%)|" in md
    low, high = map(float, re.search(r"\|good\|5\.56\|\[(\d+\.\d), (\d+\.\d)\]\|20\|0\|0\|360\|50\.00\|", md).groups())
    assert low < 5.56 < high
    assert "|bad|44.44|[44.4, 44.4]|" in md  # the same 4 errors in every utterance: no spread
    assert "|old|5.56|n/a|20|" in md
    table = md.split("### Orderings")[1]
    assert "|test|bad > good|44.44|5.56|1.000|1.000|" + HOLDS + "|" in table
    assert "|test|good >= same|5.56|5.56|0.000|1.000|" + HOLDS + "|" in table
    assert "|test|good > same|5.56|5.56|0.000|1.000|" + NOT_SIGNIFICANT + "|" in table
    assert "|test|good > bad|5.56|44.44|0.000|0.000|" + REVERSED + "|" in table
    assert "|test|bad > old|n/a (no exp/old/test/score_cer/utt_errors.txt)|" in table


def test_show_results_unknown_ordering_label_is_an_error(scored, caplog):
    with pytest.raises(SystemExit):
        show_results.main(["--out", "RESULTS.md", "--sets", "test", "--system", "good=exp/good/{set}/score_cer",
                           "--ordering", "bad > good"])
    assert "no --system labelled 'bad'" in caplog.text
    assert not (scored / "RESULTS.md").exists()

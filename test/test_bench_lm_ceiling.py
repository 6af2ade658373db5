"""test/bench/bench_lm_rescoring_ceiling.py's priors (the bench itself needs a finished recipe and is not run
here): the word lexicon prefers the candidate made of real words, and the report re-ranks by the prior."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
pytest.importorskip("jieba")

from bench_lm_rescoring_ceiling import Both, CharTrigram, WordLexicon, main  # noqa: E402


def test_word_lexicon_prefers_real_words_over_look_alike_characters():
    lex = WordLexicon()
    # a test sentence and two look-alike readings of it from the demo dual model's 10-best (放国 is its 1-best)
    assert lex.logprob("冬天要注意防火") > max(lex.logprob("冬天要注意放国"), lex.logprob("冬天要注意方活"))
    assert lex.logprob("") == 0.0
    tri = CharTrigram(["我们去学校"])
    both = Both(tri, lex)
    assert both.logprob("我们去学校") == pytest.approx(tri.logprob("我们去学校") + lex.logprob("我们去学校"))


def test_a_lexicon_weight_moves_the_choice_to_the_real_words(tmp_path, capsys):
    nbest = tmp_path / "nbest.jsonl"
    nbest.write_text(json.dumps({"utt": "u1", "ref": "冬天要注意防火", "nbest": [
        {"text": "冬天要注意放国", "score": -21.0}, {"text": "冬天要注意防火", "score": -22.0}]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    text = tmp_path / "lm.txt"
    text.write_text("我们去学校\n", encoding="utf-8")
    main(["--nbest", str(nbest), "--text", str(text), "--k", "2", "--prior", "lexicon",
          "--lm-weights", "0", "1", "--length-bonus", "0"])
    out = capsys.readouterr().out
    rows = {ln.split()[0]: float(ln.split()[1]) for ln in out.splitlines() if ln.split()[:1] in (["0.0"], ["1.0"])}
    assert "oracle@2 0.00 (the reference itself among them for 1)" in out
    assert rows["0.0"] > 0 and rows["1.0"] == 0.0, out

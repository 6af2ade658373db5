"""Toneless pinyin: polyphones in context, u-umlaut spelling, erhua, one syllable per character."""

import pytest

from vallr_pin.text.pinyin import hanzi_to_pinyin, pinyin_string, syllable_inventory


@pytest.mark.parametrize(
    "text, expected",
    [
        ("银行", "yin hang"),
        ("行走", "xing zou"),
        ("长大", "zhang da"),
        ("长度", "chang du"),
        ("我吃了饭", "wo chi le fan"),
        ("了解", "liao jie"),
        ("重要", "zhong yao"),
        ("重新", "chong xin"),
        ("他去银行取钱", "ta qu yin hang qu qian"),
    ],
)
def test_polyphones_resolved_in_context(text, expected):
    assert pinyin_string(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    # only n/l + u-umlaut are spelled with v; after j/q/x and y standard pinyin drops the dots
    [("女", "nv"), ("绿", "lv"), ("旅游", "lv you"), ("虐", "nve"), ("略", "lve"),
     ("去", "qu"), ("鱼", "yu"), ("居", "ju"), ("学", "xue")],
)
def test_u_umlaut_spelling(text, expected):
    assert pinyin_string(text) == expected


def test_erhua_keeps_er_as_own_syllable():
    assert hanzi_to_pinyin("一会儿") == ["yi", "hui", "er"]
    assert hanzi_to_pinyin("哪儿") == ["na", "er"]


def test_one_syllable_per_character_on_a_sentence():
    text = "我们今天下午在图书馆学习了三个小时"
    syl = hanzi_to_pinyin(text)
    assert len(syl) == len(text)
    assert all(s.isascii() and s.isalpha() and s.islower() for s in syl)


def test_rejects_unnormalised_text():
    with pytest.raises(ValueError, match="normalize_text"):
        hanzi_to_pinyin("你好，世界")


def test_hanzi_without_reading_is_unk():
    assert hanzi_to_pinyin("你兙好") == ["ni", "<unk>", "hao"]


def test_gb2312_inventory():
    inv = syllable_inventory()
    # pypinyin 0.55.0, every reading of the 6763 GB2312 Hanzi; the paper's training data uses 397
    assert 400 <= len(inv) <= 420
    assert len(syllable_inventory(heteronyms=False)) < len(inv)
    assert {"nv", "lv", "lve", "nve", "er", "zhuang"} <= set(inv)
    assert "ü" not in "".join(inv) and "nü" not in inv


def test_traditional_text_gets_its_phrase_reading_after_normalisation():
    """pypinyin's phrase dictionaries are simplified: 銀行 as such reads "yin xing" (issue 21)."""
    from vallr_pin.text.normalize import normalize_text

    assert pinyin_string("銀行") == "yin xing"  # the reported behaviour, without the conversion
    assert pinyin_string(normalize_text("銀行")) == "yin hang"
    assert pinyin_string(normalize_text("乾杯")) == "gan bei"

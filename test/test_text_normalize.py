"""Text normalisation: one sentence per rule, and the Hanzi-only guarantee."""

from collections import Counter

import pytest

from vallr_pin.text.normalize import is_hanzi, normalize_text, read_integer, read_sentences


def norm(s):
    counts = Counter()
    return normalize_text(s, counts), counts


def test_full_width_ascii_folded_before_digit_and_latin_rules():
    out, c = norm("我们在２０２４年买了ＡＢＣ牌的３．５公斤苹果")
    assert out == "我们在二零二四年买了牌的三点五公斤苹果"
    assert c["width_folded"] == 10 and c["latin_words"] == 1


def test_punctuation_cjk_and_ascii_removed():
    out, c = norm("你好，世界！「今天」天气（很）好……是吗?真的;《书》、——")
    assert out == "你好世界今天天气很好是吗真的书"
    assert c["punctuation"] > 10


@pytest.mark.parametrize(
    "raw, expected, rule",
    [
        ("2024年我毕业了", "二零二四年我毕业了", "digits_year"),
        ("1998 年的夏天", "一九九八年的夏天", "digits_year"),
        ("一共123个人", "一共一百二十三个人", "digits_number"),
        ("花了3000元", "花了三千元", "digits_number"),  # 4 digits without 年: a number, not a year
        ("他今年10岁", "他今年十岁", "digits_number"),
        ("一千零五是1005", "一千零五是一千零五", "digits_number"),
        ("共100010人", "共十万零一十人", "digits_number"),
        ("总计1,000,000元", "总计一百万元", "digits_number"),
        ("体温是3.5度", "体温是三点五度", "digits_decimal"),
        ("只有0.25米", "只有零点二五米", "digits_decimal"),
        ("增长了50%", "增长了百分之五十", "digits_percent"),
        ("下降１２．５％", "下降百分之十二点五", "digits_percent"),
        ("拨打13812345678", "拨打一三八一二三四五六七八", "digits_sequence"),
        ("特工007号", "特工零零七号", "digits_sequence"),
    ],
)
def test_digit_rules(raw, expected, rule):
    out, c = norm(raw)
    assert out == expected
    assert c[rule] >= 1


@pytest.mark.parametrize(
    "n, reading",
    [("0", "零"), ("10", "十"), ("15", "十五"), ("20", "二十"), ("110", "一百一十"), ("101", "一百零一"),
     ("200", "二百"), ("2000", "两千"), ("20000", "两万"), ("10001", "一万零一"), ("105000000", "一亿零五百万"),
     ("999999999", "九亿九千九百九十九万九千九百九十九")],
)
def test_integer_readings(n, reading):
    assert read_integer(n) == reading


def test_latin_words_dropped_and_counted():
    out, c = norm("我用iPhone拍了一张photo, don't worry")
    assert out == "我用拍了一张"
    assert c["latin_words"] == 4


def test_whitespace_of_all_kinds_removed():
    out, c = norm(" 你 好\t世\u3000界\n ")
    assert out == "你好世界"
    assert c["whitespace"] >= 5


def test_emoji_and_symbols_removed():
    out, c = norm("哈哈😀👍🏻❤️¥好")
    assert out == "哈哈好"
    assert c["other"] >= 4


def test_compat_forms_folded():
    assert norm("二〇二四年")[0] == "二零二四年"
    assert norm("⼀个")[0] == "一个"  # Kangxi radical U+2F00 -> 一


def test_all_punctuation_is_empty():
    out, c = norm("！？。，……")
    assert out == ""
    assert c["punctuation"] == 6


@pytest.mark.parametrize(
    "raw",
    ["2024年，我们的GDP增长了6.5%！", "ＨＥＬＬＯ　世界😀", "第3章：10.5节 & 1,200页", "あいう한국어中文"],
)
def test_output_is_hanzi_only_and_idempotent(raw):
    out = normalize_text(raw)
    assert out and all(is_hanzi(ch) for ch in out)
    assert normalize_text(out) == out


def test_traditional_converted_to_simplified_and_counted():
    """Issue 21: 銀 and 银 were distinct tokens (20% dev OOV on a traditional dev set)."""
    out, c = norm("我去銀行存錢。")
    assert out == "我去银行存钱"
    assert c["traditional_converted"] == 2
    assert norm("乾杯，乾坤")[0] == "干杯乾坤"  # phrase by phrase: 乾 is gan in 乾杯 but stays in 乾坤
    assert norm("\uf92d了")[0] == "来了"  # compatibility ideograph 來: folded by rule 1, then converted


def test_traditional_conversion_can_be_switched_off():
    counts = Counter()
    assert normalize_text("我去銀行存錢。", counts, traditional_to_simplified=False) == "我去銀行存錢"
    assert counts["traditional_converted"] == 0


@pytest.mark.parametrize("simplified", ["著名的后来人", "头发很干燥", "里面有一个面包", "我们去银行了解一下"])
def test_simplified_text_is_not_changed_by_the_conversion(simplified):
    out, c = norm(simplified)
    assert out == simplified
    assert "traditional_converted" not in c
    assert out == normalize_text(simplified, traditional_to_simplified=False)


def test_conversion_never_drops_a_character():
    # OpenCC maps some rare characters to simplified forms beyond extension A (鈇 -> U+2B4E7), which rule 9
    # would drop; they keep their traditional form instead
    assert norm("鈇")[0] == "鈇"
    assert norm("二噁英")[0] == "二噁英"  # OpenCC's phrase 二噁英 -> 二\U0002BAC7英


def test_read_sentences_kaldi_plain_or_told_per_line(tmp_path):
    # the reader of stage 7's --noise-text (kaldi True/False) and of the tiny LLM's --text (None: per line)
    f = tmp_path / "t.txt"
    f.write_bytes("utt1 我们去银行。\n\n今天 天气很好\nabc\n２０２４年\nu2 123\n".encode("utf-8"))
    assert read_sentences([f], kaldi=None) == ["我们去银行", "今天天气很好", "二零二四年", "一百二十三"]
    # plain: the utterance ids are text too (utt1 -> 一)
    assert read_sentences([f], kaldi=False) == ["一我们去银行", "今天天气很好", "二零二四年", "二一百二十三"]
    assert read_sentences([f, f], kaldi=True) == ["我们去银行", "天气很好", "一百二十三"] * 2

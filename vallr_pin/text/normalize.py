"""Transcript normalisation for Mandarin lip reading: any string -> CJK ideographs only.

A lip reader can only be scored on what was spoken, and the char and pinyin decoders share one unit per
character, so every transcript is reduced to Hanzi (U+4E00..U+9FFF and extension A U+3400..U+4DBF).
The rules, applied in this order (each one counted under the key in brackets):

1. Width folding (``width_folded``): full-width ASCII U+FF01..U+FF5E -> ASCII and the ideographic space
   U+3000 -> space, so ``２０２４`` and ``ＡＢＣ`` meet the digit and Latin rules below. The full-width comma
   U+FF0C is *not* folded: it is the ordinary Chinese comma and must not join ``100，200`` into one number.
   Characters whose NFKC form is a single ideograph (CJK compatibility ideographs, Kangxi radicals) are folded
   to it (``compat_folded``). NFKC is not applied to whole strings: it would also turn ``²`` and ``①`` into
   digits and ``㎡`` into Latin, which are better dropped than misread. ``〇`` (U+3007) -> ``零``
   (``zero_folded``), since it is read "ling" but lies outside the ideograph block.
2. Traditional -> simplified (``traditional_converted``, on by default): OpenCC's ``t2s`` conversion
   (the ``opencc`` package, Apache-2.0), so a traditional transcript meets the same tokens as a simplified one
   (銀行 -> 银行, not a distinct 銀 that is out of vocabulary) and gets its phrase's pinyin (银行 -> yin hang;
   pypinyin's phrase dictionaries are simplified, so 銀行 would read "yin xing"). OpenCC converts phrase by
   phrase (乾杯 -> 干杯, 乾坤 stays), and 髮/發 both become 发: the distinction is lost, as in every
   simplified corpus. It runs after rule 1 so a compatibility ideograph is converted as its unified form. A
   simplified result outside the ideograph ranges above (about 800 rare characters, e.g. 鈇 -> U+2B4E7) keeps
   its traditional form rather than being dropped by rule 9. Switch it off with
   ``traditional_to_simplified=False`` (``prepare_text --traditional-to-simplified false``) for a corpus
   whose token lists must stay traditional; simplified text is never changed by it.
3. Thousands separators: ``1,000,000`` -> ``1000000`` (only ASCII commas between groups of exactly 3 digits).
4. Percent (``digits_percent``): ``50%`` -> 百分之五十, ``12.5%`` -> 百分之十二点五.
5. Year (``digits_year``): a run of exactly 4 digits followed by 年 is read digit by digit:
   ``2024年`` -> 二零二四年. Without 年 a 4-digit run is an ordinary number (``3000元`` -> 三千元).
6. Decimal (``digits_decimal``): integer part as a number, fraction digit by digit: ``3.5`` -> 三点五,
   ``0.25`` -> 零点二五.
7. Integers: a run with a leading zero (``007``) or more than 9 digits (phone numbers, ids) is read digit by
   digit (``digits_sequence``), 0 as 零; any other run is read as a number (``digits_number``): ``123`` ->
   一百二十三, ``10`` -> 十, ``1005`` -> 一千零五, ``100010`` -> 十万零一十. 2 is 二 except as the leading digit
   before 千/万/亿, where Mandarin says 两 (``2000`` -> 两千, ``20000`` -> 两万, ``200`` -> 二百).
8. Latin (``latin_words``): a run of Latin letters (with inner apostrophes) is dropped and counted as one word;
   a sentence like ``我用iPhone`` becomes ``我用``. The words are not spelled out: the spoken form of an
   English word is unknown and a made-up Hanzi reading would teach the model a wrong lip shape.
9. Everything else that is not an ideograph is dropped: whitespace (``whitespace``), punctuation of any
   script, Unicode category P* (``punctuation``), and the rest (``other``: symbols, emoji and their joiners,
   kana, Hangul, unread digits of other scripts).

Counts are per character for rules 1, 2 and 9 and per match for rules 4 to 8. An empty result (a transcript
that was only punctuation, Latin or emoji) is returned as ``""``; the caller decides what to do with it
(``vallr_pin.bin.prepare_text`` lists it in ``empty_text`` and leaves it out of ``text``).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from typing import List, Optional, Sequence, Union

PathLike = Union[str, os.PathLike]

_DIGITS = "零一二三四五六七八九"
# Largest section units; a number with more than 9 digits is read digit by digit (rule 6), so 亿 is the top.
_SECTION_UNITS = ["", "万", "亿"]
_MAX_NUMBER_DIGITS = 9


def is_hanzi(ch: str) -> bool:
    """True for CJK Unified Ideographs (U+4E00..U+9FFF) and extension A (U+3400..U+4DBF)."""
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF


def read_digits(digits: str) -> str:
    """Digit by digit: ``"2024"`` -> ``"二零二四"``."""
    return "".join(_DIGITS[int(d)] for d in digits)


def _read_section(n: int) -> str:
    """0 < n < 10000 -> reading with 千百十 and single 零 for inner zero runs (``1005`` -> 一千零五)."""
    out = []
    zero_pending = False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = (n // unit_value) % 10
        if d == 0:
            if out:
                zero_pending = True
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(_DIGITS[d] + unit)
    return "".join(out)


def read_integer(digits: str) -> str:
    """Read a digit string (at most 9 digits after stripping leading zeros) as a Mandarin number.

    ``"0"`` -> 零, ``"10"`` -> 十, ``"110"`` -> 一百一十, ``"100010"`` -> 十万零一十, ``"2000"`` -> 两千."""
    n = int(digits)
    if n == 0:
        return "零"
    if len(str(n)) > _MAX_NUMBER_DIGITS:
        raise ValueError(f"read_integer: {digits!r} has more than {_MAX_NUMBER_DIGITS} digits; read it digit by digit")
    sections = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    out = []
    need_zero = False
    for idx in range(len(sections) - 1, -1, -1):
        sec = sections[idx]
        if sec == 0:
            need_zero = bool(out)
            continue
        # a lower section below 1000 after a higher one is read with 零: 十万零一十, 一亿零五万.
        if out and (need_zero or sec < 1000):
            out.append("零")
        out.append(_read_section(sec) + _SECTION_UNITS[idx])
        need_zero = False
    text = "".join(out)
    if text.startswith("一十"):  # 10..19 (and 十万...) are said without the leading 一
        text = text[1:]
    if text.startswith("二千") or text.startswith("二万") or text.startswith("二亿"):
        text = "两" + text[1:]
    return text


def read_decimal(integer: str, fraction: str) -> str:
    """``("3", "5")`` -> 三点五; the fraction is read digit by digit (``0.25`` -> 零点二五)."""
    return read_integer(integer) + "点" + read_digits(fraction)


def _fold_char(ch: str, counts: Counter) -> str:
    o = ord(ch)
    if 0xFF01 <= o <= 0xFF5E and o != 0xFF0C:
        counts["width_folded"] += 1
        return chr(o - 0xFEE0)
    if o == 0x3000:
        counts["width_folded"] += 1
        return " "
    if o == 0x3007:
        counts["zero_folded"] += 1
        return "零"
    if o < 0x80 or is_hanzi(ch):
        return ch
    nfkc = unicodedata.normalize("NFKC", ch)
    if nfkc != ch and len(nfkc) == 1 and is_hanzi(nfkc):
        counts["compat_folded"] += 1
        return nfkc
    return ch


# OpenCC's converter loads its dictionaries when created (~10 ms): create it once per process, on first use,
# so that importing this module (every scoring and LLM entry point does) costs nothing.
_T2S_CONVERTER = None


def _t2s():
    global _T2S_CONVERTER
    if _T2S_CONVERTER is None:
        import opencc

        _T2S_CONVERTER = opencc.OpenCC("t2s")
    return _T2S_CONVERTER


def convert_traditional(text: str, counts: Optional[Counter] = None) -> str:
    """OpenCC ``t2s`` (rule 2 of the module docstring): ``"我去銀行"`` -> ``"我去银行"``.

    A character whose conversion is not an ideograph of ``is_hanzi`` keeps its original form, so the conversion
    never makes the normaliser drop a character. ``counts["traditional_converted"]`` is incremented per
    character changed."""
    converted = _t2s().convert(text)
    if len(converted) != len(text):  # no OpenCC 1.4.2 t2s entry changes a length; if one did, go char by char
        pieces = [_t2s().convert(ch) for ch in text]
        converted = "".join(p if len(p) == 1 else ch for p, ch in zip(pieces, text))
    out = [new if new == old or is_hanzi(new) else old for old, new in zip(text, converted)]
    changed = sum(new != old for old, new in zip(text, out))
    if counts is not None and changed:
        counts["traditional_converted"] += changed
    return "".join(out)


_THOUSANDS = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])")
# One pass over all numeric forms, longest first, so a produced reading is never re-read.
_NUMBER = re.compile(
    r"(?P<percent>[0-9]+(?:\.[0-9]+)?)[ \t]*%"
    r"|(?P<year>(?<![0-9])[0-9]{4})(?=[ \t]*年)"
    r"|(?P<dec_int>[0-9]+)\.(?P<dec_frac>[0-9]+)"
    r"|(?P<int>[0-9]+)"
)
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:['\u2019][A-Za-z\u00C0-\u024F]+)*")


def _read_integer_run(digits: str, counts: Counter) -> str:
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > _MAX_NUMBER_DIGITS:
        counts["digits_sequence"] += 1
        return read_digits(digits)
    counts["digits_number"] += 1
    return read_integer(digits)


def _number_to_hanzi(m: re.Match, counts: Counter) -> str:
    if m.group("percent") is not None:
        counts["digits_percent"] += 1
        value = m.group("percent")
        if "." in value:
            integer, fraction = value.split(".", 1)
            return "百分之" + read_decimal(integer, fraction)
        too_long = len(value.lstrip("0")) > _MAX_NUMBER_DIGITS
        return "百分之" + (read_digits(value) if too_long else read_integer(value))
    if m.group("year") is not None:
        counts["digits_year"] += 1
        return read_digits(m.group("year"))
    if m.group("dec_int") is not None:
        counts["digits_decimal"] += 1
        integer = m.group("dec_int")
        if len(integer.lstrip("0")) > _MAX_NUMBER_DIGITS:
            return read_digits(integer) + "点" + read_digits(m.group("dec_frac"))
        return read_decimal(integer, m.group("dec_frac"))
    return _read_integer_run(m.group("int"), counts)


def normalize_text(text: str, counts: Optional[Counter] = None, *, traditional_to_simplified: bool = True) -> str:
    """Normalise one transcript to Hanzi only (rules in the module docstring).

    Args:
        text: raw transcript, any Unicode.
        counts: if given, incremented per rule (keys listed in the module docstring) so a caller can report
            how much each rule changed a corpus.
        traditional_to_simplified: rule 2, OpenCC's traditional -> simplified conversion (default on); False
            keeps traditional characters as they are.
    Returns:
        The ideographs only, no spaces; ``""`` if nothing is left.
    """
    if counts is None:
        counts = Counter()
    s = "".join(_fold_char(ch, counts) for ch in text)
    if traditional_to_simplified:
        s = convert_traditional(s, counts)
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    s = _NUMBER.sub(lambda m: _number_to_hanzi(m, counts), s)

    def _drop_latin(m: re.Match) -> str:
        counts["latin_words"] += 1
        return ""

    s = _LATIN.sub(_drop_latin, s)
    out = []
    for ch in s:
        if is_hanzi(ch):
            out.append(ch)
        elif ch.isspace() or unicodedata.category(ch).startswith("Z"):
            counts["whitespace"] += 1
        elif unicodedata.category(ch).startswith("P"):
            counts["punctuation"] += 1
        else:
            counts["other"] += 1
    return "".join(out)


def read_sentences(paths: Sequence[PathLike], kaldi: Optional[bool] = None) -> List[str]:
    """The normalised Hanzi sentences (``normalize_text``) of text files, one a line, in order; lines that
    normalise to nothing are dropped.

    ``kaldi``: True for ``<utt> <text>`` lines (the first field is dropped), False for one sentence a line (the
    whole line is the sentence), None to tell per line: a line with two or more fields whose first field holds
    no Hanzi is ``<utt> <text>``. A line that is not UTF-8 is an error naming the file and line
    (``vallr_pin.datadir.iter_kv``); a missing file is a FileNotFoundError."""
    from vallr_pin.datadir import iter_kv

    out = []
    for path in paths:
        for first, rest in iter_kv(path):  # the line split at its first whitespace
            is_kaldi = kaldi if kaldi is not None else bool(rest) and not any(is_hanzi(c) for c in first)
            line = rest if is_kaldi else f"{first} {rest}"
            try:
                sentence = normalize_text(line)
            except ValueError as e:
                raise ValueError(f"{path}: line '{line[:40]}': {e}") from e
            if sentence:
                out.append(sentence)
    return out

"""Error-noise augmentation of the LLM instruction data (issue 19, item 5): synthetic N-best lists made from
extra text with the errors measured on the recogniser's own N-best (vallr_pin/llm/noise.py, build_llm_data
--noise-text).

The "recogniser" here is a hand-written corruption process over real Mandarin sentences (the hsk-sentences-audio
package the mini recipe speaks), unlike the generator's own model: errors clustered in 60 % of the sentences,
substitutions mostly homophones, beam variants that change one position of the 1-best and sometimes repair it,
a pinyin line that is sometimes the 1-best's reading. The checks: the measurement is right on lists with known
errors; lists made from other sentences measure the same within sampling noise; substitutes are homophones /
same-viseme characters when the measured errors are; no dev/test sentence nor near copy becomes a sample; the
rows load and encode with ms-swift; the same seed gives the same data.
"""

import functools
import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vallr_pin.bin import build_llm_data  # noqa: E402
from vallr_pin.bin.render_corpus import load_hsk_sentences  # noqa: E402
from vallr_pin.llm.constrained import reading_index  # noqa: E402
from vallr_pin.llm.nbest import NbestEntry, hypothesis_pinyin  # noqa: E402
from vallr_pin.llm.noise import NoiseMaker, _align, _readings, measure  # noqa: E402
from vallr_pin.scoring.error_analysis import HOMOPHONE, SAME_VISEME, classify_substitution, viseme_key  # noqa: E402
from vallr_pin.text.held_out import HeldOutSentences  # noqa: E402
from vallr_pin.text.normalize import normalize_text  # noqa: E402


@pytest.fixture(scope="module")
def sentences():
    sents = [normalize_text(s) for s in load_hsk_sentences(None)]
    sents = [s for s in dict.fromkeys(sents) if 4 <= len(s) <= 18]
    random.Random(5).shuffle(sents)
    return sents


@functools.lru_cache(maxsize=None)
def pools(ch):
    """(homophones, same-viseme characters) of ``ch`` by their own default readings."""
    by_syl, by_vis = reading_index()
    r = hypothesis_pinyin(ch)
    if r not in by_syl:
        return (), ()
    key = viseme_key(r)
    homophones = tuple(sorted(c for c in by_syl[r] - {ch} if hypothesis_pinyin(c) == r))
    look_alike = tuple(sorted(c for c in by_vis.get(key, ()) if hypothesis_pinyin(c) != r
                              and hypothesis_pinyin(c) in by_syl and viseme_key(hypothesis_pinyin(c)) == key))
    return homophones, look_alike


def confusable(rng, ch, kinds=(HOMOPHONE, SAME_VISEME)):
    """A homophone (70 %) or same-viseme character of ``ch`` (the hand-made recogniser's substitutions)."""
    kind = HOMOPHONE if (HOMOPHONE in kinds and (len(kinds) == 1 or rng.random() < 0.7)) else SAME_VISEME
    pool = pools(ch)[0 if kind == HOMOPHONE else 1]
    return rng.choice(pool) if pool else None


def hand_nbest(sents, seed=1, kinds=(HOMOPHONE, SAME_VISEME), p_del=0.05, p_ins=0.03, prefix="spk1_"):
    """N-best lists of a hand-made recogniser (module docstring)."""
    rng = random.Random(seed)
    out = []
    for n, s in enumerate(sents):
        bad = rng.random() < 0.6
        one = []
        for c in s:
            x = rng.random()
            sub = confusable(rng, c, kinds) if bad and x < 0.2 else None
            if sub:
                one.append(sub)
            elif bad and 0.2 <= x < 0.2 + p_del:
                continue
            else:
                one.append(c)
            if bad and rng.random() < p_ins:
                one.append("了")
        texts = ["".join(one)]
        for _ in range(rng.choice([1, 2, 3, 4])):
            t = list(texts[0])
            j = rng.randrange(len(t))
            if j < len(s) and t[j] != s[j] and rng.random() < 0.5:
                t[j] = s[j]  # a repair
            else:
                t[j] = confusable(rng, t[j], kinds) or t[j]
            if "".join(t) not in texts:
                texts.append("".join(t))
        py = [p if rng.random() > 0.1 else rng.choice(["ba", "ma", "shi", "zhi", "de"])
              for p in hypothesis_pinyin(s).split()]
        if rng.random() < 0.3:
            py = hypothesis_pinyin(texts[0]).split()
        out.append(NbestEntry(f"{prefix}{n:05d}", texts, [-float(k) for k in range(len(texts))], " ".join(py), s))
    return out


def synthetic(profile, records, sents, vocab, seed=0, rounds=2):
    maker = NoiseMaker(profile, records, sents + vocab, seed=seed)
    maker.calibrate(sents, rounds=rounds)
    return maker, [maker.entry(f"noise-{n}", s) for n, s in enumerate(sents)]


def test_measure_counts_known_errors():
    entries = [
        # 1-best: 天->田 (homophone tian), 天 deleted, 吗 inserted; rank 2 repairs 田 and substitutes 很->恨
        NbestEntry("u1", ["今田气很好吗", "今天气恨好吗"], [0, -1], "jin tian tian qi hen ma", "今天天气很好"),
        # 1-best right; rank 2: 爸->妈 (same viseme: bilabial + a); pinyin is the 1-best's reading (right)
        NbestEntry("u2", ["爸爸来了", "妈爸来了"], [0, -1], "ba ba lai le", "爸爸来了"),
    ]
    profile, records = measure(entries)
    r1 = profile["vs_reference"][0]
    assert profile["ref_chars"] == 10 and profile["list_sizes"] == {"2": 2}
    assert (r1["sub"], r1["del"], r1["ins"], r1["exact"]) == (0.1, 0.1, 0.1, 0.5)
    assert r1["sub_categories"] == {"homophone": 1.0, "same_viseme": 0.0, "other": 0.0}
    v2 = profile["vs_onebest"][0]
    # u1: 2 substitutions of 6 1-best characters (one on the wrong 田, repaired), u2: 1 of 4 (not on an error)
    assert v2["rank"] == 2 and v2["sub"] == 0.3 and v2["sub_on_error"] == 0.5 and v2["repair"] == 1.0
    assert v2["sub_categories"]["same_viseme"] == 0.5  # 爸->妈; 很->恨 is a homophone
    assert v2["sub_categories"]["homophone"] == 0.5
    py = profile["pinyin"]
    # u1: hao -> ma (other); u2 right. Its pinyin is its 1-best's reading, but right: not "from the 1-best"
    assert (py["sub"], py["exact"], py["from_onebest"]) == (0.1, 0.5, 0.0)
    assert records[0].counts == [(6, 1, 1, 1), (6, 2, 0, 0)] and records[1].counts == [(4, 0, 0, 0), (4, 1, 0, 0)]


def test_synthetic_lists_reproduce_the_measured_errors(sentences):
    real = hand_nbest(sentences[:1500])
    profile, records = measure(real)
    # the hand-made recogniser is what the measurement sees (~0.6 x 0.2 substitutions, 0.6 x 0.05 deletions)
    assert 0.09 < profile["vs_reference"][0]["sub"] < 0.15 and 0.02 < profile["vs_reference"][0]["del"] < 0.04
    other = sentences[1500:]
    maker, synth = synthetic(profile, records, other, [t for e in real for t in e.texts])
    got, _ = measure(synth)
    assert got["n_lists"] == len(other) > 2500

    def close(a, b, abs_tol, what):
        assert abs(a - b) <= abs_tol, f"{what}: measured {a}, synthetic {b}"

    n_real = sum(profile["list_sizes"].values())
    for k, c in profile["list_sizes"].items():
        close(c / n_real, got["list_sizes"].get(k, 0) / got["n_lists"], 0.03, f"share of lists with {k}")
    for key, tol in (("sub", 0.012), ("del", 0.006), ("ins", 0.005), ("exact", 0.04)):
        close(profile["vs_reference"][0][key], got["vs_reference"][0][key], tol, f"1-best {key}")
    for rank in (1, 2):  # vs_reference ranks 2, 3: emergent, from the 1-best and the beam variants
        close(profile["vs_reference"][rank]["cer"], got["vs_reference"][rank]["cer"], 0.03, f"rank {rank + 1} CER")
        close(profile["vs_reference"][rank]["exact"], got["vs_reference"][rank]["exact"], 0.03,
              f"rank {rank + 1} is the reference")
    # shares of ~1,300 (real) and ~2,400 (synthetic) substitutions, the drawing shares calibrated on 2,000 lists:
    # ~0.02 sampling noise; uncalibrated, the homophone share comes out ~0.09 low (NoiseMaker.calibrate)
    for cat in ("homophone", "same_viseme", "other"):
        close(profile["vs_reference"][0]["sub_categories"][cat], got["vs_reference"][0]["sub_categories"][cat],
              0.06, f"1-best {cat} share")
    for rank in (0, 1):  # vs_onebest ranks 2 and 3 (the others have few lists)
        want, have = profile["vs_onebest"][rank], got["vs_onebest"][rank]
        # sub_on_error and repair rest on a few hundred substitutions of each set: ~0.03 sampling noise each
        for key, tol in (("sub", 0.015), ("sub_on_error", 0.06), ("repair", 0.1)):
            close(want[key], have[key], tol, f"rank {rank + 2} vs 1-best {key}")
        close(want["sub_categories"]["homophone"], have["sub_categories"]["homophone"], 0.07,
              f"rank {rank + 2} homophone share")
    for key, tol in (("sub", 0.01), ("del", 0.004), ("exact", 0.04), ("from_onebest", 0.04)):
        close(profile["pinyin"][key], got["pinyin"][key], tol, f"pinyin {key}")


@pytest.mark.parametrize("kind", [HOMOPHONE, SAME_VISEME])
def test_substitutes_are_homophones_or_same_viseme_characters(sentences, kind):
    real = hand_nbest(sentences[:600], kinds=(kind,), p_del=0.0, p_ins=0.0)
    profile, records = measure(real)
    assert profile["vs_reference"][0]["sub_categories"][kind] > 0.9
    _, synth = synthetic(profile, records, sentences[600:1800], [t for e in real for t in e.texts], rounds=0)
    pairs = [(list(e.ref), list(e.texts[0])) for e in synth]
    cats = []
    for (ref, hyp), ops in zip(pairs, _align(pairs)):
        ref_py, hyp_py = _readings("".join(ref)), _readings("".join(hyp))
        cats += [classify_substitution(ref_py[a], hyp_py[b]) for op, a, b in ops if op == "substitute"]
    assert len(cats) > 300
    share = sum(c == kind for c in cats) / len(cats)
    assert share > 0.9 and share >= profile["vs_reference"][0]["sub_categories"][kind] - 0.02, (kind, share)


def test_held_out_sentences_and_near_copies():
    held = HeldOutSentences(["他开车的速度太快了", "你好"], min_overlap=4)
    assert held.leaks("他开车的速度太快了") and held.leaks("你好")
    assert held.leaks("他开车的速度太快了吗")        # contains a held-out sentence of >= 4 Hanzi
    assert held.leaks("开车的速度")                  # contained in one
    assert not held.leaks("你好吗") and not held.leaks("开车")  # shorter than 4 Hanzi: only equality counts
    assert not held.leaks("我们明天去北京")


@pytest.fixture(scope="module")
def data(sentences, tmp_path_factory):
    """build_llm_data with --noise-text over hand-made N-best lists; the text also holds dev/test sentences and
    near copies of them, which must not become samples."""
    d = tmp_path_factory.mktemp("noise")
    train, dev, test = sentences[:400], sentences[400:440], sentences[440:480]

    def write_nbest(path, entries):
        path.write_text("".join(json.dumps({"utt": e.utt, "pinyin": e.pinyin, "ref": e.ref, "nbest": [
            {"text": t, "score": s} for t, s in zip(e.texts, e.scores)]}, ensure_ascii=False) + "\n"
            for e in entries), encoding="utf-8")

    write_nbest(d / "train.jsonl", hand_nbest(train))
    write_nbest(d / "dev.jsonl", hand_nbest(dev, seed=2, prefix="spk9_"))
    (d / "test_text").write_text("".join(f"spk8_{n:03d} {s}\n" for n, s in enumerate(test)), encoding="utf-8")
    leaks = dev[:10] + test[:10] + [s + "吗" for s in test[10:20]] + [s[1:] for s in dev[10:20] if len(s) > 5]
    lm = sentences[480:1800] + leaks
    (d / "lm_text.txt").write_text("\n".join(lm) + "\n", encoding="utf-8")

    def build(out, *extra):
        return build_llm_data.main(["--nbest", f"late={d / 'train.jsonl'}", "--dev-nbest", f"late={d / 'dev.jsonl'}",
                                    "--out-dir", str(d / out), "--noise-text", str(d / "lm_text.txt"),
                                    "--noise-exclude", str(d / "test_text"), *extra])

    stats = build("a", "--noise-ratio", "1.5")
    return {"dir": d, "stats": stats, "build": build, "held": dev + test, "leaks": leaks, "train": train}


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_no_dev_or_test_sentence_becomes_a_sample(data):
    rows = _rows(data["dir"] / "a" / "train.jsonl")
    noise = [r for r in rows if r["ckpt"] == "noise"]
    real = [r for r in rows if r["ckpt"] != "noise"]
    stats = data["stats"]["noise"]
    assert len(real) == data["stats"]["train"]["n_out"] and len(noise) == stats["n_rows"]
    assert abs(len(noise) - 1.5 * len(real)) <= stats["n_same_as_real"] + stats["n_duplicate"] + 1
    held = HeldOutSentences(data["held"], min_overlap=4)
    answers = [r["messages"][-1]["content"] for r in noise]
    assert not any(held.leaks(a) for a in answers)
    # every planted leak was caught (near copies included), and only the sentences of the measured lengths kept
    assert stats["sentences"]["held_out"] >= len(data["leaks"]) - 2
    lo, hi = stats["sentences"]["length_range"]
    assert all(lo <= len(a) <= hi for a in answers)
    # the candidates of a synthetic prompt are the noise, the answer the clean sentence; not every one is wrong
    wrong = [r for r in noise if r["onebest"] != r["messages"][-1]["content"]]
    assert 0.3 < len(wrong) / len(noise) < 0.7
    assert "1. " + noise[0]["onebest"] in noise[0]["messages"][1]["content"]
    assert stats["measured"]["n_lists"] == 400
    assert stats["synthetic"]["n_lists"] == len(noise) + stats["n_same_as_real"] + stats["n_duplicate"]


def test_rows_are_valid_ms_swift_data(data, tmp_path):
    pytest.importorskip("swift")
    from swift import get_processor, get_template, load_dataset

    from vallr_pin.bin.make_tiny_llm import make_tiny_llm

    path = data["dir"] / "a" / "train.jsonl"
    rows = _rows(path)
    text = tmp_path / "text"
    text.write_text("\n".join(data["train"][:50]) + "\n", encoding="utf-8")
    make_tiny_llm([str(text)], str(tmp_path / "tiny"), vocab_size=600, hidden=32, layers=1, heads=2, kv_heads=1,
                  max_pos=1024, steps=0, max_phrases=50, seed=0)
    train, _ = load_dataset([str(path)])
    assert len(train) == len(rows)
    proc = get_processor(str(tmp_path / "tiny"), model_type="qwen3")
    tmpl = get_template(proc, template_type="qwen3_nothinking")
    tmpl.set_mode("train")
    for sample, row in zip(train, rows):
        if row["ckpt"] != "noise":
            continue
        enc = tmpl.encode(sample)
        answer = proc.decode([t for t in enc["labels"] if t != -100])
        assert answer.strip() == row["messages"][-1]["content"] + "<|im_end|>"


def test_same_seed_same_data_other_seed_other_data(data):
    data["build"]("b", "--noise-ratio", "1.5")
    data["build"]("c", "--noise-ratio", "1.5", "--noise-seed", "7")
    a, b, c = (open(data["dir"] / x / "train.jsonl", encoding="utf-8").read() for x in "abc")
    assert a == b and a != c


def test_noise_text_with_no_usable_sentence_is_one_clear_error(data, tmp_path, caplog):
    bad = tmp_path / "held.txt"
    bad.write_text("\n".join(data["held"][:20]) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        build_llm_data.main(["--nbest", f"late={data['dir'] / 'train.jsonl'}", "--dev-nbest",
                             f"late={data['dir'] / 'dev.jsonl'}", "--out-dir", str(tmp_path / "o"),
                             "--noise-text", str(bad), "--noise-exclude", str(data["dir"] / "test_text")])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no sentence left for synthetic samples" in errors[0] and "held_out" in errors[0]


@pytest.mark.parametrize("ratio", ["0", "0.0001"])
def test_a_noise_ratio_that_makes_no_sample_is_one_clear_error(data, ratio, caplog):
    """0, or a ratio that rounds to no synthetic row, used to end in an IndexError traceback."""
    with pytest.raises(SystemExit):
        data["build"](f"zero_{ratio}", "--noise-ratio", ratio)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"--noise-ratio {ratio}" in errors[0]

"""prepare_text end to end on a tiny data dir: outputs, ESPnet token order, empty utterances, idempotence."""

from pathlib import Path

from vallr_pin.bin.prepare_text import main
from vallr_pin.datadir import read_kv, write_data_dir, write_kv
from vallr_pin.text.token_list import read_token_list

TRAIN = {
    "spk1-spk1_0001": "我们去银行，好吗？",
    "spk1-spk1_0002": "！！！……",
    "spk1-spk1_0003": "2024年增长了50%",
    "spk2-spk2_0001": "他一会儿就来 OK",
    "spk2-spk2_0002": "",
    "spk2-spk2_0003": "女孩去旅游了",
}
DEV = {"spk3-spk3_0001": "我们去旅游吧", "spk3-spk3_0002": "😀😀"}


def make_dir(d: Path, text):
    utt2spk = {u: u.split("-")[0] for u in text}
    write_data_dir(d, {u: f"/v/{u}.mp4" for u in text}, text, utt2spk)


def run(tmp_path):
    main(["--data-dirs", str(tmp_path / "train"), str(tmp_path / "dev"),
          "--train-dir", str(tmp_path / "train"), "--token-list-dir", str(tmp_path / "token_list")])


def snapshot(tmp_path):
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


def test_prepare_text_end_to_end(tmp_path):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    orig_bytes = (tmp_path / "train" / "text").read_bytes()
    run(tmp_path)

    train = tmp_path / "train"
    assert (train / "text.orig").read_bytes() == orig_bytes
    text = read_kv(train / "text")
    assert text == {
        "spk1-spk1_0001": "我们去银行好吗",
        "spk1-spk1_0003": "二零二四年增长了百分之五十",
        "spk2-spk2_0001": "他一会儿就来",
        "spk2-spk2_0003": "女孩去旅游了",
    }
    assert read_kv(train / "empty_text") == {
        "spk1-spk1_0002": "no_hanzi_after_normalization",
        "spk2-spk2_0002": "empty_original",
    }
    pinyin = read_kv(train / "text_pinyin")
    assert set(pinyin) == set(text)
    assert pinyin["spk1-spk1_0001"] == "wo men qu yin hang hao ma"
    assert pinyin["spk2-spk2_0003"] == "nv hai qu lv you le"
    for utt in text:
        assert len(pinyin[utt].split()) == len(text[utt])
    assert read_kv(tmp_path / "dev" / "empty_text") == {"spk3-spk3_0002": "no_hanzi_after_normalization"}

    # ESPnet order: <blank>, <unk>, by descending count with code-point ties, <sos/eos> last
    chars = read_token_list(tmp_path / "token_list" / "char" / "tokens.txt")
    assert chars[:2] == ["<blank>", "<unk>"] and chars[-1] == "<sos/eos>"
    body = chars[2:-1]
    counts = {c: "".join(text.values()).count(c) for c in body}
    assert sorted(body, key=lambda c: (-counts[c], c)) == body
    assert body[:3] == ["了", "二", "去"]  # each seen twice: ties ordered by code point (U+4E86 < U+4E8C < U+53BB)
    assert set(body) == set("".join(text.values()))
    syl = read_token_list(tmp_path / "token_list" / "pinyin" / "tokens.txt")
    assert syl[:2] == ["<blank>", "<unk>"] and syl[-1] == "<sos/eos>"
    assert set(syl[2:-1]) == {s for p in pinyin.values() for s in p.split()}
    assert syl[2:5] == ["er", "le", "qu"]  # er x3 (二 twice, 儿), le x2, qu x2


def test_prepare_text_rerun_is_identical(tmp_path):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    run(tmp_path)
    first = snapshot(tmp_path)
    run(tmp_path)
    assert snapshot(tmp_path) == first


def test_rewritten_text_replaces_stale_orig(tmp_path):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    run(tmp_path)
    # stage 0 re-run writes a new raw text: it must win over the old text.orig
    make_dir(tmp_path / "train", {"spk9-spk9_0001": "新的句子，3个"})
    run(tmp_path)
    assert read_kv(tmp_path / "train" / "text") == {"spk9-spk9_0001": "新的句子三个"}
    assert read_kv(tmp_path / "train" / "text.orig") == {"spk9-spk9_0001": "新的句子，3个"}


def test_rerun_keeps_fix_data_dir_filtering(tmp_path):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    run(tmp_path)
    # utils/fix_data_dir.sh dropped an utterance (e.g. its ROI failed): a re-run must not bring it back
    text = read_kv(tmp_path / "train" / "text")
    del text["spk1-spk1_0003"]

    write_kv(tmp_path / "train" / "text", text)
    empty_before = (tmp_path / "train" / "empty_text").read_bytes()
    run(tmp_path)
    assert read_kv(tmp_path / "train" / "text") == text
    assert "spk1-spk1_0003" not in read_kv(tmp_path / "train" / "text_pinyin")
    assert (tmp_path / "train" / "empty_text").read_bytes() == empty_before


def test_hand_corrected_text_takes_effect_and_survives_reruns(tmp_path):
    """A transcript fixed by hand in data/<set>/text after stage 2 (issue 21: it used to be silently put back
    from text.orig on the next run)."""
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    run(tmp_path)
    text = read_kv(tmp_path / "train" / "text")
    assert text["spk2-spk2_0003"] == "女孩去旅游了"
    text["spk2-spk2_0003"] = "男孩去旅游了"  # the user's correction, already normalised
    text["spk1-spk1_0001"] = "我们去银行，好吧？"  # ... and one typed with punctuation
    write_kv(tmp_path / "train" / "text", text)
    run(tmp_path)
    fixed = read_kv(tmp_path / "train" / "text")
    assert fixed["spk2-spk2_0003"] == "男孩去旅游了"
    assert fixed["spk1-spk1_0001"] == "我们去银行好吧"
    assert read_kv(tmp_path / "train" / "text_pinyin")["spk2-spk2_0003"] == "nan hai qu lv you le"
    assert read_kv(tmp_path / "train" / "text.orig")["spk2-spk2_0003"] == "男孩去旅游了"
    # untouched lines still come from text.orig, the empty utterances are still listed
    assert fixed["spk1-spk1_0003"] == "二零二四年增长了百分之五十"
    assert set(read_kv(tmp_path / "train" / "empty_text")) == {"spk1-spk1_0002", "spk2-spk2_0002"}
    first = snapshot(tmp_path)
    run(tmp_path)  # the correction is now the original: a further re-run changes nothing
    assert snapshot(tmp_path) == first


def _expect_one_line_error(capsys, caplog, argv_runner, *needles):
    import pytest

    caplog.clear()
    with pytest.raises(SystemExit) as e:
        argv_runner()
    assert e.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in capsys.readouterr().err


def test_gbk_transcript_is_one_line_error_then_works_after_iconv(tmp_path, capsys, caplog):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    text = tmp_path / "dev" / "text"
    utf8 = text.read_bytes()
    text.write_bytes(utf8.decode("utf-8").encode("gbk", errors="ignore"))
    _expect_one_line_error(capsys, caplog, lambda: run(tmp_path), f"{text}: line 1 is not UTF-8", "iconv -f GB")
    assert not (tmp_path / "dev" / "text.orig").exists()  # nothing stale left to crash the next run
    assert not (tmp_path / "train" / "text.orig").exists()  # no data dir half-processed either
    text.write_bytes(utf8)  # the user converts it
    run(tmp_path)
    assert read_kv(tmp_path / "dev" / "text") == {"spk3-spk3_0001": "我们去旅游吧"}


def test_stale_gbk_text_orig_is_replaced_by_converted_text(tmp_path):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    (tmp_path / "dev" / "text.orig").write_bytes("spk3-spk3_0001 我们去旅游吧\n".encode("gbk"))
    run(tmp_path)
    assert read_kv(tmp_path / "dev" / "text.orig") == DEV


def test_utf8_bom_is_dropped_with_a_warning(tmp_path, caplog):
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", DEV)
    text = tmp_path / "dev" / "text"
    text.write_bytes(b"\xef\xbb\xbf" + text.read_bytes())
    run(tmp_path)
    assert "byte-order mark" in caplog.text
    assert list(read_kv(tmp_path / "dev" / "text")) == ["spk3-spk3_0001"]
    assert not (tmp_path / "dev" / "text.orig").read_bytes().startswith(b"\xef\xbb\xbf")


TRAD_DEV = {"spk3-spk3_0001": "我們去銀行，好嗎？", "spk3-spk3_0002": "女孩去旅遊了"}


def test_traditional_dev_set_meets_the_simplified_token_list(tmp_path, caplog):
    """Issue 21: a traditional dev set had 20% char OOV against a simplified training set."""
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", TRAD_DEV)
    caplog.set_level("INFO")
    run(tmp_path)
    assert read_kv(tmp_path / "dev" / "text")["spk3-spk3_0001"] == "我们去银行好吗"
    assert read_kv(tmp_path / "dev" / "text_pinyin")["spk3-spk3_0001"] == "wo men qu yin hang hao ma"
    assert read_kv(tmp_path / "dev" / "text.orig") == TRAD_DEV
    dev_line = [m for m in caplog.messages if m.startswith(f"{tmp_path / 'dev'}: 2 utterances")]
    assert len(dev_line) == 1 and "traditional_converted=4" in dev_line[0]
    assert any("chars 0.00%" in m for m in caplog.messages if "OOV" in m)


def test_traditional_kept_with_the_switch_off(tmp_path):
    make_dir(tmp_path / "train", TRAD_DEV)
    make_dir(tmp_path / "dev", DEV)
    main(["--data-dirs", str(tmp_path / "train"), "--train-dir", str(tmp_path / "train"),
          "--token-list-dir", str(tmp_path / "token_list"), "--traditional-to-simplified", "false"])
    assert read_kv(tmp_path / "train" / "text")["spk3-spk3_0001"] == "我們去銀行好嗎"
    chars = read_token_list(tmp_path / "token_list" / "char" / "tokens.txt")
    assert "銀" in chars and "银" not in chars


def test_data_dir_prepared_before_the_conversion_picks_it_up_on_the_next_run(tmp_path, caplog):
    """A data dir written by stage 2 without the conversion (the old normaliser = the switch off) is converted
    by the next stage-2 run: its lines match text.sha1, so they are ours and normalised again from text.orig."""
    make_dir(tmp_path / "train", TRAIN)
    make_dir(tmp_path / "dev", TRAD_DEV)
    main(["--data-dirs", str(tmp_path / "train"), str(tmp_path / "dev"), "--train-dir", str(tmp_path / "train"),
          "--token-list-dir", str(tmp_path / "token_list"), "--traditional-to-simplified", "false"])
    assert read_kv(tmp_path / "dev" / "text")["spk3-spk3_0001"] == "我們去銀行好嗎"
    caplog.set_level("INFO")
    run(tmp_path)
    assert read_kv(tmp_path / "dev" / "text")["spk3-spk3_0001"] == "我们去银行好吗"
    assert read_kv(tmp_path / "dev" / "text_pinyin")["spk3-spk3_0001"] == "wo men qu yin hang hao ma"
    assert read_kv(tmp_path / "dev" / "text.orig") == TRAD_DEV  # not mistaken for a hand correction
    assert not any("changed since stage 2" in m or "rewritten" in m for m in caplog.messages)

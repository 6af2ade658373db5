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

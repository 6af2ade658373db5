"""The viseme renderer behind egs/mini_cnvsrc: ambiguity where lips are ambiguous, distinct shapes elsewhere,
videos that decode back, faces that mediapipe FaceMesh finds, and a corpus builder with disjoint splits."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from vallr_pin.synth.render import render_text, write_landmarks, write_mp4
from vallr_pin.synth.speakers import sample_speaker
from vallr_pin.synth.visemes import INITIAL_CLASSES, text_to_syllables

SIZE = 160


def _render(text, spk_index=1, seed=0, key="u"):
    return render_text(text, sample_speaker(seed, spk_index), seed=seed, key=key, size=SIZE)


def _mouth_box(r):
    lm = r.landmarks
    x0 = int(lm[:, 3, 0].min()) - 6
    x1 = int(lm[:, 4, 0].max()) + 6
    yc = int(lm[:, 3:5, 1].mean())
    return slice(max(0, yc - 20), yc + 25), slice(max(0, x0), x1)


def test_same_viseme_class_renders_identical_frames():
    # b/p/m share one lip target; timing, pose, lighting and noise come from the same seed
    ba, pa, ma = (_render(c) for c in "爸怕妈")
    assert [s.initial for s in ba.units + pa.units + ma.units] == ["b", "p", "m"]
    np.testing.assert_array_equal(ba.frames, pa.frames)
    np.testing.assert_array_equal(ba.frames, ma.frames)
    # so do whole sentences made of same-class syllables: 大怕 (d+a, p+a) vs 拿妈 (n+a, m+a)
    np.testing.assert_array_equal(_render("大怕").frames, _render("拿妈").frames)


@pytest.mark.parametrize("other", ["大", "发", "家", "杀", "擦", "哈"])
def test_different_viseme_classes_differ_in_the_mouth_only(other):
    ba, ot = _render("爸"), _render(other)
    assert ba.frames.shape == ot.frames.shape  # same timing: one syllable each, same seed
    ys, xs = _mouth_box(ba)
    diff = np.abs(ba.frames.astype(int) - ot.frames.astype(int))
    assert diff[:, ys, xs].max() > 40, f"爸 and {other} look the same"
    outside = diff.copy()
    outside[:, ys, xs] = 0
    assert outside.max() <= 40  # only the mouth changes (blur/warp spill a little past the box)


def test_vowels_differ():
    frames = {c: _render(c).frames for c in "啊哦一乌鱼"}
    keys = list(frames)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(frames[a].astype(int) - frames[b].astype(int)).max() > 40, (a, b)


def test_tones_are_invisible():
    ref = _render("妈")
    for c in "麻马骂":
        np.testing.assert_array_equal(ref.frames, _render(c).frames)
    np.testing.assert_array_equal(_render("买卖").frames, _render("埋迈").frames)


def test_initial_classes_and_pauses():
    cls = {s.char: s.initial_class for s in text_to_syllables("知吃诗日资次四鸡七西")}
    assert {cls[c] for c in "知吃诗日"} == {"retroflex"}
    assert {cls[c] for c in "资次四"} == {"dental"}
    assert {cls[c] for c in "鸡七西"} == {"palatal"}
    assert sum(len(v) for v in INITIAL_CLASSES.values()) == 22  # 21 initials + zero
    units = text_to_syllables("你好，世界！")
    assert [u is None for u in units] == [False, False, True, False, False]
    with pytest.raises(ValueError, match="no viseme rule"):
        text_to_syllables("我有3个")


def test_speakers_differ_and_are_deterministic():
    a1, a2, b = _render("你好", 1), _render("你好", 1), _render("你好", 2)
    np.testing.assert_array_equal(a1.frames, a2.frames)
    assert a1.frames.shape[1:] != b.frames.shape[1:] or np.abs(
        a1.frames[:5].astype(int) - b.frames[:5].astype(int)).mean() > 10


def test_mp4_roundtrips_through_decord(tmp_path):
    decord = pytest.importorskip("decord")
    r = _render("我们一起去吃饭吧")
    path = tmp_path / "u.mp4"
    write_mp4(path, r.frames)
    write_landmarks(tmp_path / "u.landmarks.npy", r.landmarks)
    vr = decord.VideoReader(str(path))
    assert len(vr) == len(r.frames) == r.timing.num_frames
    assert abs(vr.get_avg_fps() - 25.0) < 1e-3
    got = vr.get_batch(list(range(len(vr)))).asnumpy()[..., ::-1]  # RGB -> BGR
    assert got.shape == r.frames.shape
    assert np.abs(got.astype(int) - r.frames.astype(int)).mean() < 8  # lossy codec, same pictures
    lm = np.load(tmp_path / "u.landmarks.npy")
    assert lm.shape == (len(r.frames), 5, 2) and lm.dtype == np.float32
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_facemesh_finds_rendered_faces_and_agrees_with_known_landmarks():
    try:
        import cv2
        import mediapipe as mp
    except Exception as e:  # noqa: BLE001 (mediapipe missing or broken: nothing to check against)
        pytest.skip(f"mediapipe unavailable: {e}")
    found = total = 0
    corner_err, nose_err = [], []
    for k in range(4):
        r = _render("今天天气很好我们去公园", spk_index=10 + k, seed=3, key=f"fm{k}")
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as fm:
            for i in range(0, len(r.frames), 3):
                res = fm.process(cv2.cvtColor(r.frames[i], cv2.COLOR_BGR2RGB))
                total += 1
                if not res.multi_face_landmarks:
                    continue
                found += 1
                lm = res.multi_face_landmarks[0].landmark
                pt = lambda j: np.array([lm[j].x * SIZE, lm[j].y * SIZE])  # noqa: E731
                # 61 = image-left mouth corner (subject's right), 291 = image-right; 1 = nose tip
                corner_err += [np.linalg.norm(pt(61) - r.landmarks[i, 3]),
                               np.linalg.norm(pt(291) - r.landmarks[i, 4])]
                nose_err.append(np.linalg.norm(pt(1) - r.landmarks[i, 2]))
    assert found / total >= 0.9, f"FaceMesh found {found}/{total} rendered faces"
    assert np.median(corner_err) < 4.0, np.percentile(corner_err, [50, 90])
    assert np.percentile(corner_err, 90) < 7.0, np.percentile(corner_err, [50, 90])
    assert np.median(nose_err) < 5.0


def test_render_corpus_splits_are_disjoint_and_rerun_is_idempotent(tmp_path):
    from vallr_pin.bin.render_corpus import main

    sents = tmp_path / "s.txt"
    sents.write_text("\n".join(["你好", "我们去吃饭", "今天天气很好", "他是老师", "我喜欢学习中文", "妈妈在家",
                                "这本书很好看", "明天见", "请坐", "谢谢你", "我不知道", "她很高兴",
                                "我有3个", "你好"]) + "\n", encoding="utf-8")
    out = tmp_path / "corpus"
    argv = ["--out", str(out), "--sentences-file", str(sents), "--num-train-speakers", "2", "--num-dev-speakers",
            "1", "--num-test-speakers", "1", "--utts-per-speaker", "2", "--seed", "5", "--no-progress"]
    main(argv)
    rows = {}
    for split in ("train", "dev", "test"):
        with open(out / f"{split}.csv", encoding="utf-8") as f:
            rows[split] = list(csv.DictReader(f))
    assert [len(rows[s]) for s in ("train", "dev", "test")] == [4, 2, 2]
    spk = {s: {r["spk"] for r in rows[s]} for s in rows}
    text = {s: {(out / r["text"]).read_text(encoding="utf-8").strip() for r in rows[s]} for s in rows}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not spk[a] & spk[b], (a, b)
        assert not text[a] & text[b], (a, b)
    assert "我有3个" not in set().union(*text.values())  # digits have no viseme rule: filtered out
    for r in rows["train"]:
        assert r["uttid"].startswith(r["spk"] + "_")
        lm = np.load(out / r["landmarks"])
        assert lm.ndim == 3 and lm.shape[1:] == (5, 2)
        pose = np.load(out / r["pose"])  # the frame targets: one pose per frame of the video
        assert pose.dtype == np.float32 and pose.shape == (len(lm), 7)
        # the character alignment (splice augmentation): every Hanzi spoken, in order, where the labels say
        align, labels = np.load(out / r["align"]), np.load(out / r["visemes"])
        n_chars = len((out / r["text"]).read_text(encoding="utf-8").strip())
        assert align.dtype == np.int64 and len(align) == len(lm)
        assert np.array_equal(align >= 0, labels > 0)
        spoken = align[align >= 0]
        assert np.all(np.diff(spoken) >= 0) and sorted(set(spoken.tolist())) == list(range(n_chars))
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    main(argv)  # everything complete: nothing re-rendered
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes
    # deterministic and independent of the number of workers
    out2 = tmp_path / "corpus2"
    main([a if a != str(out) else str(out2) for a in argv] + ["--nj", "2"])
    for r in rows["test"]:
        np.testing.assert_array_equal(np.load(out / r["landmarks"]), np.load(out2 / r["landmarks"]))


def test_lm_text_never_holds_a_corpus_sentence_or_a_near_copy(tmp_path):
    from vallr_pin.bin.render_corpus import lm_text_sentences, main

    held = ["他开车的速度太快了。", "明天见"]
    cands = ["你好！", "他开车的速度太快了", "他开车的速度太快了吗？", "速度太快了", "明天见", "明天见面吧",
             "我们去吃饭", "你好"]
    # equal Hanzi, a superset and a 5-Hanzi part of a held-out sentence are dropped; a short held-out
    # sentence (明天见, 3 Hanzi) only drops its exact copy; duplicates are kept once; punctuation is removed
    assert lm_text_sentences(cands, held) == ["你好", "明天见面吧", "我们去吃饭"]

    sents = tmp_path / "s.txt"
    sents.write_text("\n".join(["你好", "我们去吃饭", "今天天气很好", "他是老师", "我喜欢学习中文", "妈妈在家",
                                "这本书很好看", "明天见", "请坐", "谢谢你"]) + "\n", encoding="utf-8")
    out = tmp_path / "corpus"
    main(["--out", str(out), "--sentences-file", str(sents), "--num-train-speakers", "2", "--num-dev-speakers",
          "1", "--num-test-speakers", "1", "--utts-per-speaker", "1", "--seed", "3", "--no-progress", "--lm-text"])
    lm = set((out / "lm_text.txt").read_text(encoding="utf-8").split())
    spoken = {}
    for split in ("train", "dev", "test"):
        with open(out / f"{split}.csv", encoding="utf-8") as f:
            spoken[split] = {(out / r["text"]).read_text(encoding="utf-8").strip() for r in csv.DictReader(f)}
    corpus = spoken["train"] | spoken["dev"] | spoken["test"]
    assert len(spoken["dev"] | spoken["test"]) == 2 and len(corpus) == 4
    assert lm == set(sents.read_text(encoding="utf-8").split()) - corpus  # everything else is LM text

    # --lm-text-with-train: the training sentences are LM text too, dev/test still never
    main(["--out", str(out), "--sentences-file", str(sents), "--num-train-speakers", "2", "--num-dev-speakers",
          "1", "--num-test-speakers", "1", "--utts-per-speaker", "1", "--seed", "3", "--no-progress", "--lm-text",
          "--lm-text-with-train"])
    lm = set((out / "lm_text.txt").read_text(encoding="utf-8").split())
    assert lm == set(sents.read_text(encoding="utf-8").split()) - spoken["dev"] - spoken["test"]


def test_lm_text_only_writes_the_full_runs_lm_text_and_renders_nothing(tmp_path):
    """local/data.sh pre-trains the tiny LLM on lm_text.txt while the videos render: --lm-text-only must write
    the very text the full run writes, render nothing, and the full run must then leave the file alone (same
    bytes, not replaced under the LLM build that is reading it)."""
    from vallr_pin.bin.render_corpus import main

    sents = tmp_path / "s.txt"
    sents.write_text("\n".join(["你好", "我们去吃饭", "今天天气很好", "他是老师", "我喜欢学习中文", "妈妈在家",
                                "这本书很好看", "明天见", "请坐", "谢谢你"]) + "\n", encoding="utf-8")
    opts = ["--sentences-file", str(sents), "--num-train-speakers", "2", "--num-dev-speakers", "1",
            "--num-test-speakers", "1", "--utts-per-speaker", "1", "--seed", "3", "--no-progress"]
    first, ref = tmp_path / "first", tmp_path / "ref"
    main(["--out", str(first), *opts, "--lm-text-only"])
    assert [p.name for p in first.iterdir()] == ["lm_text.txt"]  # no video, no list: nothing rendered
    stat = (first / "lm_text.txt").stat()
    main(["--out", str(ref), *opts, "--lm-text"])
    assert (first / "lm_text.txt").read_bytes() == (ref / "lm_text.txt").read_bytes()
    main(["--out", str(first), *opts, "--lm-text"])
    assert (first / "lm_text.txt").stat().st_ino == stat.st_ino  # not replaced
    assert (first / "lm_text.txt").stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in first.glob("*.csv")) == ["dev.csv", "speakers.csv", "test.csv", "train.csv"]


def test_generated_training_sentences_are_new_and_never_near_copies_of_dev_test(tmp_path):
    """--generated-train-sentences adds recombined sentences to train only; dev/test pools are unchanged."""
    from vallr_pin.bin.render_corpus import load_hsk_words, plan_corpus
    from vallr_pin.bin.render_corpus import filter_sentences, load_hsk_sentences

    sents, _ = filter_sentences(load_hsk_sentences(2), 2, 12)
    n_spk = {"train": 4, "dev": 1, "test": 1}
    n_utts = {"train": 2000, "dev": 20, "test": 20}  # more than the pool: every train sentence is used
    plain = plan_corpus(sents, n_spk, {**n_utts, "train": 40}, seed=3)
    jobs = plan_corpus(sents, n_spk, n_utts, seed=3, generated=300, words_of=load_hsk_words(), max_chars=12)
    again = plan_corpus(sents, n_spk, n_utts, seed=3, generated=300, words_of=load_hsk_words(), max_chars=12)
    assert jobs == again  # deterministic
    by = lambda js, s: [j.text for j in js if j.split == s]  # noqa: E731
    assert by(jobs, "dev") == by(plain, "dev") and by(jobs, "test") == by(plain, "test")
    train = by(jobs, "train")
    new = [t for t in train if t not in set(sents)]
    real = {t for t in train if t in set(sents)}
    assert len(real) == len(sents) - 40 and len(set(new)) >= 300 - 5  # the whole real pool + the generated
    held = [t.rstrip("。") for t in by(jobs, "dev") + by(jobs, "test")]
    from vallr_pin.text.normalize import normalize_text

    for t in new:
        h = normalize_text(t)
        assert 2 <= len(h) <= 12
        assert not any(h == x or (min(len(h), len(x)) >= 4 and (h in x or x in h)) for x in map(normalize_text, held))
    # mixed in, not appended: the first speaker reads generated sentences too
    first = [j.text for j in jobs if j.spk == "spk001"]
    assert any(t in new for t in first) and any(t not in new for t in first)


def test_extra_real_training_sentences_come_from_higher_levels_and_leave_dev_test_alone(tmp_path):
    """--extra-train-sentences adds real sentences of the higher HSK levels to train only: dev/test pools are
    those of the plan without them, no extra sentence is a near copy of a dev/test one, and lm_text.txt loses
    the extra sentences like every spoken one."""
    from vallr_pin.bin.render_corpus import filter_sentences, load_hsk_sentences, main, plan_corpus
    from vallr_pin.text.held_out import HeldOutSentences, lm_text_sentences

    sents, _ = filter_sentences(load_hsk_sentences(1), 2, 12)
    higher, _ = filter_sentences(load_hsk_sentences(min_level=2), 2, 12)
    assert higher and not set(higher) & set(sents)
    n_spk = {"train": 4, "dev": 1, "test": 1}
    n_utts = {"train": 1000, "dev": 20, "test": 20}
    plain = plan_corpus(sents, n_spk, n_utts, seed=3)
    jobs = plan_corpus(sents, n_spk, n_utts, seed=3, extra_train=higher, num_extra_train=150)
    assert jobs == plan_corpus(sents, n_spk, n_utts, seed=3, extra_train=higher, num_extra_train=150)
    by = lambda js, s: [j.text for j in js if j.split == s]  # noqa: E731
    assert by(jobs, "dev") == by(plain, "dev") and by(jobs, "test") == by(plain, "test")
    train = set(by(jobs, "train"))
    extra = train - set(sents)
    assert len(extra) == 150 and extra <= set(higher)
    assert set(by(plain, "train")) <= train  # the level-1 training sentences all stay
    from vallr_pin.text.normalize import normalize_text

    held = HeldOutSentences(by(jobs, "dev") + by(jobs, "test"))
    assert not any(held.leaks(normalize_text(t)) for t in extra)
    # a near copy of a dev/test sentence among the candidates is never drawn, however many are asked for
    dev0 = next(h for h in map(normalize_text, by(jobs, "dev")) if len(h) >= 5)
    copy = dev0[:4] + "。"  # 4 Hanzi of a dev sentence: a near copy; the punctuation must not hide it
    every = {**n_utts, "train": len(sents) + len(higher) + 1}  # enough utterances to speak the whole pool
    many = plan_corpus(sents, n_spk, every, seed=3, extra_train=[copy, *higher], num_extra_train=len(higher) + 1)
    clean = {h for h in higher if not held.leaks(normalize_text(h))}
    assert len(clean) < len(higher)  # level 2+ holds near copies of level-1 dev/test sentences: the case is real
    assert set(by(many, "train")) - set(sents) == clean  # every other candidate, and not the copy

    opts = ["--sentences-from", "hsk", "--hsk-max-level", "1", "--max-chars", "12", "--num-train-speakers", "2",
            "--num-dev-speakers", "1", "--num-test-speakers", "1", "--num-train-utts", "200", "--num-dev-utts", "10",
            "--num-test-utts", "10", "--seed", "3", "--lm-text-only"]
    main(["--out", str(tmp_path / "a"), *opts])
    main(["--out", str(tmp_path / "b"), *opts, "--extra-train-sentences", "100"])
    lm_b = (tmp_path / "b" / "lm_text.txt").read_text(encoding="utf-8").split()
    jobs_b = plan_corpus(sents, {"train": 2, "dev": 1, "test": 1}, {"train": 200, "dev": 10, "test": 10}, seed=3,
                         extra_train=higher, num_extra_train=100)
    from vallr_pin.text.normalize import normalize_text

    spoken_extra = {normalize_text(t) for t in {j.text for j in jobs_b if j.split == "train"} - set(sents)}
    assert len(spoken_extra) >= 20  # shuffled in: a 200-utterance split of a 350-sentence pool speaks some
    assert lm_b == lm_text_sentences(load_hsk_sentences(), [j.text for j in jobs_b])
    lm_a = (tmp_path / "a" / "lm_text.txt").read_text(encoding="utf-8").split()
    assert spoken_extra <= set(lm_a) and not spoken_extra & set(lm_b)
    with pytest.raises(SystemExit):  # needs --hsk-max-level: one line, non-zero exit
        main(["--out", str(tmp_path / "c"), "--extra-train-sentences", "5", "--lm-text-only"])

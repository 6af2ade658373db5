"""vallr_pin.datadir: the Kaldi data-dir reader/writer every stage uses."""

import subprocess

import pytest

from vallr_pin.datadir import atomic_open, read_kv, write_data_dir, write_kv


def test_write_kv_sorts_in_c_order_like_sort(tmp_path):
    # Mixed ASCII / Hanzi keys: Python's code-point order must equal `LC_ALL=C sort` byte order.
    items = {"spk2-b": "乙", "spk1-z": "", "spk1-a": "甲 乙", "SPK-A": "x", "spk1-汉": "y"}
    path = tmp_path / "text"
    write_kv(path, items)
    lines = path.read_text(encoding="utf-8").splitlines()
    c_sorted = subprocess.run(["sort"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                              env={"LC_ALL": "C"}, check=True).stdout.splitlines()
    assert lines == c_sorted
    assert "spk1-z" in lines  # an empty value writes the key alone
    assert read_kv(path) == items


def test_read_kv_rejects_duplicate_keys_naming_the_file(tmp_path):
    path = tmp_path / "utt2spk"
    path.write_text("a-1 a\na-1 a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="utt2spk.*duplicate key 'a-1'"):
        read_kv(path)


def test_atomic_open_leaves_old_file_on_crash(tmp_path):
    path = tmp_path / "feats.scp"
    write_kv(path, {"u1": "a.ark:1"})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("u2 half-written\n")
            raise RuntimeError("killed")
    assert read_kv(path) == {"u1": "a.ark:1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.scp"]  # no temp file left behind


def test_write_data_dir_requires_speaker_prefixed_utts(tmp_path):
    write_data_dir(tmp_path / "ok", {"s1-u1": "v.mp4"}, {"s1-u1": "你好"}, {"s1-u1": "s1"})
    assert (tmp_path / "ok" / "spk2utt").read_text() == "s1 s1-u1\n"
    with pytest.raises(ValueError, match="not prefixed by its speaker id 's2'"):
        write_data_dir(tmp_path / "bad", {"u1": "v.mp4"}, {"u1": "你好"}, {"u1": "s2"})


def test_written_files_follow_the_umask_not_mkstemp(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_kv(tmp_path / "text", {"u": "v"})
    finally:
        os.umask(old)
    assert (tmp_path / "text").stat().st_mode & 0o777 == 0o644


def test_speaker_stratified_subset_is_proportional_deterministic_and_spread(tmp_path):
    from vallr_pin.datadir import speaker_stratified_subset

    utt2spk = {f"a_{i:03d}": "a" for i in range(60)} | {f"b_{i:03d}": "b" for i in range(30)}
    sub = speaker_stratified_subset(utt2spk, 30)
    assert len(sub) == 30 and sub == speaker_stratified_subset(utt2spk, 30)
    assert sum(u.startswith("a") for u in sub) == 20  # 2:1 like the speakers
    assert "a_000" not in sub and max(int(u[2:]) for u in sub if u[0] == "a") > 50  # spread through a's utterances
    assert len(speaker_stratified_subset(utt2spk, 0.5)) == 45
    assert speaker_stratified_subset(utt2spk, 1000) == sorted(utt2spk)
    import pytest

    with pytest.raises(ValueError):
        speaker_stratified_subset(utt2spk, 0)


def test_subset_data_dir_filters_every_list(tmp_path):
    from vallr_pin.bin.subset_data_dir import main
    from vallr_pin.datadir import read_kv, write_kv

    src, dst = tmp_path / "src", tmp_path / "dst"
    utts = {f"s{k}_{i:02d}": f"s{k}" for k in range(3) for i in range(10)}
    write_kv(src / "utt2spk", utts)
    write_kv(src / "feats.scp", {u: f"x.ark:{i}" for i, u in enumerate(utts) if u != "s0_00"})  # one failed
    write_kv(src / "text", {u: "你好" for u in utts})
    main(["--src", str(src), "--dst", str(dst), "--size", "0.5"])
    keep = read_kv(dst / "feats.scp")
    assert len(keep) == 14 and "s0_00" not in keep
    assert set(read_kv(dst / "text")) == set(keep) == set(read_kv(dst / "utt2spk"))
    assert set(read_kv(dst / "spk2utt")) == {"s0", "s1", "s2"}


def test_read_kv_names_file_and_line_of_a_gbk_file_and_how_to_convert(tmp_path):
    path = tmp_path / "text"
    path.write_bytes("a-1 好\n".encode("utf-8") + "a-2 银行\n".encode("gbk"))
    with pytest.raises(ValueError, match=r"text: line 2 is not UTF-8 \(it reads as GBK.*iconv -f GB18030 -t UTF-8"):
        read_kv(path)


def test_read_kv_drops_a_byte_order_mark(tmp_path, caplog):
    path = tmp_path / "text"
    path.write_bytes(b"\xef\xbb\xbfa-1 \xe5\xa5\xbd\r\na-2 x\n")
    assert read_kv(path) == {"a-1": "好", "a-2": "x"}
    assert "byte-order mark" in caplog.text


def test_user_errors_one_line_exit_1_and_traceback_with_debug(caplog):
    from vallr_pin.cli import user_errors

    with pytest.raises(SystemExit) as e, user_errors("INFO"):
        raise FileNotFoundError("data/x/text: missing; run stage 0")
    assert e.value.code == 1 and caplog.records[-1].getMessage() == "data/x/text: missing; run stage 0"
    with pytest.raises(FileNotFoundError), user_errors("DEBUG"):
        raise FileNotFoundError("kept with its traceback")
    with pytest.raises(KeyError), user_errors("INFO"):  # a bug, not a user error: traceback kept
        raise KeyError("x")

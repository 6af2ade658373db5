"""utils/{validate,fix}_data_dir.sh, split_scp.pl and the utt2spk/spk2utt converters on small data dirs."""

import subprocess
from pathlib import Path

UTILS = Path(__file__).resolve().parent.parent / "utils"


def sh(tool, *args, cwd, stdin=None):
    return subprocess.run([str(UTILS / tool), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          input=stdin)


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def good_dir(root):
    """A valid data dir under root/data/x whose video paths are relative to root."""
    d = root / "data" / "x"
    d.mkdir(parents=True)
    (root / "v").mkdir()
    utts = [("spk1-0001", "spk1", "你好"), ("spk1-0002", "spk1", "再见"), ("spk2-0001", "spk2", "谢谢")]
    for u, _, _ in utts:
        (root / "v" / f"{u}.mp4").write_bytes(b"")
    write(d / "video.scp", [f"{u} v/{u}.mp4" for u, _, _ in utts])
    write(d / "text", [f"{u} {t}" for u, _, t in utts])
    write(d / "utt2spk", [f"{u} {s}" for u, s, _ in utts])
    write(d / "spk2utt", ["spk1 spk1-0001 spk1-0002", "spk2 spk2-0001"])
    return d


def validate(root, *opts):
    return sh("validate_data_dir.sh", *opts, "data/x", cwd=root)


def test_valid_dir_passes(tmp_path):
    good_dir(tmp_path)
    p = validate(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Successfully validated data-directory data/x" in p.stdout


def test_unsorted_file_is_caught_and_fixed(tmp_path):
    d = good_dir(tmp_path)
    lines = (d / "text").read_text().splitlines()
    write(d / "text", [lines[2], lines[0], lines[1]])
    p = validate(tmp_path)
    assert p.returncode == 1
    assert "data/x/text: not sorted" in p.stdout and "'spk1-0001'" in p.stdout
    assert sh("fix_data_dir.sh", "data/x", cwd=tmp_path).returncode == 0
    assert validate(tmp_path).returncode == 0
    assert (d / ".backup" / "text").read_text().splitlines()[0] == lines[2]  # the original, unsorted


def test_temporary_dir_of_a_killed_run_is_removed(tmp_path):
    """A fix_data_dir.sh killed with SIGKILL runs no EXIT trap and leaves data/x/.fix_data_dir.XXXXXX behind
    (found by test_recipe_faults.py in dump/roi/<set>); the next run removes it."""
    d = good_dir(tmp_path)
    stale = d / ".fix_data_dir.AbC123"
    stale.mkdir()
    (stale / "text").write_text("half-done\n")
    assert sh("fix_data_dir.sh", "data/x", cwd=tmp_path).returncode == 0
    assert not list(d.glob(".fix_data_dir.*"))


def test_missing_utterance_is_caught_and_removed(tmp_path):
    d = good_dir(tmp_path)
    write(d / "text", (d / "text").read_text().splitlines()[:2])  # spk2-0001 has no text
    p = validate(tmp_path)
    assert p.returncode == 1
    assert "data/x/text: 1 utterance(s) of utt2spk missing, first 'spk2-0001'" in p.stdout
    p = sh("fix_data_dir.sh", "data/x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "removed 1 of 3 utterances" in p.stdout and "1 missing from text, first 'spk2-0001'" in p.stdout
    assert validate(tmp_path).returncode == 0
    assert (d / "spk2utt").read_text() == "spk1 spk1-0001 spk1-0002\n"
    assert "spk2-0001" in (d / ".backup" / "utt2spk").read_text()
    assert (d / "utt2spk").read_text().count("\n") == 2


def test_missing_video_path(tmp_path):
    d = good_dir(tmp_path)
    (tmp_path / "v" / "spk1-0002.mp4").unlink()
    p = validate(tmp_path)
    assert p.returncode == 1
    assert "1 video path(s) do not exist" in p.stdout and "'spk1-0002' -> v/spk1-0002.mp4" in p.stdout
    assert validate(tmp_path, "--no-check-paths").returncode == 0
    # Paths are relative to the current directory: from elsewhere every path is missing.
    assert sh("validate_data_dir.sh", d, cwd=d).returncode == 1
    p = sh("fix_data_dir.sh", "--drop-missing-videos", "true", "data/x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "video path does not exist, first 'spk1-0002'" in p.stdout
    assert validate(tmp_path).returncode == 0
    # Refuses to empty a directory whose paths are all unreachable from here, and changes nothing.
    before = (d / "video.scp").read_text()
    p = sh("fix_data_dir.sh", "--drop-missing-videos", "true", d, cwd=d)
    assert p.returncode == 1 and (d / "video.scp").read_text() == before


def test_duplicate_key(tmp_path):
    d = good_dir(tmp_path)
    lines = (d / "video.scp").read_text().splitlines()
    write(d / "video.scp", [lines[0], lines[0].replace(".mp4", ".other.mp4"), *lines[1:]])
    p = validate(tmp_path)
    assert p.returncode == 1
    assert "data/x/video.scp: duplicate key 'spk1-0001'" in p.stdout
    p = sh("fix_data_dir.sh", "data/x", cwd=tmp_path)
    assert "1 key(s) repeated, first 'spk1-0001'" in p.stdout
    assert (d / "video.scp").read_text().splitlines() == lines  # the first line of the key is kept
    assert validate(tmp_path).returncode == 0


def test_utt_not_prefixed_by_speaker(tmp_path):
    d = good_dir(tmp_path)
    for name in ("video.scp", "text", "utt2spk"):
        (d / name).write_text((d / name).read_text().replace("spk2-0001", "x0001"), encoding="utf-8")
    write(d / "spk2utt", ["spk1 spk1-0001 spk1-0002", "spk2 x0001"])
    p = validate(tmp_path, "--no-check-paths")
    assert p.returncode == 1
    assert "do not start with their speaker id, first 'x0001' (speaker 'spk2')" in p.stdout
    p = sh("fix_data_dir.sh", "data/x", cwd=tmp_path)
    assert "x0001 -> spk2-x0001" in p.stdout
    assert validate(tmp_path, "--no-check-paths").returncode == 0
    assert "spk2-x0001 谢谢" in (d / "text").read_text(encoding="utf-8")
    assert (d / "spk2utt").read_text().splitlines()[1] == "spk2 spk2-x0001"


def test_empty_text_invalid_utf8_and_extra_files(tmp_path):
    d = good_dir(tmp_path)
    write(d / "text", ["spk1-0001 你好", "spk1-0002", "spk2-0001 谢谢"])
    write(d / "extra", ["spk1-0001 a", "spk1-0002 b"])
    (d / "text_pinyin").write_bytes(b"spk1-0001 ni hao\nspk1-0002 \xff\nspk2-0001 xie xie\n")
    p = validate(tmp_path)
    assert "data/x/text: 1 utterance(s) with empty text, first 'spk1-0002'" in p.stdout
    assert "data/x/text_pinyin is not valid UTF-8 at line 2 (key 'spk1-0002')" in p.stdout
    assert "with empty text" not in validate(tmp_path, "--no-text").stdout
    p = sh("fix_data_dir.sh", "--drop-empty-text", "true", "--utt-extra-files", "extra", "data/x",
           cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "1 missing from extra, first 'spk2-0001'" in p.stdout
    assert (d / "utt2spk").read_text() == "spk1-0001 spk1\n"
    assert validate(tmp_path).returncode == 0


def test_fix_on_valid_dir_changes_nothing(tmp_path):
    d = good_dir(tmp_path)
    p = sh("fix_data_dir.sh", "data/x", cwd=tmp_path)
    assert p.returncode == 0 and "nothing to fix" in p.stdout
    assert not (d / ".backup").exists()
    assert sh("fix_data_dir.sh", "--bogus", "1", "data/x", cwd=tmp_path).returncode != 0


def test_split_scp_even_and_by_speaker(tmp_path):
    lines = [f"a-{i} a" for i in range(3)] + ["b-0 b"] + [f"c-{i} c" for i in range(2)]
    write(tmp_path / "utt2spk", lines)
    outs = [tmp_path / "split4" / str(k) / "utt2spk" for k in (1, 2, 3, 4)]
    assert sh("split_scp.pl", "utt2spk", *outs, cwd=tmp_path).returncode == 0
    assert [len(o.read_text().splitlines()) for o in outs] == [2, 2, 1, 1]
    assert sum((o.read_text().splitlines() for o in outs), []) == lines

    outs = [tmp_path / f"s{k}" for k in (1, 2, 3)]
    p = sh("split_scp.pl", "--utt2spk=utt2spk", "utt2spk", *outs, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    parts = [o.read_text().splitlines() for o in outs]
    assert [sorted({line.split()[1] for line in part}) for part in parts] == [["a"], ["b"], ["c"]]

    p = sh("split_scp.pl", "utt2spk", *[tmp_path / f"t{k}" for k in range(7)], cwd=tmp_path)
    assert p.returncode != 0 and "6 lines" in p.stderr
    p = sh("split_scp.pl", "--utt2spk", "utt2spk", "utt2spk", *[tmp_path / f"t{k}" for k in range(4)],
           cwd=tmp_path)
    assert p.returncode != 0 and "3 speakers" in p.stderr


def test_utt2spk_spk2utt_round_trip_and_filter(tmp_path):
    utt2spk = "a-1 a\na-2 a\nb-1 b\n"
    p = sh("utt2spk_to_spk2utt.pl", cwd=tmp_path, stdin=utt2spk)
    assert p.stdout == "a a-1 a-2\nb b-1\n"
    assert sh("spk2utt_to_utt2spk.pl", cwd=tmp_path, stdin=p.stdout).stdout == utt2spk
    write(tmp_path / "ids", ["a-2"])
    assert sh("filter_scp.pl", "ids", cwd=tmp_path, stdin=utt2spk).stdout == "a-2 a\n"
    assert sh("filter_scp.pl", "--exclude", "ids", cwd=tmp_path, stdin=utt2spk).stdout == "a-1 a\nb-1 b\n"
    assert sh("filter_scp.pl", "-f", "2", "ids", cwd=tmp_path, stdin="x a-2\ny a-1\n").stdout == "x a-2\n"


def test_video_paths_with_spaces_are_found_and_kept(tmp_path):
    """Issue 21: validate_data_dir.sh reported videos whose path has a space as missing, and the
    --drop-missing-videos true it recommended deleted them."""
    d = good_dir(tmp_path)
    (tmp_path / "my videos").mkdir()
    for u in ("spk1-0001", "spk1-0002"):
        (tmp_path / "my videos" / f"{u} take 1.mp4").write_bytes(b"")
    write(d / "video.scp", ["spk1-0001 my videos/spk1-0001 take 1.mp4", "spk1-0002 my videos/spk1-0002 take 1.mp4",
                            "spk2-0001 my videos/gone.mp4"])
    p = validate(tmp_path)
    assert p.returncode == 1
    assert "data/x/video.scp: 1 video path(s) do not exist" in p.stdout
    assert "'spk2-0001' -> my videos/gone.mp4" in p.stdout
    p = sh("fix_data_dir.sh", "--drop-missing-videos", "true", "data/x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "removed 1 of 3 utterances" in p.stdout
    assert (d / "video.scp").read_text().splitlines() == ["spk1-0001 my videos/spk1-0001 take 1.mp4",
                                                          "spk1-0002 my videos/spk1-0002 take 1.mp4"]
    assert validate(tmp_path).returncode == 0


def test_byte_order_mark_is_reported_and_removed_not_taken_for_an_utterance(tmp_path):
    d = good_dir(tmp_path)
    (d / "text").write_bytes(b"\xef\xbb\xbf" + (d / "text").read_bytes())
    p = validate(tmp_path)
    assert p.returncode == 1 and "data/x/text starts with a UTF-8 byte-order mark" in p.stdout
    p = sh("fix_data_dir.sh", "data/x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "removed the UTF-8 byte-order mark" in p.stdout and "removed 1 of" not in p.stdout
    assert (d / "text").read_text(encoding="utf-8").startswith("spk1-0001 你好\n")
    assert validate(tmp_path).returncode == 0

"""A user's mistake at an entry point is one ERROR line naming the file, and exit status 1; the Python
traceback only with --log-level DEBUG (vallr_pin.cli.user_errors). One bad input per entry point, run as the
recipe runs it (a subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(module, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", f"vallr_pin.bin.{module}", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_one_line_error(proc, names):
    """Exit 1; stderr is exactly one line, an ERROR naming ``names`` (a path), and no traceback."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and " ERROR: " in lines[0], proc.stderr[-3000:]
    assert str(names) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "not_a_checkpoint.pth").write_text("this is not a checkpoint\n")
    (tmp_path / "train.yaml").write_text("frontend: conv3d_resnet\n")
    (tmp_path / "broken.yaml").write_text("systems: [1\n")
    (tmp_path / "gbk.txt").write_bytes("你好世界\n".encode("gbk"))
    (tmp_path / "latin.txt").write_text("hello world\nno hanzi here\n", encoding="utf-8")
    return tmp_path


def test_convert_baseline_frontend_names_a_file_that_is_no_checkpoint(files):
    ckpt = files / "not_a_checkpoint.pth"
    line = assert_one_line_error(run("convert_baseline_frontend", "--src", ckpt, "--train-config",
                                     files / "train.yaml", "--out", files / "out.pth"), ckpt)
    assert "not a PyTorch checkpoint" in line and not (files / "out.pth").exists()


def test_pack_model_names_the_missing_training_config(files):
    exp = files / "exp" / "vsr_missing"
    line = assert_one_line_error(run("pack_model", "--exp", exp, "--out", files / "packed"), exp / "config.yaml")
    assert "--exp must be a trained" in line


def test_prepare_corpus_names_a_list_file_that_is_not_utf8(files):
    """A split list saved by a Windows tool (GBK) stopped stage 0 with a bare UnicodeDecodeError."""
    root = files / "CMLR"
    (root / "video").mkdir(parents=True)
    (root / "train.csv").write_bytes("路径\ns1/20170121/section_1_000.80_002.91\n".encode("gbk"))
    line = assert_one_line_error(run("prepare_corpus", "--corpus", "cmlr", "--cmlr-root", root,
                                     "--data-dir", files / "data"), root / "train.csv")
    assert "line 1 is not UTF-8" in line and "iconv" in line
    missing = files / "no_corpus_here"
    assert_one_line_error(run("prepare_corpus", "--corpus", "mini_cnvsrc", "--mini-root", missing,
                              "--data-dir", files / "data"), missing / "train.csv")


def test_show_results_names_a_config_that_is_not_yaml(files):
    line = assert_one_line_error(run("show_results", "--config", files / "broken.yaml", "--out", files / "R.md"),
                                 files / "broken.yaml")
    assert "not valid YAML at line 2" in line and not (files / "R.md").exists()


def test_subset_data_dir_names_a_destination_that_is_a_file(files):
    src = files / "train"
    src.mkdir()
    (src / "utt2spk").write_text("s1-a s1\ns1-b s1\ns2-c s2\n")
    dst = files / "train_sub"
    dst.write_text("a file where the subset directory should go\n")
    assert_one_line_error(run("subset_data_dir", "--src", src, "--dst", dst, "--size", "2"), dst)
    missing = files / "dump" / "roi" / "train"
    assert_one_line_error(run("subset_data_dir", "--src", missing, "--dst", files / "sub", "--size", "3"),
                          missing / "utt2spk")


def test_vsr_inference_names_the_missing_checkpoint_before_loading_anything(files):
    feats = files / "feats.scp"
    feats.write_text("u1 x.ark:0\n")
    ckpt = files / "exp" / "valid.acc_char.ave.pth"
    line = assert_one_line_error(run("vsr_inference", "--train_config", files / "train.yaml", "--model_file", ckpt,
                                     "--data_path_and_name_and_type", f"{feats},video,kaldi_ark",
                                     "--output_dir", files / "decode"), ckpt)
    assert line.split(" ERROR: ")[1].startswith("--model_file ")
    assert not (files / "decode").exists()


def test_render_corpus_names_a_sentence_file_that_is_not_utf8(files):
    line = assert_one_line_error(run("render_corpus", "--out", files / "corpus", "--sentences-file",
                                     files / "gbk.txt", "--no-progress"), files / "gbk.txt")
    assert "iconv -f GBK -t UTF-8" in line


def test_make_tiny_llm_names_text_without_chinese_and_debug_shows_the_traceback(files):
    latin = files / "latin.txt"
    line = assert_one_line_error(run("make_tiny_llm", "--text", latin, "--out", files / "llm", "--steps", "0"),
                                 latin)
    assert "no Chinese sentences" in line and not (files / "llm").exists()
    debug = run("make_tiny_llm", "--text", latin, "--out", files / "llm", "--steps", "0", "--log-level", "DEBUG")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ValueError: no Chinese sentences" in debug.stderr


@pytest.mark.parametrize("module", ["convert_baseline_frontend", "pack_model", "prepare_corpus", "show_results",
                                    "subset_data_dir", "vsr_inference", "render_corpus", "make_tiny_llm"])
def test_every_entry_point_has_help_and_log_level(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"vallr_pin.bin.{module}").main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--log-level" in out and "DEBUG" in out, out

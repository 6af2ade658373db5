"""utils/parse_options.sh as recipe scripts use it: sourced after the defaults, options before positionals."""

import subprocess
from pathlib import Path

UTILS = Path(__file__).resolve().parent.parent / "utils"

SCRIPT = """#!/usr/bin/env bash
# Usage: demo.sh [options] <in> <out>
# Prints its settings.
nj=4
use_gpu=false
dump_dir=dump
. {utils}/parse_options.sh
echo "nj=$nj use_gpu=$use_gpu dump_dir=$dump_dir"
for a in "$@"; do echo "arg=$a"; done
"""


def make_script(tmp_path, text=SCRIPT):
    path = tmp_path / "demo.sh"
    path.write_text(text.format(utils=UTILS))
    path.chmod(0o755)
    return path


def run(script, *args):
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=script.parent)


def test_dashes_become_underscores_and_positionals_stay(tmp_path):
    p = run(make_script(tmp_path), "--nj", "8", "--dump-dir", "a b", "in dir", "out")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["nj=8 use_gpu=false dump_dir=a b", "arg=in dir", "arg=out"]


def test_equals_form_and_double_dash(tmp_path):
    p = run(make_script(tmp_path), "--nj=2", "--dump-dir=x=y", "--", "--not-an-option")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["nj=2 use_gpu=false dump_dir=x=y", "arg=--not-an-option"]


def test_unknown_option_is_an_error(tmp_path):
    p = run(make_script(tmp_path), "--n-j", "8", "in")
    assert p.returncode != 0
    assert "unknown option --n-j" in p.stderr
    assert p.stdout == ""


def test_missing_value_is_an_error(tmp_path):
    p = run(make_script(tmp_path), "--nj")
    assert p.returncode != 0
    assert "--nj needs a value" in p.stderr


def test_booleans_are_checked(tmp_path):
    script = make_script(tmp_path)
    assert run(script, "--use-gpu", "true").stdout.startswith("nj=4 use_gpu=true")
    p = run(script, "--use-gpu", "yes")
    assert p.returncode != 0 and "true or false" in p.stderr
    # A non-boolean default takes any value.
    assert run(script, "--nj", "true").returncode == 0


def test_config_then_command_line_override(tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("nj=16\nuse_gpu=true\n")
    script = make_script(tmp_path)
    p = run(script, "--nj", "3", "--config", str(conf), "pos")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["nj=3 use_gpu=true dump_dir=dump", "arg=pos"]
    p = run(script, f"--config={conf}")
    assert p.stdout.splitlines() == ["nj=16 use_gpu=true dump_dir=dump"]
    assert run(script, "--config", str(tmp_path / "absent.conf")).returncode != 0


def test_help_prints_header_comment(tmp_path):
    p = run(make_script(tmp_path), "--help")
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["Usage: demo.sh [options] <in> <out>", "Prints its settings."]
    assert run(make_script(tmp_path), "-h").stdout.startswith("Usage: demo.sh")


def test_help_prefers_help_message(tmp_path):
    text = SCRIPT.replace("nj=4\n", 'nj=4\nhelp_message="Usage: demo.sh <x> (from help_message)"\n')
    p = run(make_script(tmp_path, text), "--help")
    assert p.returncode == 0
    assert p.stdout.strip() == "Usage: demo.sh <x> (from help_message)"

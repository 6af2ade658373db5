"""Air-gapped compute nodes (issue 22): the recipe's entry points run with the network cut and never try it.

Each entry point runs as the recipe starts it (``python -m vallr_pin.bin.X``) with a ``sitecustomize`` that
refuses and records every name lookup of a non-local host and every IPv4/IPv6 connect, inside a network namespace
with no interfaces up (``unshare --net``) where that is allowed, and without the HF_*_OFFLINE variables that the
Makefile and path.sh export: the entry points must set them themselves. The stages chain like the recipe's:
lip_roi -> prepare_text -> vsr_train --collect_stats -> vsr_train -> lm_train --collect_stats -> lm_train ->
vsr_inference (with the LM) -> make_tiny_llm -> llm_refine -> score.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from video_testdata import write_astronaut_video
from vsr_testdata import CHARS, make_roi_data, write_tiny_train_config

from vallr_pin.datadir import read_kv, write_data_dir, write_kv
from vallr_pin.offline import OFFLINE_ENV, set_offline_defaults

REPO = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = '''
"""Test network cut: refuse and record every non-local name lookup and every IPv4/IPv6 connect."""
import os, socket, traceback

_LOG = os.environ["NETWORK_ATTEMPTS_LOG"]
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1"}


def _refuse(what):
    with open(_LOG, "a") as f:
        f.write(f"pid {os.getpid()}: {what}\\n" + "".join(traceback.format_stack(limit=15)) + "\\n")
    raise OSError(101, "Network is unreachable (test_offline)")


def _wrap_lookup(orig):
    def lookup(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL:
            _refuse(f"{orig.__name__}({name!r})")
        return orig(host, *args, **kwargs)
    return lookup


def _wrap_connect(orig):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse(f"{orig.__name__}({address!r})")
        return orig(self, address)
    return connect


socket.getaddrinfo = _wrap_lookup(socket.getaddrinfo)
socket.gethostbyname = _wrap_lookup(socket.gethostbyname)
socket.socket.connect = _wrap_connect(socket.socket.connect)
socket.socket.connect_ex = _wrap_connect(socket.socket.connect_ex)
'''


def _netns() -> list:
    """``unshare --net`` where this user may create a network namespace, else nothing (the hook still refuses)."""
    if shutil.which("unshare") is None:
        return []
    for cmd in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if subprocess.run(cmd + ["true"], capture_output=True).returncode == 0:
            return cmd
    return []


@pytest.fixture(scope="module")
def airgapped(tmp_path_factory):
    """``run(module, *args)``: ``python -m vallr_pin.bin.<module> args`` with the network cut; asserts exit 0."""
    site = tmp_path_factory.mktemp("airgap")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = site / "attempts.log"
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), NETWORK_ATTEMPTS_LOG=str(log),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    prefix = _netns()

    def run(module: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*prefix, sys.executable, "-m", f"vallr_pin.bin.{module}", *map(str, args)],
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{module} failed offline:\n{proc.stderr[-4000:]}"
        assert not log.exists(), f"{module} tried the network:\n{log.read_text()[:4000]}"
        return proc

    return run


def test_recipe_entry_points_run_with_the_network_cut(airgapped, tmp_path):
    # stage 1 on a real-face clip (mediapipe's models are inside its wheel)
    write_astronaut_video(tmp_path / "face.mp4", num_frames=12, size=256)
    write_kv(tmp_path / "video.scp", {"spk1-face": str(tmp_path / "face.mp4")})
    write_kv(tmp_path / "roi_text", {"spk1-face": "你好"})
    airgapped("lip_roi", "--video-scp", tmp_path / "video.scp", "--text", tmp_path / "roi_text",
              "--out-dir", tmp_path / "roi", "--job-id", 1)
    airgapped("lip_roi", "--merge", "--out-dir", tmp_path / "roi", "--nj", 1)
    assert list(read_kv(tmp_path / "roi" / "feats.scp")) == ["spk1-face"]

    # stage 2 on the tiny learnable set, whose ROIs the model trains on
    roi = tmp_path / "dump"
    make_roi_data(roi)
    text = read_kv(roi / "text")
    data = tmp_path / "data" / "train"
    write_data_dir(data, {u: f"/v/{u}.mp4" for u in text}, text, {u: u.split("-")[0] for u in text})
    airgapped("prepare_text", "--data-dirs", data, "--train-dir", data, "--token-list-dir", tmp_path / "token_list")
    tokens = ["--token_list", tmp_path / "token_list/char/tokens.txt",
              "--pinyin_token_list", tmp_path / "token_list/pinyin/tokens.txt"]
    assert read_kv(data / "text_pinyin") == read_kv(roi / "text_pinyin")

    # stages 3-4: ESPnet collect-stats and one short epoch
    write_tiny_train_config(tmp_path / "train.yaml", max_epoch=1, num_iters_per_epoch=2, batch_bins=10000,
                            keep_epochs=[], seed=0)
    sets = []
    for split in ("train", "valid"):
        sets += [f"--{split}_data_path_and_name_and_type", f"{roi}/feats.scp,video,kaldi_ark",
                 f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
                 f"--{split}_data_path_and_name_and_type", f"{data}/text_pinyin,text_pinyin,text"]
    airgapped("vsr_train", "--collect_stats", "true", "--config", tmp_path / "train.yaml", *tokens, *sets,
              "--train_shape_file", roi / "feats.scp", "--valid_shape_file", roi / "feats.scp",
              "--output_dir", tmp_path / "stats")
    exp = tmp_path / "exp"
    airgapped("vsr_train", "--config", tmp_path / "train.yaml", *tokens, *sets, "--output_dir", exp,
              "--train_shape_file", tmp_path / "stats/train/video_shape",
              "--valid_shape_file", tmp_path / "stats/valid/video_shape")

    # stages 3-4 with --use_lm true: ESPnet's lm_train, whose task imports g2p_en (nltk.download at import)
    (tmp_path / "lm.yaml").write_text("lm: seq_rnn\nlm_conf: {unit: 16, nlayers: 1}\nmax_epoch: 1\n"
                                      "batch_type: folded\nbatch_size: 4\nnum_workers: 0\nseed: 0\n")
    lm = ["--config", tmp_path / "lm.yaml", "--ngpu", 0, "--token_type", "char", "--token_list", tokens[1],
          "--use_preprocessor", "true", "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none",
          "--bpemodel", "none", "--train_data_path_and_name_and_type", f"{data}/text,text,text",
          "--valid_data_path_and_name_and_type", f"{data}/text,text,text"]
    airgapped("lm_train", *lm, "--collect_stats", "true", "--output_dir", tmp_path / "lm_stats",
              "--train_shape_file", data / "text", "--valid_shape_file", data / "text")
    airgapped("lm_train", *lm, "--output_dir", tmp_path / "lm", "--fold_length", 150, "--train_shape_file",
              tmp_path / "lm_stats/train/text_shape", "--valid_shape_file", tmp_path / "lm_stats/valid/text_shape")

    # stage 5: decode with the 1-epoch model, the LM fused and the pinyin CTC in the search
    decode = exp / "decode" / "train"
    airgapped("vsr_inference", "--config", REPO / "egs/TEMPLATE/vsr1/conf/decode_vsr.yaml",
              "--train_config", exp / "config.yaml", "--model_file", exp / "1epoch.pth",
              "--data_path_and_name_and_type", f"{roi}/feats.scp,video,kaldi_ark", "--ref_text", data / "text",
              "--beam_size", 3, "--nbest", 3, "--output_dir", decode, "--pinyin_search_weight", 0.3,
              "--lm_weight", 0.3, "--lm_train_config", tmp_path / "lm/config.yaml",
              "--lm_file", tmp_path / "lm/1epoch.pth")
    rows = [json.loads(line) for line in (decode / "nbest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["utt"] for r in rows] == sorted(text) and all(r["nbest"] for r in rows)

    # stage 9 with a tiny LLM made here (zero-shot: no adapter), then scoring
    llm = tmp_path / "tiny_llm"
    airgapped("make_tiny_llm", "--text", data / "text", "--out", llm, "--vocab-size", 600, "--hidden", 32,
              "--layers", 1, "--heads", 2, "--kv-heads", 1, "--max-positions", 512, "--steps", 0,
              "--max-phrases", 50)
    airgapped("llm_refine", "--nbest", decode / "nbest.jsonl", "--model", llm, "--out-dir", tmp_path / "refine",
              "--batch-size", 4, "--threads", 1)
    assert list(read_kv(tmp_path / "refine" / "text")) == sorted(text)
    airgapped("score", "--ref", data / "text", "--hyp", tmp_path / "refine" / "text",
              "--out-dir", tmp_path / "refine" / "score_cer")
    assert json.loads((tmp_path / "refine/score_cer/summary.json").read_text())["n_sent"] == len(text)
    assert set("".join(text.values())) <= set(CHARS)


def test_espnet_task_imports_neither_g2p_nltk_nor_the_whole_of_funasr():
    """What made every ESPnet-task process try nltk.download and spend ~20 s importing stays out; FunASR's
    package, registered without its import-everything __init__, still completes itself on first use."""
    code = (
        "import sys, vallr_pin.bin.vsr_train, vallr_pin.bin.vsr_inference, vallr_pin.tasks.vsr\n"
        "heavy = ('g2p_en', 'nltk', 'inflect', 'espnet2.train.preprocessor', 'transformers', 'funasr.auto')\n"
        "print('loaded:', sorted(m for m in heavy if m in sys.modules))\n"
        # ESPnet's LM task (stage 4's lm_train, stages 5-6's LM fusion) with a g2p_en that is never the real one
        "from vallr_pin.lean_imports import import_lm_task\n"
        "import_lm_task()\n"
        "print('with the LM task:', sorted(m for m in ('g2p_en', 'nltk') if m in sys.modules))\n"
        "import funasr\n"
        "from funasr.models.sanm.encoder import SANMEncoder\n"
        "assert issubclass(vallr_pin.tasks.vsr.SANMVideoEncoder, SANMEncoder)\n"
        "version = open(funasr.version_file).read().strip()\n"  # the first use runs FunASR's own __init__
        "print('completed:', callable(funasr.AutoModel), funasr.__version__ == version)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # (ESPnet and FunASR print notices on stdout too)
    assert [ln for ln in out.stdout.splitlines() if ln.startswith(("loaded:", "with the LM task:", "completed:"))] == [
        "loaded: []", "with the LM task: []", "completed: True True"]


def test_offline_defaults_are_defaults(monkeypatch):
    for name in OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user who wants the hub keeps it
    set_offline_defaults()
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert os.environ["TRANSFORMERS_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"

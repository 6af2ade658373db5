"""A packed model carries the character LM stage 5 fused, and only then (vallr_pin.packing)."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from vallr_pin.packing import ModelDirError, _lm_files, load_manifest, manifest_paths


def _file_id(path):
    return [str(path), path.stat().st_size, hashlib.sha1(path.read_bytes()).hexdigest()]


def test_lm_files_come_from_the_decode_signature_and_must_be_the_ones_decoded_with(tmp_path):
    cfg, ckpt = tmp_path / "config.yaml", tmp_path / "valid.loss.best.pth"
    cfg.write_text("lm: seq_rnn\n")
    ckpt.write_bytes(b"weights")
    decode = {"beam_size": 4, "lm_weight": 0.4, "lm_train_config": _file_id(cfg), "lm_file": _file_id(ckpt)}
    assert _lm_files(decode) == [cfg, ckpt]
    assert decode == {"beam_size": 4, "lm_weight": 0.4}  # the paths leave the options, the weight stays
    assert _lm_files({"beam_size": 4}) is None and _lm_files({"lm_weight": 0.0}) is None
    with pytest.raises(ModelDirError, match="name no LM"):
        _lm_files({"lm_weight": 0.4})
    stale = {"lm_weight": 0.4, "lm_train_config": _file_id(cfg), "lm_file": _file_id(ckpt)}
    ckpt.write_bytes(b"retrained")
    with pytest.raises(ModelDirError, match="changed since stage 5"):
        _lm_files(stale)
    gone = {"lm_weight": 0.4, "lm_train_config": _file_id(cfg), "lm_file": [str(tmp_path / "no.pth"), 1, "x"]}
    with pytest.raises(ModelDirError, match="is gone"):
        _lm_files(gone)


def test_a_model_dir_with_an_lm_needs_its_files(tmp_path):
    conf = {"format_version": 1, "vsr": {"config": "vsr/config.yaml", "model_file": "vsr/model.pth"},
            "roi": {"roi_size": 32, "mouth_width_frac": 0.7, "smooth_window": 5, "fps": 25.0, "detector": "mediapipe"},
            "decode": {"beam_size": 4, "ctc_weight": 0.5, "nbest": 4, "lm_weight": 0.4},
            "lm": {"config": "lm/config.yaml", "model_file": "lm/model.pth"}, "llm": None}
    for rel in ("vsr/config.yaml", "vsr/model.pth", "lm/config.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(ModelDirError, match="lm.model_file 'lm/model.pth' is missing"):
        load_manifest(tmp_path)
    (tmp_path / "lm/model.pth").write_text("x")
    paths = manifest_paths(tmp_path, load_manifest(tmp_path))
    assert (paths["lm_config"], paths["lm_file"]) == (tmp_path / "lm/config.yaml", tmp_path / "lm/model.pth")

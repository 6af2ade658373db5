"""End to end through the real entry points on tiny learnable ROI data.

collect-stats -> training (killed after epoch 3, re-run with the same command: it resumes) -> kept
early/mid/late checkpoints -> two decoding jobs + merge: both branches must have overfit the training
utterances; N-best lists well-formed; a re-run after deleting one job's marker redoes only that job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import pytest
import torch
import yaml

torch.set_num_threads(1)

from vsr_testdata import CHARS, CONF, PINYIN, make_roi_data, write_tiny_train_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCH = 12
KILL_AFTER = 3


def _cer(refs: dict, hyps: dict) -> float:
    import editdistance

    errors = sum(editdistance.eval(list(refs[u].replace(" ", "")), list(hyps.get(u, "").replace(" ", "")))
                 for u in refs)
    return errors / sum(len(r.replace(" ", "")) for r in refs.values())


def _read(path: Path) -> dict:
    from vallr_pin.datadir import read_kv

    return read_kv(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vsr")
    data = root / "data"
    make_roi_data(data)
    write_tiny_train_config(root / "train.yaml", max_epoch=MAX_EPOCH, num_iters_per_epoch=10,
                            keep_epochs=[2, 6, MAX_EPOCH], batch_bins=10000, seed=0,
                            optim_conf={"lr": 0.003}, scheduler_conf={"warmup_steps": 20})

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    common = ["--config", str(root / "train.yaml"), "--token_list", str(data / "char_tokens.txt"),
              "--pinyin_token_list", str(data / "pinyin_tokens.txt")]
    for split in ("train", "valid"):
        common += [f"--{split}_data_path_and_name_and_type", f"{data}/feats.scp,video,kaldi_ark",
                   f"--{split}_data_path_and_name_and_type", f"{data}/text,text,text",
                   f"--{split}_data_path_and_name_and_type", f"{data}/text_pinyin,text_pinyin,text"]
    entry = [sys.executable, "-m", "vallr_pin.bin.vsr_train"]
    subprocess.run(entry + common + ["--collect_stats", "true", "--output_dir", str(root / "stats"),
                                     "--train_shape_file", str(data / "feats.scp"),
                                     "--valid_shape_file", str(data / "feats.scp")],
                   check=True, env=env, capture_output=True)
    assert (root / "stats" / "train" / "video_shape").read_text().split("\n")[0].endswith(",784")

    exp = root / "exp"
    train_cmd = entry + common + ["--output_dir", str(exp), "--resume", "true",
                                  "--train_shape_file", str(root / "stats/train/video_shape"),
                                  "--valid_shape_file", str(root / "stats/valid/video_shape")]
    with open(root / "train1.log", "w") as log:
        proc = subprocess.Popen(train_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not (exp / f"{KILL_AFTER}epoch.pth").exists():
            assert proc.poll() is None, (root / "train1.log").read_text()[-3000:]
            assert time.time() < deadline, "training did not reach the kill point"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run2 = subprocess.run(train_cmd, env=env, capture_output=True, text=True)
    assert run2.returncode == 0, run2.stderr[-3000:]
    return dict(root=root, data=data, exp=exp, log1=(root / "train1.log").read_text(), log2=run2.stderr)


def test_training_resumes_after_kill_and_keeps_epochs(trained):
    log1, log2, exp = trained["log1"], trained["log2"], trained["exp"]
    # " {N}epoch results": the message starts after a space in ESPnet's log format ("... INFO: 12epoch results")
    assert f" {MAX_EPOCH}epoch results" not in log1  # really killed mid-run
    assert "The training was resumed using" in log2
    assert " 1epoch results" not in log2  # resumed, not restarted
    first = int(log2.split("epoch started")[0].rsplit(" ", 1)[-1].split("/")[0])
    assert KILL_AFTER + 1 <= first <= KILL_AFTER + 2
    assert f" {MAX_EPOCH}epoch results" in log2
    kept = sorted(p.name for p in (exp / "ckpt_keep").iterdir())
    assert kept == sorted(f"{e}epoch.pth" for e in (2, 6, MAX_EPOCH))
    assert not (exp / "2epoch.pth").exists()  # ESPnet's clean-up did run; the kept copy survived it
    assert len(torch.load(exp / "ckpt_keep" / "2epoch.pth", map_location="cpu"))


def _decode(trained, out: Path, key_file: Path, model: str, extra=()):
    from vallr_pin.bin import vsr_inference

    data = trained["data"]
    vsr_inference.main([
        "--config", str(CONF / "decode_vsr.yaml"), "--train_config", str(trained["exp"] / "config.yaml"),
        "--model_file", model, "--data_path_and_name_and_type", f"{data}/feats.scp,video,kaldi_ark",
        "--key_file", str(key_file), "--ref_text", str(data / "text"), "--output_dir", str(out),
        "--log_level", "WARNING", *extra,
    ])


def test_decoding_jobs_merge_and_rerun(trained):
    root, data, exp = trained["root"], trained["data"], trained["exp"]
    lines = (data / "feats.scp").read_text().splitlines()
    keys = [root / "keys.1.scp", root / "keys.2.scp"]
    keys[0].write_text("\n".join(lines[:4]) + "\n")
    keys[1].write_text("\n".join(lines[4:]) + "\n")
    model = str(exp / "ckpt_keep" / f"{MAX_EPOCH}epoch.pth")
    jobs = [root / "decode" / "logdir" / f"output.{j}" for j in (1, 2)]
    for job, key in zip(jobs, keys):
        _decode(trained, job, key, model)
    from vallr_pin.bin import vsr_inference

    out = root / "decode" / "train"
    vsr_inference.main(["--output_dir", str(out), "--merge", *map(str, jobs)])

    refs = _read(data / "text")
    hyp = _read(out / "text")
    assert list(hyp) == sorted(refs)
    assert _cer(refs, hyp) <= 0.10, hyp
    assert _cer(_read(data / "text_pinyin"), _read(out / "pinyin")) <= 0.10
    assert _read(out / "1best_recog" / "text") == hyp

    allowed = set(PINYIN)
    rows = [json.loads(line) for line in (out / "nbest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["utt"] for r in rows] == sorted(refs)
    for r in rows:
        texts = [h["text"] for h in r["nbest"]]
        scores = [h["score"] for h in r["nbest"]]
        assert len(texts) == 10 and len(set(texts)) == 10  # beam 10, 8 tokens: the beam allows K=10
        assert scores == sorted(scores, reverse=True)
        assert texts[0] == hyp[r["utt"]] and r["ref"] == refs[r["utt"]]
        assert set(r["pinyin"].split()) <= allowed
        assert _read(out / "10best_recog" / "text")[r["utt"]] == texts[9]

    # Re-run after removing job 2's marker: only job 2 is decoded again.
    before = [(j / "nbest.jsonl").stat().st_mtime_ns for j in jobs]
    (jobs[1] / ".done").unlink()
    time.sleep(0.01)
    for job, key in zip(jobs, keys):
        _decode(trained, job, key, model)
    after = [(j / "nbest.jsonl").stat().st_mtime_ns for j in jobs]
    assert after[0] == before[0] and after[1] > before[1]
    assert (jobs[1] / ".done").exists()


def test_plain_beam_search_and_ctc_pinyin_agree(trained):
    """BeamSearch (one hypothesis at a time) gives the BatchBeamSearch result; CTC pinyin mode also works,
    and an early kept checkpoint decodes too."""
    root, data, exp = trained["root"], trained["data"], trained["exp"]
    key = root / "keys.all.scp"
    key.write_text((data / "feats.scp").read_text())
    late = str(exp / "ckpt_keep" / f"{MAX_EPOCH}epoch.pth")
    _decode(trained, root / "plain", key, late, ["--beam_search_impl", "plain", "--pinyin_decode_mode", "ctc",
                                                 "--nbest", "3", "--batch_size", "3"])
    _decode(trained, root / "batch", key, late, ["--nbest", "3"])
    assert _read(root / "plain" / "text") == _read(root / "batch" / "text")
    assert _cer(_read(data / "text_pinyin"), _read(root / "plain" / "pinyin")) <= 0.10
    _decode(trained, root / "early", key, str(exp / "ckpt_keep" / "2epoch.pth"), ["--nbest", "2"])
    assert len(_read(root / "early" / "text")) == 8


def test_decode_list_runs_many_jobs_in_one_process_as_separate_runs_would(trained, caplog):
    """--decode_list: one process decodes every line's (checkpoint, keys, options) into its own directory, with
    the command line's options as defaults that a line overrides; the outputs are byte-identical to separate
    runs, finished lines are skipped on a re-run, and a bad line fails before anything is decoded."""
    from vallr_pin.bin import vsr_inference

    root, data, exp = trained["root"], trained["data"], trained["exp"]
    lines = (data / "feats.scp").read_text().splitlines()
    keys = [root / "dl_keys.1.scp", root / "dl_keys.2.scp"]
    keys[0].write_text("\n".join(lines[:3]) + "\n")
    keys[1].write_text("\n".join(lines[3:]) + "\n")
    late, early = (str(exp / "ckpt_keep" / f"{e}epoch.pth") for e in (MAX_EPOCH, 2))
    jobs = [(late, keys[0], root / "dl" / "late.1", []), (late, keys[1], root / "dl" / "late.2", []),
            (early, keys[0], root / "dl" / "early.1", ["--nbest", "2"])]
    dlist = root / "dl" / "decode_list"
    dlist.parent.mkdir(parents=True, exist_ok=True)
    dlist.write_text("# (checkpoint, keys) per line\n" + "".join(
        f"--train_config {exp / 'config.yaml'} --model_file {m} --data_path_and_name_and_type "
        f"{data / 'feats.scp'},video,kaldi_ark --key_file {k} --ref_text {data / 'text'} --output_dir {o} "
        + " ".join(extra) + "\n\n" for m, k, o, extra in jobs))
    common = ["--config", str(CONF / "decode_vsr.yaml"), "--nbest", "3", "--log_level", "WARNING"]
    vsr_inference.main([*common, "--decode_list", str(dlist)])
    for model, key, out, extra in jobs:
        single = root / "dl_single" / out.name
        _decode(trained, single, key, model, ["--nbest", "3", *extra])
        for name in ("nbest.jsonl", "text", "pinyin", ".done"):
            assert (out / name).read_bytes() == (single / name).read_bytes(), (out, name)
    rows = [json.loads(ln) for ln in (jobs[2][2] / "nbest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and max(len(r["nbest"]) for r in rows) == 2  # the line's --nbest 2 won
    assert max(len(json.loads(ln)["nbest"]) for ln in (jobs[0][2] / "nbest.jsonl").read_text().splitlines()) == 3

    # re-run: only the line whose marker is gone decodes again
    before = [(o / "nbest.jsonl").stat().st_mtime_ns for _, _, o, _ in jobs]
    (jobs[1][2] / ".done").unlink()
    time.sleep(0.01)
    vsr_inference.main([*common, "--decode_list", str(dlist)])
    after = [(o / "nbest.jsonl").stat().st_mtime_ns for _, _, o, _ in jobs]
    assert after[0] == before[0] and after[2] == before[2] and after[1] > before[1]

    # a bad last line stops the run before the first line decodes
    bad = root / "dl" / "bad_list"
    (root / "dl" / "fresh").mkdir()
    bad.write_text(f"--train_config {exp / 'config.yaml'} --model_file {late} --data_path_and_name_and_type "
                   f"{data / 'feats.scp'},video,kaldi_ark --output_dir {root / 'dl' / 'fresh' / 'a'}\n"
                   f"--train_config {exp / 'config.yaml'} --model_file {late} --output_dir {root / 'dl' / 'b'}\n")
    with pytest.raises(SystemExit, match="1"):  # one ERROR line (vallr_pin.cli.user_errors), exit status 1
        vsr_inference.main([*common, "--decode_list", str(bad)])
    assert "bad_list:2: --data_path_and_name_and_type required" in caplog.text
    assert not any((root / "dl" / "fresh").iterdir())
    bad.write_text(f"--output_dir {root / 'x'} --merge {root / 'y'}\n")
    with pytest.raises(SystemExit, match="1"):
        vsr_inference.main([*common, "--decode_list", str(bad)])
    assert "--merge is not allowed" in caplog.text


def test_pinyin_rescoring_reranks_the_beam_by_the_pinyin_branch(trained):
    """--pinyin_rescore_weight w: every hypothesis's score becomes its beam score + w * the pinyin branch's
    joint CTC/attention log-likelihood of its reading, the N-best is re-sorted by that, and the pinyin score
    itself is what the branch says (CTC part = -CTC loss of the reading; a wrong reading scores lower)."""
    from vallr_pin.decoding.search import VideoToText

    data, exp = trained["data"], trained["exp"]
    model = str(exp / "ckpt_keep" / f"{MAX_EPOCH}epoch.pth")
    opts = dict(train_config=str(exp / "config.yaml"), model_file=model, beam_size=10, nbest=10,
                pinyin_ctc_weight=0.3)
    base, voted = VideoToText(**opts), VideoToText(**opts, pinyin_rescore_weight=2.0)
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    refs = _read(data / "text")
    utt = sorted(refs)[0]
    from vallr_pin.tasks.vsr import VSRTask

    pre = VSRTask.build_preprocess_fn(base.train_args, train=False)
    video = torch.from_numpy(pre(utt, {"video": feats[utt]})["video"]).float().unsqueeze(0)
    lengths = torch.tensor([video.size(1)])
    plain, rescored = base(video, lengths)[0], voted(video, lengths)[0]
    beam = {t: s for t, _, s in plain.nbest}
    texts = [t for t, _, _ in rescored.nbest]
    assert set(texts) == set(beam)  # same beam, re-ranked
    with torch.no_grad():
        enc, _ = voted.model.encode(video, lengths)
        py = dict(zip(texts, voted.pinyin_scores(enc[0], [toks for _, toks, _ in rescored.nbest])))
    for t, _, s in rescored.nbest:
        assert s == pytest.approx(beam[t] + 2.0 * py[t], abs=1e-3)
    assert [s for _, _, s in rescored.nbest] == sorted((s for _, _, s in rescored.nbest), reverse=True)

    # the branch's score of the true reading beats a reading with one character swapped for another syllable
    ref = refs[utt]
    wrong = ref[:-1] + next(c for c in CHARS if c != ref[-1])
    with torch.no_grad():
        good, bad = voted.pinyin_scores(enc[0], [ref, wrong])
        logp = voted.model.pinyin_ctc.log_softmax(enc).transpose(0, 1)
        target = torch.tensor([PINYIN.index(p) + 2 for p in _read(data / "text_pinyin")[utt].split()])
        ctc = -torch.nn.functional.ctc_loss(logp, target.unsqueeze(0), torch.tensor([enc.size(1)]),
                                            torch.tensor([len(target)]), reduction="sum")
        voted.pinyin_ctc_weight = 1.0
        assert voted.pinyin_scores(enc[0], [ref])[0] == pytest.approx(float(ctc), abs=1e-3)
    assert good > bad
    # an <unk> character token reads as the pinyin <unk>; the Hanzi around it keep their readings
    assert VideoToText.reading(["人", "<unk>", "国", "中"]) == ["ren", "<unk>", "guo", "zhong"]

    with pytest.raises(ValueError, match="needs a dual model"):
        VideoToText(train_config=str(_char_only_config(trained)), model_file=model, pinyin_rescore_weight=1.0)


def _char_only_config(trained) -> Path:
    """The fixture's training config.yaml made char-only (no pinyin branch), for the dual-only options."""
    path = trained["root"] / "char.yaml"
    if not path.exists():
        char_cfg = yaml.safe_load((trained["exp"] / "config.yaml").read_text(encoding="utf-8"))
        char_cfg["model_conf"]["char_weight"] = 1.0
        char_cfg["pinyin_decoder"] = "none"
        char_cfg.pop("pinyin_decoder_conf", None)
        path.write_text(yaml.safe_dump(char_cfg, allow_unicode=True), encoding="utf-8")
    return path


def test_pinyin_reading_ctc_maps_each_character_to_the_best_of_its_readings():
    """PinyinReadingCTC: a character's column is, frame by frame, the best pinyin log-posterior of its readings
    (行 = max(xing, hang)); <blank>, <unk> and <sos/eos> map to their pinyin namesakes, and a non-Hanzi token or
    a Hanzi whose reading the pinyin list lacks to <unk>."""
    from vallr_pin.decoding.search import PinyinReadingCTC

    class FixedCTC(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def log_softmax(self, hs):
            return torch.log_softmax(self.logits.expand(hs.size(0), -1, -1), dim=-1)

    pinyin_tokens = ["<blank>", "<unk>", "hang", "ren", "xing", "<sos/eos>"]
    chars = ["<blank>", "<unk>", "行", "人", "A", "龘", "<sos/eos>"]
    logits = torch.randn(1, 7, len(pinyin_tokens), generator=torch.Generator().manual_seed(0))
    reader = PinyinReadingCTC(FixedCTC(logits), chars, pinyin_tokens)
    got = reader.log_softmax(torch.zeros(2, 7, 3))
    py = torch.log_softmax(logits, dim=-1).expand(2, -1, -1)
    assert got.shape == (2, 7, len(chars))
    col = {t: i for i, t in enumerate(pinyin_tokens)}
    expected = {"<blank>": py[..., col["<blank>"]], "<unk>": py[..., col["<unk>"]],
                "行": torch.maximum(py[..., col["xing"]], py[..., col["hang"]]), "人": py[..., col["ren"]],
                "A": py[..., col["<unk>"]], "龘": py[..., col["<unk>"]], "<sos/eos>": py[..., col["<sos/eos>"]]}
    for i, tok in enumerate(chars):
        assert torch.equal(got[..., i], expected[tok]), tok


def test_pinyin_ctc_in_the_character_search_scores_each_hypothesis_by_its_reading(trained, caplog):
    """--pinyin_search_weight v: the character beam search gets a second CTC prefix scorer, weighted v, whose
    accumulated score of each hypothesis that ended by choosing <sos/eos> is the CTC log-likelihood of its
    characters under the pinyin branch's posteriors read through the characters; the decode still reads the
    training utterances; the decode signature and a packed model carry it and --pre_beam_ratio (how many
    candidates the CTC scorers see); a char-only model refuses it."""
    from vallr_pin.decoding.search import VideoToText
    from vallr_pin.tasks.vsr import VSRTask

    data, exp = trained["data"], trained["exp"]
    model = str(exp / "ckpt_keep" / f"{MAX_EPOCH}epoch.pth")
    searched = VideoToText(train_config=str(exp / "config.yaml"), model_file=model, beam_size=6, nbest=6,
                           ctc_weight=0.3, pinyin_search_weight=0.7)
    assert searched.beam_search.weights["pinyin_ctc"] == 0.7
    reader = searched.beam_search.scorers["pinyin_ctc"].ctc
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    refs = _read(data / "text")
    pre = VSRTask.build_preprocess_fn(searched.train_args, train=False)
    hyps_1best, checked = {}, 0
    for utt in sorted(refs):
        video = torch.from_numpy(pre(utt, {"video": feats[utt]})["video"]).float().unsqueeze(0)
        lengths = torch.tensor([video.size(1)])
        with torch.no_grad():
            enc, _ = searched.model.encode(video, lengths)
            hyps = searched.beam_search(x=enc[0], maxlenratio=0.0, minlenratio=0.0)
            logp = reader.log_softmax(enc).transpose(0, 1)  # (T, 1, V_char)
        hyps_1best[utt] = "".join(searched._ids_to_tokens(hyps[0].yseq[1:-1].tolist(), searched.token_list))
        # a hypothesis that reached the maximum length (maxlenratio 0: the encoder length) gets <sos/eos>
        # appended unscored (ESPnet): its CTC scores, the character CTC's too, are then prefix scores; only the
        # others chose <sos/eos> and are whole sentences
        for h in (h for h in hyps if len(h.yseq) < enc.size(1) + 2):
            ids = h.yseq[1:-1]
            ll = -torch.nn.functional.ctc_loss(logp, ids.unsqueeze(0), torch.tensor([enc.size(1)]),
                                               torch.tensor([len(ids)]), reduction="sum", zero_infinity=False)
            if torch.isinf(ll):  # a reading the frames cannot hold: ESPnet's logzero
                assert float(h.scores["pinyin_ctc"]) <= -1e9
            else:
                assert float(h.scores["pinyin_ctc"]) == pytest.approx(float(ll), abs=1e-3)
            checked += 1
    assert checked >= len(refs) // 2
    assert _cer(refs, hyps_1best) <= 0.10, hyps_1best

    # the decode's signature names the option only when it is on (a decode from before it keeps its signature),
    # and a packed model's decoding options carry it to the recognizer
    from vallr_pin.bin import vsr_inference
    from vallr_pin.decoding.jobs import signature
    from vallr_pin.packing import decode_kwargs

    base = ["--train_config", str(exp / "config.yaml"), "--model_file", model, "--output_dir", "x",
            "--data_path_and_name_and_type", f"{data}/feats.scp,video,kaldi_ark"]
    parser = vsr_inference.get_parser()
    assert "pinyin_search_weight" not in signature(parser.parse_args(base))["options"]
    on = signature(parser.parse_args(base + ["--pinyin_search_weight", "0.3"]))
    assert on["options"]["pinyin_search_weight"] == 0.3
    assert decode_kwargs({"beam_size": 4, "pinyin_search_weight": 0.3}) == {"beam_size": 4,
                                                                             "pinyin_search_weight": 0.3}
    # --pre_beam_ratio: how many candidates per step the CTC scorers (both) see; ESPnet's 1.5 keeps the old signature
    assert "pre_beam_ratio" not in signature(parser.parse_args(base + ["--pre_beam_ratio", "1.5"]))["options"]
    assert signature(parser.parse_args(base + ["--pre_beam_ratio", "3"]))["options"]["pre_beam_ratio"] == 3.0
    assert decode_kwargs({"pre_beam_ratio": 3.0}) == {"pre_beam_ratio": 3.0}
    assert searched.beam_search.pre_beam_size == int(1.5 * 6)
    wide = VideoToText(train_config=str(exp / "config.yaml"), model_file=model, beam_size=6, nbest=6,
                       ctc_weight=0.3, pinyin_search_weight=0.7, pre_beam_ratio=3.0)
    assert wide.beam_search.pre_beam_size == 18 and wide.pinyin_beam_search.pre_beam_size == int(1.5 * 5)

    # a char-only model: refused by the decoder, and by a decode job before any model is loaded
    char_cfg = _char_only_config(trained)
    with pytest.raises(ValueError, match="pinyin_search_weight 1.0 needs a dual model"):
        VideoToText(train_config=str(char_cfg), model_file=model, pinyin_search_weight=1.0)
    caplog.clear()
    with pytest.raises(SystemExit, match="1"):
        vsr_inference.main(["--train_config", str(char_cfg), "--model_file", model,
                            "--data_path_and_name_and_type", f"{data}/feats.scp,video,kaldi_ark",
                            "--output_dir", str(trained["root"] / "char_search_decode"),
                            "--pinyin_search_weight", "0.3"])
    assert "--pinyin_search_weight 0.3 need a dual model" in caplog.text
    assert not (trained["root"] / "char_search_decode").exists()


def _train_char_lm(trained) -> Path:
    """An ESPnet character LM (ESPnet's lm_train, through vallr_pin.bin.lm_train, 2 epochs) on the fixture's
    transcripts, with its token list: what vsr.sh stage 4 trains with --use_lm true."""
    root, data = trained["root"], trained["data"]
    lm_dir = root / "lm"
    if (lm_dir / "valid.loss.best.pth").exists():
        return lm_dir
    (root / "lm.yaml").write_text(yaml.safe_dump({
        "lm": "seq_rnn", "lm_conf": {"unit": 32, "nlayers": 1}, "optim": "adam", "optim_conf": {"lr": 0.01},
        "max_epoch": 2, "batch_type": "folded", "batch_size": 4, "num_workers": 0, "seed": 0,
        "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1}), encoding="utf-8")
    common = [sys.executable, "-m", "vallr_pin.bin.lm_train", "--config", str(root / "lm.yaml"), "--ngpu", "0",
              "--token_type", "char", "--token_list", str(data / "char_tokens.txt"), "--use_preprocessor", "true",
              "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none", "--bpemodel", "none",
              "--train_data_path_and_name_and_type", f"{data}/text,text,text",
              "--valid_data_path_and_name_and_type", f"{data}/text,text,text"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(common + ["--collect_stats", "true", "--output_dir", str(root / "lm_stats"),
                             "--train_shape_file", str(data / "text"), "--valid_shape_file", str(data / "text")],
                   check=True, env=env, capture_output=True)
    subprocess.run(common + ["--output_dir", str(lm_dir), "--fold_length", "150",
                             "--train_shape_file", str(root / "lm_stats/train/text_shape"),
                             "--valid_shape_file", str(root / "lm_stats/valid/text_shape")],
                   check=True, env=env, capture_output=True)
    return lm_dir


def test_character_lm_is_fused_into_the_character_beam_search(trained):
    """--lm_weight w with the LM of stage 4: the character search has it as a scorer of weight w, the LM score of
    every final hypothesis is the LM's own log-probability of its tokens and <sos/eos> (so the token lists line
    up), the pinyin search has no LM, and the decode's signature names the LM by content (a new LM re-decodes)
    while a decode without one keeps the signature it had before LMs existed."""
    from vallr_pin.lean_imports import import_lm_task

    LMTask = import_lm_task()  # (a plain import of espnet2.tasks.lm tries the network: lean_imports)
    from vallr_pin.bin.vsr_inference import get_parser
    from vallr_pin.decoding.jobs import signature
    from vallr_pin.decoding.search import VideoToText, load_lm
    from vallr_pin.tasks.vsr import VSRTask

    data, exp = trained["data"], trained["exp"]
    lm_dir = _train_char_lm(trained)
    lm_cfg, lm_file = str(lm_dir / "config.yaml"), str(lm_dir / "valid.loss.best.pth")
    model = str(exp / "ckpt_keep" / f"{MAX_EPOCH}epoch.pth")
    v = VideoToText(train_config=str(exp / "config.yaml"), model_file=model, beam_size=4, nbest=4,
                    lm_train_config=lm_cfg, lm_file=lm_file, lm_weight=0.7)
    assert v.beam_search.weights["lm"] == 0.7 and "lm" in v.beam_search.full_scorers
    assert "lm" not in v.pinyin_beam_search.full_scorers

    feats = kaldiio.load_scp(str(data / "feats.scp"))
    utt = sorted(feats)[0]
    pre = VSRTask.build_preprocess_fn(v.train_args, train=False)
    video = torch.from_numpy(pre(utt, {"video": feats[utt]})["video"]).float().unsqueeze(0)
    lm, _ = LMTask.build_model_from_file(lm_cfg, lm_file, "cpu")
    with torch.no_grad():
        enc, _ = v.model.encode(video, torch.tensor([video.size(1)]))
        hyps = v.beam_search(x=enc[0], maxlenratio=0.0, minlenratio=0.0)
        assert hyps
        eos, maxlen = len(v.token_list) - 1, enc.size(1)  # maxlenratio 0: up to the encoder length
        for hyp in hyps:
            # a hypothesis still running at the maximum length gets an <eos> appended that nothing scored
            forced = len(hyp.yseq) == maxlen + 2
            ids = torch.tensor([hyp.yseq[1:-1].tolist()])
            nll, _ = lm.nll(ids, torch.tensor([ids.size(1)]))  # per token, <sos/eos> added by the LM itself
            expected = -float(nll[0, : ids.size(1)].sum() if forced else nll[0].sum())
            assert float(hyp.scores["lm"]) == pytest.approx(expected, abs=1e-3), (hyp.yseq.tolist(), forced)
        assert VideoToText(train_config=str(exp / "config.yaml"), model_file=model, beam_size=4, nbest=4,
                           lm_train_config=lm_cfg, lm_file=lm_file, lm_weight=0.0).beam_search.weights.get("lm") is None

    with pytest.raises(ValueError, match="another token list"):
        load_lm(lm_cfg, lm_file, list(reversed(v.token_list)), "cpu")
    with pytest.raises(FileNotFoundError, match="stage 4"):
        load_lm(lm_cfg, str(lm_dir / "no.pth"), v.token_list, "cpu")

    base = ["--train_config", str(exp / "config.yaml"), "--model_file", model, "--output_dir", "x",
            "--data_path_and_name_and_type", f"{data}/feats.scp,video,kaldi_ark"]
    no_lm = signature(get_parser().parse_args(base))
    assert not any(k.startswith("lm") for k in no_lm["options"])
    with_lm = signature(get_parser().parse_args(base + ["--lm_weight", "0.7", "--lm_train_config", lm_cfg,
                                                        "--lm_file", lm_file]))
    assert with_lm["options"]["lm_weight"] == 0.7
    import hashlib

    assert with_lm["options"]["lm_file"][2] == hashlib.sha1(Path(lm_file).read_bytes()).hexdigest()

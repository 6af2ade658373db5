"""Stages 7-9 through the real ms-swift path on a tiny Qwen3 made in the test (CPU, random init).

Covers: the stage-7 JSONL loads and encodes with ms-swift's own dataset loader and chat template; training sample
and inference request are the same prompt byte for byte (and the same token ids); `swift sft` LoRA (r=8,
alpha=32) runs on CPU and the adapter loads with peft; llm_refine runs end to end; batched generation equals
one-at-a-time generation (left padding is right).
"""

import json
import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("swift")

from vallr_pin.bin import build_llm_data, llm_refine, llm_sft  # noqa: E402
from vallr_pin.bin.make_tiny_llm import make_tiny_llm  # noqa: E402
from vallr_pin.llm.nbest import read_nbest_jsonl  # noqa: E402
from vallr_pin.text.pinyin import pinyin_string  # noqa: E402

CONF = os.path.join(os.path.dirname(__file__), "..", "egs", "TEMPLATE", "vsr1", "conf", "llm_sft_tiny.yaml")
SENTS = ["今天天气很好", "我们明天去北京", "他喜欢喝绿茶", "这个问题很难回答", "请你帮我买一本书", "我的朋友在学校学习汉语",
         "外面下雨了", "你吃饭了吗"]
# homophone / look-alike substitutions a lip reader makes
CONFUSE = {"天": "田", "京": "经", "茶": "查", "答": "达", "书": "树", "语": "雨", "雨": "语", "饭": "反",
           "好": "号", "北": "被"}


def _hyps(sent, k):
    """k-th checkpoint's N-best: early checkpoints make more substitutions."""
    bad = "".join(CONFUSE.get(c, c) if (i + k) % 2 == 0 else c for i, c in enumerate(sent))
    return [bad, sent] if k < 2 else [sent, bad]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("llm")
    text = d / "train_text"
    text.write_text("".join(f"spk01-spk01_{i:03d} {s}\n" for i, s in enumerate(SENTS)), encoding="utf-8")
    model = d / "tiny"
    make_tiny_llm([str(text)], str(model), vocab_size=1500, hidden=64, layers=2, heads=4, kv_heads=2,
                  max_pos=1024, steps=0, max_phrases=300, seed=0)
    paths = []
    for k, tag in enumerate(["early", "mid", "late"]):
        p = d / f"nbest_{tag}.jsonl"
        with open(p, "w", encoding="utf-8") as f:
            for i, s in enumerate(SENTS):
                f.write(json.dumps({"utt": f"spk01-spk01_{i:03d}", "pinyin": pinyin_string(s), "ref": s,
                                    "nbest": [{"text": h, "score": -j} for j, h in enumerate(_hyps(s, k))]},
                                   ensure_ascii=False) + "\n")
        paths.append(f"{tag}={p}")
    stats = build_llm_data.main(["--nbest", *paths, "--dev-fraction", "0.25", "--out-dir", str(d / "llm_data")])
    return {"dir": d, "model": model, "data": d / "llm_data", "nbest_late": d / "nbest_late.jsonl",
            "stats": stats}


@pytest.fixture(scope="module")
def adapter(work):
    out = work["dir"] / "llm_lora"
    ckpt = llm_sft.main(["--config", CONF, "--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
                         "--dev", str(work["data"] / "dev.jsonl"), "--output-dir", str(out), "--device", "cpu",
                         "--", "--max_steps", "12", "--save_steps", "6", "--eval_steps", "6",
                         "--learning_rate", "5e-3"])
    return out, ckpt


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_make_tiny_llm_pretrains_and_loads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = tmp_path / "sents.txt"
    text.write_text("\n".join(SENTS) + "\n", encoding="utf-8")
    summary = make_tiny_llm([str(text)], str(tmp_path / "m"), vocab_size=800, hidden=32, layers=1, heads=2,
                            kv_heads=1, steps=15, batch_size=4, block_size=32, lr=1e-2, max_phrases=100)
    assert summary["last_loss"] < summary["first_loss"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.model_type == "qwen3" and model.config.vocab_size == len(tok)
    chat = tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    # byte-level BPE: any Hanzi round-trips, even one never seen in training
    assert tok.decode(tok("龘今天", add_special_tokens=False)["input_ids"]) == "龘今天"
    assert model.generation_config.eos_token_id[0] == tok.convert_tokens_to_ids("<|im_end|>")


def test_data_loads_and_encodes_with_ms_swift(work):
    from swift import get_processor, get_template, load_dataset

    train, _ = load_dataset([str(work["data"] / "train.jsonl")])
    rows = _rows(work["data"] / "train.jsonl")
    assert len(train) == len(rows) == work["stats"]["train"]["n_out"] > 0
    proc = get_processor(str(work["model"]), model_type="qwen3")
    tmpl = get_template(proc, template_type="qwen3_nothinking")
    tmpl.set_mode("train")
    for sample, row in zip(train, rows):
        enc = tmpl.encode(sample)
        # loss only on the answer: the reference and the end-of-turn token
        answer = proc.decode([t for t in enc["labels"] if t != -100])
        assert answer.strip() == row["messages"][-1]["content"] + "<|im_end|>"
        assert "<think>" not in proc.decode(enc["input_ids"])  # non-thinking template


def test_training_and_inference_prompts_identical(work):
    from swift import InferRequest, get_processor, get_template

    from vallr_pin.llm.refine import request_messages

    entries = {e.utt: e for e in read_nbest_jsonl(work["nbest_late"])}
    late_rows = [r for r in _rows(work["data"] / "train.jsonl") if r["ckpt"] == "late"]
    assert late_rows
    proc = get_processor(str(work["model"]), model_type="qwen3")
    tmpl = get_template(proc, template_type="qwen3_nothinking")
    for row in late_rows:
        infer_msgs = request_messages(entries[row["utt"]])
        train_msgs = row["messages"][:-1]
        assert json.dumps(infer_msgs, ensure_ascii=False) == json.dumps(train_msgs, ensure_ascii=False)
        tmpl.set_mode("train")
        train_ids = tmpl.encode({"messages": row["messages"]})["input_ids"]
        tmpl.set_mode("transformers")
        infer_ids = tmpl.encode(InferRequest(messages=infer_msgs))["input_ids"]
        assert train_ids[: len(infer_ids)] == infer_ids


def test_llm_sft_config_and_errors(tmp_path):
    import importlib.util

    import yaml

    main_conf = os.path.join(os.path.dirname(CONF), "llm_sft.yaml")
    conf = yaml.safe_load(open(main_conf, encoding="utf-8"))
    cpu = llm_sft.resolve_options(conf, "cpu", llm_sft.Path(main_conf))
    gpu = llm_sft.resolve_options(conf, "gpu", llm_sft.Path(main_conf))
    for opts in (cpu, gpu):  # the paper's LoRA settings
        assert (opts["tuner_type"], opts["lora_rank"], opts["lora_alpha"], opts["learning_rate"],
                opts["target_modules"]) == ("lora", 8, 32, 1e-4, "all-linear")
    assert "deepspeed" not in cpu
    if importlib.util.find_spec("deepspeed"):
        assert json.load(open(gpu["deepspeed"]))["zero_optimization"]["stage"] == 2
    argv = llm_sft.to_cli({"lora_rank": 8, "check_model": False, "target_modules": ["q_proj", "v_proj"]})
    assert argv == ["--lora_rank", "8", "--check_model", "false", "--target_modules", "q_proj", "v_proj"]
    with pytest.raises(FileNotFoundError, match="llm_model="):
        llm_sft.main(["--config", CONF, "--model", str(tmp_path / "missing"), "--train", "x.jsonl",
                      "--output-dir", str(tmp_path / "o"), "--log-level", "DEBUG"])


def _sft_error(caplog, argv):
    caplog.clear()
    with pytest.raises(SystemExit) as e:
        llm_sft.main(argv)
    assert e.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def test_llm_sft_dry_run_checks_keys_against_ms_swift_arguments(work, tmp_path, caplog, capsys):
    """Issue 21: a mistyped key passed --dry-run and failed 25 s into the real run."""
    base = ["--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
            "--output-dir", str(tmp_path / "out"), "--device", "cpu", "--dry-run"]
    llm_sft.main(["--config", CONF, *base, "--", "--max_steps", "3", "--no_gradient_checkpointing"])
    assert "--max_steps 3" in capsys.readouterr().out
    typo = tmp_path / "typo.yaml"
    typo.write_text(open(CONF, encoding="utf-8").read().replace("lora_rank:", "lora_rnak:"), encoding="utf-8")
    msg = _sft_error(caplog, ["--config", str(typo), *base])
    assert f"{typo} (section swift:): 'lora_rnak' is not a `swift sft` argument" in msg
    assert "did you mean 'lora_rank'?" in msg
    msg = _sft_error(caplog, ["--config", CONF, *base, "--", "--max_stpes", "3"])
    assert "'max_stpes'" in msg and "'max_steps'" in msg
    not_yaml = tmp_path / "llm_sft.yaml"
    not_yaml.write_text("swift:\n  lora_rank: 8\n  target_modules: [q_proj, v_proj\n", encoding="utf-8")
    assert _sft_error(caplog, ["--config", str(not_yaml), *base]).startswith(f"{not_yaml}: not valid YAML")
    not_yaml.write_text("lora_rank = 8\n", encoding="utf-8")
    assert _sft_error(caplog, ["--config", str(not_yaml), *base]).startswith(f"{not_yaml}: not a YAML mapping")
    assert not (tmp_path / "out").exists()


def test_llm_sft_several_cpu_processes_get_ddp_options_one_gets_none(work, tmp_path, monkeypatch, capsys):
    """Several CPU processes without them all took themselves for rank 0 and raced on ms-swift's checkpoint
    symlink (.ci/run); with gloo alone they trained unsynchronised (test_llm_sft_2proc.py checks the real run).
    One process keeps the recipes' settings. So: use_cpu + gloo exactly when NPROC_PER_NODE x NNODES > 1 on CPU."""
    base = ["--config", CONF, "--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
            "--output-dir", str(tmp_path / "out"), "--dry-run"]

    def command(*extra, **env):
        for k in ("NPROC_PER_NODE", "NNODES"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        llm_sft.main([*base, *extra])
        return capsys.readouterr().out

    def ddp_flags(out):
        return [f for f in ("--use_cpu true", "--ddp_backend gloo") if f in out]

    assert ddp_flags(command("--device", "cpu")) == []
    assert ddp_flags(command("--device", "cpu", NPROC_PER_NODE="2")) == ["--use_cpu true", "--ddp_backend gloo"]
    assert ddp_flags(command("--device", "cpu", NNODES="2")) == ["--use_cpu true", "--ddp_backend gloo"]
    assert ddp_flags(command("--device", "gpu", NPROC_PER_NODE="2")) == []  # transformers picks nccl there
    out = command("--device", "cpu", "--", "--ddp_backend", "mpi", NPROC_PER_NODE="2")  # the user's flag wins
    assert out.rstrip().endswith("--ddp_backend mpi") and "--use_cpu true" in out
    with pytest.raises(ValueError, match="NPROC_PER_NODE='two'"):
        llm_sft.world_size_from_env({"NPROC_PER_NODE": "two"})


def test_llm_sft_says_in_one_line_when_no_sample_fits_max_length(work, tmp_path, caplog):
    """ms-swift drops every sample longer than max_length (truncation_strategy delete) and, when that is all of
    them, stops with a bare TypeError; the wrapper names the file, the lengths and the fix before starting it."""
    out = tmp_path / "out"
    base = ["--config", CONF, "--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
            "--output-dir", str(out), "--device", "cpu"]
    lengths = [n for _, n in llm_sft.sample_lengths(work["data"] / "train.jsonl", str(work["model"]),
                                                    llm_sft.load_config(llm_sft.Path(CONF))["swift"])]
    msg = _sft_error(caplog, [*base, "--", "--max_length", str(min(lengths) - 1)])
    assert msg.startswith(f"{work['data'] / 'train.jsonl'}: none of its {len(lengths)} samples fits max_length "
                          f"{min(lengths) - 1} tokens (shortest {min(lengths)}, longest {max(lengths)}")
    assert not out.exists()  # nothing started, nothing written
    # the lengths are ms-swift's own encoding: the sample that just fits is kept, with a warning for the rest
    long_rows = tmp_path / "train.jsonl"
    rows = _rows(work["data"] / "train.jsonl")
    rows[0]["messages"][-1]["content"] = rows[0]["messages"][-1]["content"] * 40  # a looping decoder's list
    long_rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    caplog.clear()
    with caplog.at_level("WARNING"):
        llm_sft.check_samples_fit([long_rows], str(work["model"]), {"max_length": max(lengths), "model_type": "qwen3",
                                                                   "template": "qwen3_nothinking"}, [])
    warned = [r.getMessage() for r in caplog.records if r.name == "root" and r.levelname == "WARNING"]
    assert len(warned) == 1 and f"1 of {len(rows)} samples are longer than max_length {max(lengths)}" in warned[0]
    # `truncation_strategy left` keeps long samples: nothing to check
    llm_sft.check_samples_fit([long_rows], str(work["model"]), {"max_length": 4}, ["--truncation_strategy", "left"])


def test_llm_sft_failure_leaves_no_empty_run_dir(work, tmp_path, monkeypatch):
    """When `swift sft` fails after making its v<N>-<time>/ dir, a dir with no checkpoint is removed."""
    out = tmp_path / "out"
    (out / "v0-20260101-000000" / "checkpoint-2").mkdir(parents=True)  # an earlier run's resumable work
    fake_swift = ("import os, sys; d = os.path.join(sys.argv[1], 'v1-20260102-000000'); os.makedirs(d); "
                  "open(os.path.join(d, 'args.json'), 'w').write('{}'); sys.exit(3)")
    monkeypatch.setattr(llm_sft, "build_command", lambda args, options: [sys.executable, "-c", fake_swift, str(out)])
    with pytest.raises(SystemExit, match="exit code 3"):
        llm_sft.main(["--config", CONF, "--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
                      "--output-dir", str(out), "--device", "cpu"])
    assert sorted(p.name for p in out.iterdir()) == ["v0-20260101-000000"]


def test_llm_sft_removes_the_empty_run_dir_of_a_killed_run(work, tmp_path, monkeypatch):
    """A stage 8 killed with SIGKILL before ms-swift's first save leaves an empty v<N>-*/ (no wrapper clean-up
    runs); the next run removes it before starting, keeps a run with a checkpoint, and links its own."""
    out = tmp_path / "out"
    (out / "v0-20260101-000000" / "checkpoint-2").mkdir(parents=True)
    (out / "v1-20260102-000000").mkdir()  # killed before its first save
    (out / "v1-20260102-000000" / "args.json").write_text("{}")
    fake_swift = ("import os, sys; d = os.path.join(sys.argv[1], 'v2-20260103-000000', 'checkpoint-4'); "
                  "os.makedirs(d)")
    monkeypatch.setattr(llm_sft, "build_command", lambda args, options: [sys.executable, "-c", fake_swift, str(out)])
    llm_sft.main(["--config", CONF, "--model", str(work["model"]), "--train", str(work["data"] / "train.jsonl"),
                  "--output-dir", str(out), "--device", "cpu"])
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "v0-20260101-000000", "v2-20260103-000000"]
    assert os.readlink(out / "adapter") == os.path.join("v2-20260103-000000", "checkpoint-4")


def test_swift_sft_lora_on_cpu(work, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, ckpt = adapter
    assert (out / "adapter").is_symlink() and (out / "adapter").resolve() == ckpt
    conf = json.loads((ckpt / "adapter_config.json").read_text())
    assert conf["r"] == 8 and conf["lora_alpha"] == 32
    base = AutoModelForCausalLM.from_pretrained(work["model"])
    model = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained (lora_B starts at zero)
    # LoRA covers all linear layers of the decoder (target_modules all-linear)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        conf["target_modules"])
    logs = [json.loads(line) for line in open(next(out.glob("v*-*/logging.jsonl")))]
    losses = [r["loss"] for r in logs if "loss" in r and "eval_loss" not in r]
    assert len(losses) >= 2 and float(losses[-1]) < float(losses[0])


def test_llm_refine_end_to_end(work, adapter, tmp_path):
    out, _ = adapter
    stats = llm_refine.main(["--nbest", str(work["nbest_late"]), "--model", str(work["model"]),
                             "--adapter", str(out / "adapter"), "--out-dir", str(tmp_path / "refine"),
                             "--batch-size", "4", "--threads", "1"])
    entries = read_nbest_jsonl(work["nbest_late"])
    lines = (tmp_path / "refine" / "text").read_text(encoding="utf-8").splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(e.utt for e in entries)
    raw = _rows(tmp_path / "refine" / "raw.jsonl")
    assert len(raw) == len(entries) == stats["n"]
    saved = json.loads((tmp_path / "refine" / "guard_stats.json").read_text())
    assert saved["ok"] + sum(saved["by_reason"].values()) == len(entries)
    for r in raw:
        # a fallback gives the 1-best; an accepted answer is Hanzi only
        assert (r["text"] == r["onebest"]) if r["reason"] else r["text"] and all(
            "\u4e00" <= c <= "\u9fff" for c in r["text"])


def test_batched_generation_equals_one_at_a_time(work, tmp_path):
    from vallr_pin.llm.guard import OutputGuard
    from vallr_pin.llm.refine import Refiner, make_engine

    # A random model with large weights: its greedy output depends strongly on the prompt, so a padding or
    # position-id error in batched generation would show as a different output.
    entries = read_nbest_jsonl(work["nbest_late"])
    engine = make_engine(str(_random_model(work, tmp_path)), None, "transformers", batch_size=4)  # zero-shot
    # a fixed token budget (ratio 0): otherwise each batch's budget follows its longest candidate
    one = Refiner(engine, OutputGuard(), batch_size=1, max_new_ratio=0, max_new_slack=10).refine(entries, False)
    batched = Refiner(engine, OutputGuard(), batch_size=4, max_new_ratio=0, max_new_slack=10).refine(entries, False)
    assert len({r.raw for r in one}) > 1  # outputs depend on the prompt, so the comparison means something
    assert [r.raw for r in batched] == [r.raw for r in one]


def _random_model(work, tmp_path):
    """A copy of the tiny model with large random weights: its scores depend strongly on the input."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(work["model"])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path / "rand")
    AutoTokenizer.from_pretrained(work["model"]).save_pretrained(tmp_path / "rand")
    return tmp_path / "rand"


def test_rescore_logprob_is_the_sft_loss_and_batching_does_not_change_it(work, tmp_path):
    from vallr_pin.llm.guard import OutputGuard
    from vallr_pin.llm.refine import Rescorer, make_engine

    engine = make_engine(str(_random_model(work, tmp_path)), None, "transformers", batch_size=8)
    entries = read_nbest_jsonl(work["nbest_late"])
    convs = [conv for e in entries for conv in Rescorer(engine, OutputGuard())._sequences(e)[1]]
    one = Rescorer(engine, OutputGuard(), batch_size=1).answer_logprobs(convs)
    batched = Rescorer(engine, OutputGuard(), batch_size=8).answer_logprobs(convs)
    assert len(set(round(x, 3) for x in one)) > 1
    assert batched == pytest.approx(one, rel=1e-4, abs=1e-4)  # left/right padding must not leak into scores
    # The score is exactly what SFT trains on: -(mean CE over the label tokens) * number of label tokens.
    tmpl = engine.template
    tmpl.set_mode("train")
    enc = tmpl.encode({"messages": convs[0]})
    tmpl.set_mode("transformers")
    labels = torch.tensor([enc["labels"]])
    with torch.no_grad():
        loss = engine.model(input_ids=torch.tensor([enc["input_ids"]]), labels=labels).loss.item()
    n_answer = int((labels[:, 1:] != -100).sum())
    assert one[0] == pytest.approx(-loss * n_answer, rel=1e-4)


def test_llm_refine_rescore_mode_picks_a_candidate(work, adapter, tmp_path):
    out, _ = adapter
    stats = llm_refine.main(["--nbest", str(work["nbest_late"]), "--model", str(work["model"]),
                             "--adapter", str(out / "adapter"), "--out-dir", str(tmp_path / "rescore"),
                             "--mode", "rescore", "--batch-size", "4", "--threads", "1"])
    assert stats["mode"] == "rescore" and stats["fallback"] == 0
    assert stats["fusion"] == {"llm_weight": 1.0, "vsr_weight": 0.0, "length_bonus": 0.0}
    cands = {e.utt: e.texts[:5] for e in read_nbest_jsonl(work["nbest_late"])}
    rows = _rows(tmp_path / "rescore" / "raw.jsonl")
    for r in rows:
        assert r["text"] in cands[r["utt"]]
        # every candidate's scores are kept (for tune_fusion); by default the LLM alone decides
        assert r["candidates"] == cands[r["utt"]] and len(r["llm_scores"]) == len(r["candidates"])
        assert r["vsr_scores"] == [-j for j in range(len(r["candidates"]))]
        assert r["text"] == r["candidates"][max(range(len(r["candidates"])), key=r["llm_scores"].__getitem__)]
    # the VSR score steers the pick: a dominant positive weight gives back the VSR 1-best everywhere, a dominant
    # negative one the last candidate (so the check cannot pass by the LLM happening to agree with the 1-best)
    for w, k in (("1000", 0), ("-1000", -1)):
        llm_refine.main(["--nbest", str(work["nbest_late"]), "--model", str(work["model"]),
                         "--adapter", str(out / "adapter"), "--out-dir", str(tmp_path / w), "--mode", "rescore",
                         "--rescore-vsr-weight", w, "--batch-size", "4", "--threads", "1"])
        assert all(r["text"] == r["candidates"][k] for r in _rows(tmp_path / w / "raw.jsonl"))
    assert any(len(set(c)) > 1 for c in cands.values())


def test_auto_backend_is_vllm_only_with_vllm_and_cuda(monkeypatch):
    import torch

    from vallr_pin.llm import refine

    for has_vllm, cuda, mode, want in [(True, True, "generate", "vllm"), (True, False, "generate", "transformers"),
                                       (False, True, "generate", "transformers"),
                                       (True, True, "rescore", "transformers")]:
        monkeypatch.setattr(refine, "_has_module", lambda name, v=has_vllm: v and name == "vllm")
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        assert refine.resolve_backend("auto", mode) == want, (has_vllm, cuda, mode)
    assert refine.resolve_backend("vllm", "generate") == "vllm"
    assert llm_refine.get_parser().parse_args(["--nbest", "n", "--model", "m", "--out-dir", "o"]).backend == "auto"

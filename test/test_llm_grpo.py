"""RL with a verifiable reward after SFT (issue 19, item 6): the reward CER(1-best) - CER(answer) + a format term
(vallr_pin/llm/grpo.py), registered in ms-swift's ``orms`` by vallr_pin/llm/swift_plugin/grpo_rewards.py, and
ms-swift's own `swift rlhf --rlhf_type grpo` run by ``llm_sft --rlhf grpo`` on CPU (transformers generation, no
vLLM) from the SFT adapter of a tiny random-init Qwen3 shared by the session (conftest.tiny_llm).

The tiny model's answers are noise, so the run is checked for what GRPO must do whatever the model says: it
starts from the SFT adapter, writes an adapter stage 9 can load, and scores every sampled answer with exactly
this toolkit's reward on that prompt's reference and 1-best (ms-swift's completions.jsonl).
"""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("swift")

from vallr_pin.bin import build_llm_data, llm_sft  # noqa: E402
from llm_testdata import CONFUSE, SENTS  # noqa: E402
from vallr_pin.llm.grpo import (  # noqa: E402
    PLUGIN, answer_text, capped_cer, cer_gain_reward, format_reward, write_grpo_data)
from vallr_pin.text.pinyin import pinyin_string  # noqa: E402

CONF_DIR = os.path.join(os.path.dirname(__file__), "..", "egs", "TEMPLATE", "vsr1", "conf")
TINY = os.path.join(CONF_DIR, "llm_grpo_tiny.yaml")


def test_reward_on_hand_made_answers():
    ref, one = "今天天气很好", "今天田气很好"  # 1-best: one homophone wrong, CER 1/6
    assert capped_cer(ref, one) == pytest.approx(1 / 6)
    cases = [
        ("今天天气很好", 1 / 6, 1.0),                      # fixes the error
        ("今天田气很好", 0.0, 1.0),                        # gives the 1-best back
        ("今天田气很号", 1 / 6 - 2 / 6, 1.0),              # breaks another character
        ("今天天气", 1 / 6 - 2 / 6, 1.0),                  # deletes two
        ("<think>\n\n</think>\n今天天气很好", 1 / 6, 0.0),  # right, but a think block: no format reward
        ("修正后的句子：今天天气很好。", 1 / 6, 0.0),       # label and punctuation
        ("今天天气很好\n我把田改成了天", 1 / 6, 0.0),       # an explanation on a second line
        ("  今天天气很好 \n", 1 / 6, 1.0),                 # surrounding whitespace is fine
        ("", 1 / 6 - 1, 0.0),                            # nothing: CER 1
        ("他们在公园里跑步打球聊天唱歌跳舞还一起吃饭", 1 / 6 - 1, 1.0),  # a hallucination: CER capped at 1
        ("jin tian tian qi hen hao", 1 / 6 - 1, 0.0),     # pinyin, not characters
    ]
    for answer, gain, fmt in cases:
        assert cer_gain_reward(answer, ref, one) == pytest.approx(gain), answer
        assert format_reward(answer) == fmt, answer
    assert answer_text("<think>x</think>答案：今天天气很好！") == "今天天气很好"
    # a right 1-best can only be kept or broken
    assert cer_gain_reward("今天天气很好", ref, ref) == 0.0 and cer_gain_reward("今天田气很好", ref, ref) < 0


def test_plugin_registers_the_rewards_as_ms_swift_calls_them():
    from swift.rewards import orms
    from swift.utils import import_external_file

    import_external_file(PLUGIN)  # what --external_plugins does
    gain, fmt = orms["vsr_cer_gain"](args=None), orms["vsr_format"](args=None)
    completions = ["今天天气很好", "今天田气很号", "好的：今天天气很好"]
    # ms-swift passes the dataset's extra columns as lists (rl_core/grpo_algorithm.compute_rewards_per_func)
    kwargs = {"solution": ["今天天气很好"] * 3, "onebest": ["今天田气很好"] * 3, "trainer_state": None,
              "messages": [[]] * 3, "utt": ["u"] * 3}
    assert gain(completions, **kwargs) == pytest.approx([1 / 6, -1 / 6, 1 / 6])
    assert fmt(completions, **kwargs) == [1.0, 1.0, 0.0]


def test_grpo_rows_from_stage_7(tmp_path):
    src = tmp_path / "train.jsonl"
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "今天天气很好"}], "utt": "spk_1", "ckpt": "late",
           "onebest": "今天田气很好"}
    src.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert write_grpo_data(src, tmp_path / "grpo.jsonl") == 1
    (out,) = [json.loads(ln) for ln in open(tmp_path / "grpo.jsonl", encoding="utf-8")]
    assert out == {"messages": row["messages"][:2], "solution": "今天天气很好", "onebest": "今天田气很好",
                   "utt": "spk_1", "ckpt": "late"}
    del row["onebest"]
    src.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:1: .*re-run stage 7"):
        write_grpo_data(src, tmp_path / "grpo.jsonl")


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_llm):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("grpo")
    nbest = d / "nbest.jsonl"
    with open(nbest, "w", encoding="utf-8") as f:
        for i, s in enumerate(SENTS):
            bad = "".join(CONFUSE.get(c, c) for c in s)
            hyps = [bad, s] if i % 2 else [s, bad]  # half the 1-bests right
            f.write(json.dumps({"utt": f"spk1_{i:03d}", "pinyin": pinyin_string(s), "ref": s,
                                "nbest": [{"text": h, "score": -j} for j, h in enumerate(hyps)]},
                               ensure_ascii=False) + "\n")
    build_llm_data.main(["--nbest", f"late={nbest}", "--dev-fraction", "0", "--out-dir", str(d / "llm_data")])
    sft = d / "llm_lora"
    llm_sft.main(["--config", os.path.join(CONF_DIR, "llm_sft_tiny.yaml"), "--model", str(tiny_llm),
                  "--train", str(d / "llm_data" / "train.jsonl"), "--output-dir", str(sft), "--device", "cpu",
                  "--", "--max_steps", "2", "--save_steps", "2", "--eval_strategy", "no", "--learning_rate", "5e-3"])
    return {"dir": d, "model": tiny_llm, "train": d / "llm_data" / "train.jsonl", "sft": sft}


def test_an_empty_answer_is_trained_on_its_end_of_turn(work):
    """The ms-swift 4.6 bug the plugin works around (swift_plugin/grpo_rewards.patch_empty_completions): an empty
    sampled answer got no label and crashed the GRPO step. When the first assertion fails, ms-swift fixed it
    and the patch can go."""
    from swift import get_processor, get_template
    from swift.rl_core.data import GRPOSample
    from swift.rlhf_trainers import grpo_trainer, utils
    from swift.utils import import_external_file

    import_external_file(PLUGIN)
    proc = get_processor(str(work["model"]), model_type="qwen3")
    tmpl = get_template(proc, template_type="qwen3_nothinking")
    tmpl.set_mode("train")
    answered = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好"}]
    empty = [answered[0], {"role": "assistant", "content": ""}]
    ids = proc("你好<|im_end|>", add_special_tokens=False)["input_ids"]
    assert all(t == -100 for t in utils.encode_sample(GRPOSample(messages=empty), tmpl)["labels"])
    fixed = grpo_trainer.encode_sample(GRPOSample(messages=empty), tmpl)
    assert proc.decode([t for t in fixed["labels"] if t != -100]).startswith("<|im_end|>")
    normal = GRPOSample(messages=answered, response_token_ids=ids)
    assert grpo_trainer.encode_sample(normal, tmpl) == utils.encode_sample(normal, tmpl)


def _dry_run(capsys, conf, work, tmp_path, *extra, device="cpu"):
    llm_sft.main(["--rlhf", "grpo", "--config", conf, "--model", str(work["model"]), "--train", str(work["train"]),
                  "--init-adapter", str(work["sft"] / "adapter"), "--output-dir", str(tmp_path / "out"),
                  "--device", device, "--dry-run", *extra])
    return capsys.readouterr().out.split()


def test_grpo_configs_are_swift_rlhf_arguments(work, tmp_path, capsys, caplog):
    root = os.path.join(os.path.dirname(__file__), "..", "egs")
    for recipe in ("TEMPLATE", "mini_cnvsrc", "cnvsrc", "cmlr"):
        for device in ("cpu", "gpu"):
            conf = os.path.join(root, recipe, "vsr1", "conf", "llm_grpo.yaml")
            cmd = _dry_run(capsys, conf, work, tmp_path, device=device)
            assert cmd[1:6] == ["-m", "swift.cli.main", "rlhf", "--rlhf_type", "grpo"]
            assert cmd[cmd.index("--external_plugins") + 1] == PLUGIN
            assert cmd[cmd.index("--reward_funcs") + 1:cmd.index("--reward_funcs") + 3] == ["vsr_cer_gain",
                                                                                           "vsr_format"]
            assert cmd[cmd.index("--adapters") + 1] == str(work["sft"] / "adapter")
            beta = float(cmd[cmd.index("--beta") + 1])
            # a KL term needs its reference policy: the SFT adapter
            assert ("--ref_adapters" in cmd) == (beta != 0), (recipe, beta)
            assert cmd[cmd.index("--dataset") + 1] == str(tmp_path / "out" / "grpo_data" / "train.jsonl")
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    cmd = _dry_run(capsys, TINY, work, tmp_path, "--", "--beta", "0.1")
    assert cmd[cmd.index("--ref_adapters") + 1] == str(work["sft"] / "adapter")
    typo = tmp_path / "typo.yaml"
    typo.write_text(open(TINY, encoding="utf-8").read().replace("num_generations:", "num_generation:"),
                    encoding="utf-8")
    caplog.clear()
    with pytest.raises(SystemExit):
        _dry_run(capsys, str(typo), work, tmp_path)
    (err,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "'num_generation' is not a `swift rlhf` argument" in err and "'num_generations'" in err


def test_grpo_on_cpu_continues_the_sft_adapter_and_uses_this_reward(work, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "grpo"
    ckpt = llm_sft.main(["--rlhf", "grpo", "--config", TINY, "--model", str(work["model"]),
                         "--init-adapter", str(work["sft"] / "adapter"), "--train", str(work["train"]),
                         "--output-dir", str(out), "--device", "cpu",
                         "--", "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1",
                         "--log_completions", "true"])
    assert (out / "adapter").is_symlink() and (out / "adapter").resolve() == ckpt
    conf = json.loads((ckpt / "adapter_config.json").read_text())
    sft_conf = json.loads((work["sft"] / "adapter" / "adapter_config.json").read_text())
    assert (conf["r"], conf["lora_alpha"]) == (sft_conf["r"], sft_conf["lora_alpha"]) == (8, 32)
    # it continued the SFT adapter rather than a fresh LoRA (whose lora_B starts at zero): after 3 small steps
    # every lora_B is still close to the SFT one, which is not zero
    from safetensors.torch import load_file

    grpo_w = load_file(str(ckpt / "adapter_model.safetensors"))
    sft_w = load_file(str((work["sft"] / "adapter").resolve() / "adapter_model.safetensors"))
    lora_b = [k for k in sft_w if "lora_B" in k]
    assert lora_b and set(lora_b) <= set(grpo_w)
    for k in lora_b:
        assert sft_w[k].norm() > 0, k
        assert (grpo_w[k] - sft_w[k]).norm() < 0.5 * sft_w[k].norm(), k
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(work["model"]), str(out / "adapter"))
    logs = [json.loads(ln) for ln in open(next(out.glob("v*-*/logging.jsonl")), encoding="utf-8")]
    steps = [r for r in logs if "rewards/CerGain/mean" in r]
    steps = [r for r in steps if "train_runtime" not in r]  # the last row is the run summary
    assert len(steps) == 3 and all("rewards/OneLineHanzi/mean" in r for r in steps)
    # every sampled answer was scored with this toolkit's reward on its own prompt's reference and 1-best
    rows = {json.dumps(r["messages"][1]["content"], ensure_ascii=False): r
            for r in map(json.loads, open(out / "grpo_data" / "train.jsonl", encoding="utf-8"))}
    n, logged_steps = 0, set()
    for line in open(next(out.glob("v*-*/completions.jsonl")), encoding="utf-8"):
        rec = json.loads(line)
        logged_steps |= set(rec["step"])
        for prompt, completion, gain, fmt, solution in zip(rec["prompt"], rec["completion"], rec["CerGain"],
                                                            rec["OneLineHanzi"], rec["solution"]):
            (row,) = [r for k, r in rows.items() if json.loads(k) in prompt]
            assert solution == row["solution"]
            assert gain == pytest.approx(cer_gain_reward(completion, row["solution"], row["onebest"]))
            assert fmt == format_reward(completion)
            n += 1
    # 3 steps x 8 completions (2 prompts x num_generations 4); ms-swift may log a step's table more than once
    assert logged_steps == {"1", "2", "3"} and n >= 3 * 8


def test_grpo_without_msgspec_is_one_clear_error(work, tmp_path, monkeypatch, caplog):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "msgspec" else real(name, *a))
    with pytest.raises(SystemExit):
        llm_sft.main(["--rlhf", "grpo", "--config", TINY, "--model", str(work["model"]), "--train",
                      str(work["train"]), "--output-dir", str(tmp_path / "o"), "--device", "cpu"])
    (err,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "msgspec" in err and "pip install msgspec" in err

"""Unit tests of the VSR model pieces: frontend shapes, the SAN-M decoder adapter, eq. (12), config checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)

from vallr_pin.model import DualDecoderVSRModel  # noqa: E402
from vallr_pin.nets.frontend import Conv3dResNetFrontend  # noqa: E402
from vallr_pin.nets.sanm_decoder import SANMDecoder  # noqa: E402
from vallr_pin.tasks.vsr import VSRTask  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "egs" / "TEMPLATE" / "vsr1" / "conf"
CHARS = ["<blank>", "<unk>", "你", "好", "世", "界", "<sos/eos>"]
PINYIN = ["<blank>", "<unk>", "ni", "hao", "shi", "jie", "<sos/eos>"]


def _token_files(tmp_path: Path):
    (tmp_path / "char.txt").write_text("\n".join(CHARS) + "\n", encoding="utf-8")
    (tmp_path / "py.txt").write_text("\n".join(PINYIN) + "\n", encoding="utf-8")
    return str(tmp_path / "char.txt"), str(tmp_path / "py.txt")


def _args(tmp_path: Path, config: str, **overrides):
    cfg = yaml.safe_load((CONF / config).read_text(encoding="utf-8"))
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    char, py = _token_files(tmp_path)
    return VSRTask.get_parser().parse_args(
        ["--config", str(path), "--token_list", char, "--pinyin_token_list", py, "--output_dir", str(tmp_path)]
    )


def test_frontend_shapes_and_lengths():
    fe = Conv3dResNetFrontend(output_size=24, stem_channels=8, stage_channels=(8, 16), blocks_per_stage=(1, 1))
    y, lens = fe(torch.randn(2, 11, 28 * 28), torch.tensor([11, 7]))
    assert y.shape == (2, 11, 24) and lens.tolist() == [11, 7]
    fe2 = Conv3dResNetFrontend(output_size=24, stem_channels=8, stage_channels=(8,), blocks_per_stage=(1,),
                               trunk="resnet50", temporal_stride=2)
    y2, lens2 = fe2(torch.randn(2, 11, 28 * 28), torch.tensor([11, 7]))
    assert y2.shape == (2, 6, 24) and lens2.tolist() == [6, 4]
    assert fe2.trunk_channels == 8 * 4  # Bottleneck expansion


def test_sanm_decoder_step_by_step_equals_teacher_forcing():
    """The adapter's batch_score (what BatchBeamSearch calls) must reproduce the training-time forward."""
    from espnet.nets.scorer_interface import BatchScorerInterface

    torch.manual_seed(0)
    dec = SANMDecoder(vocab_size=9, encoder_output_size=16, attention_heads=2, linear_units=32, num_blocks=3,
                      att_layer_num=2, kernel_size=5).eval()
    assert isinstance(dec, BatchScorerInterface)
    mem = torch.randn(1, 7, 16)
    ys = torch.tensor([[8, 3, 4, 2, 5, 6]])
    full = torch.log_softmax(dec(mem, torch.tensor([7]), ys, torch.tensor([6]))[0], dim=-1)[0]
    states = [None, None, None]
    for t in range(ys.size(1)):
        # three identical hypotheses in a batch, as BatchBeamSearch stacks them
        logp, states = dec.batch_score(ys[:, : t + 1].expand(3, -1), states, mem.expand(3, -1, -1))
        assert torch.allclose(logp[2], full[t], atol=1e-5)
    single, _ = dec.score(ys[0, :2], None, mem[0])
    assert single.shape == (9,)


def test_sanm_decoder_refuses_look_ahead():
    with pytest.raises(ValueError, match="causal"):
        SANMDecoder(vocab_size=9, encoder_output_size=16, kernel_size=5, sanm_shfit=0)


def test_loss_is_equation_12(tmp_path):
    torch.manual_seed(0)
    args = _args(tmp_path, "train_vsr_dual_tiny.yaml", model_conf={"char_weight": 0.7, "ctc_weight": 0.4})
    model = VSRTask.build_model(args).eval()
    video = torch.randn(2, 12, 88 * 88)
    vlen = torch.tensor([12, 9])
    text = torch.tensor([[2, 3, 4], [5, 2, -1]])
    tlen = torch.tensor([3, 2])
    py = torch.tensor([[2, 3, 4], [5, 2, -1]])
    loss, stats, weight = model(video, vlen, text, tlen, py, tlen)

    from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos

    enc, elen = model.encode(video, vlen)

    def branch(decoder, ctc, ys, n_vocab):
        l_ctc = ctc(enc, elen, ys, tlen)
        ys_in, ys_out = add_sos_eos(ys, n_vocab - 1, n_vocab - 1, -1)
        logits, _ = decoder(enc, elen, ys_in, tlen + 1)
        l_att = model._char.criterion_att(logits, ys_out)
        return 0.4 * l_ctc + 0.6 * l_att

    l_char = branch(model.decoder, model.ctc, text, len(CHARS))
    l_py = branch(model.pinyin_decoder, model.pinyin_ctc, py, len(PINYIN))
    assert torch.allclose(loss, 0.7 * l_char + 0.3 * l_py, atol=1e-5)
    assert torch.allclose(stats["loss_char"], l_char, atol=1e-5)
    assert torch.allclose(stats["loss_pinyin"], l_py, atol=1e-5)
    assert int(weight) == 2
    assert {"acc_char", "acc_pinyin", "loss_ctc_char", "loss_att_char"} <= set(stats)


def test_char_only_has_no_pinyin_parameters(tmp_path):
    args = _args(tmp_path, "train_vsr_char_tiny.yaml")
    model = VSRTask.build_model(args)
    assert model.pinyin_decoder is None and model.pinyin_ctc is None and not model.has_pinyin_branch
    assert not [n for n, _ in model.named_parameters() if "pinyin" in n]
    dual = VSRTask.build_model(_args(tmp_path, "train_vsr_dual_tiny.yaml"))
    extra = sum(p.numel() for n, p in dual.named_parameters() if n.startswith("pinyin_"))
    assert sum(p.numel() for p in dual.parameters()) - sum(p.numel() for p in model.parameters()) == extra > 0
    # the char-only model trains on batches that carry no pinyin
    loss, stats, _ = model(torch.randn(1, 8, 88 * 88), torch.tensor([8]), torch.tensor([[2, 3]]), torch.tensor([2]))
    assert loss.requires_grad and "loss_pinyin" not in stats


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"encoder_conf": {"output_sizee": 64}}, r"encoder_conf: unknown key\(s\) \['output_sizee'\]"),
        ({"frontend_conf": {"chanels": 8}}, r"frontend_conf: unknown key\(s\) \['chanels'\]"),
        ({"encoder_conf": {"input_size": 32}}, r"encoder_conf.input_size=32 does not match the value 64"),
        ({"encoder_conf": {"output_size": 66}}, r"encoder_conf.output_size \(66\) must be divisible"),
        ({"pinyin_decoder": "none"}, r"pinyin_decoder is none"),
    ],
)
def test_bad_config_fails_at_build_naming_the_key(tmp_path, overrides, message):
    args = _args(tmp_path, "train_vsr_dual_tiny.yaml", **overrides)
    with pytest.raises(ValueError, match=message):
        VSRTask.build_model(args)


def test_unknown_top_level_key_fails_at_start(tmp_path, capsys):
    from vallr_pin.bin import vsr_train

    cfg = yaml.safe_load((CONF / "train_vsr_dual_tiny.yaml").read_text(encoding="utf-8"))
    cfg["max_epochs"] = 3  # typo of max_epoch
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    char, py = _token_files(tmp_path)
    with pytest.raises(SystemExit):
        vsr_train.main(["--config", str(path), "--token_list", char, "--output_dir", str(tmp_path / "exp")])
    assert "unrecognized arguments: max_epochs" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_paper_scale_configs_build(tmp_path):
    """The recipe's paper-scale configs parse with ESPnet's parser and build: ResNet-50 frontend, 12 SAN-M
    encoder blocks, 6 SAN-M decoder blocks, 3 pinyin Transformer blocks; the char config has no pinyin branch."""
    dual = VSRTask.build_model(_args(tmp_path, "train_vsr_dual.yaml"))
    assert len(dual.encoder.encoders) + len(dual.encoder.encoders0) == 12
    assert len(dual.decoder.decoders) == 6 and len(dual.pinyin_decoder.decoders) == 3
    char = VSRTask.build_model(_args(tmp_path, "train_vsr_char.yaml"))
    assert char.pinyin_decoder is None
    n_dual = sum(p.numel() for p in dual.parameters())
    n_char = sum(p.numel() for p in char.parameters())
    assert n_dual > n_char > 50_000_000


def test_frame_target_loss_is_added_and_trains_the_frontend(tmp_path):
    """model_conf.frame_target_weight: L += w * sum of squared errors of Linear(frontend) vs the frame targets."""
    torch.manual_seed(0)
    args = _args(tmp_path, "train_vsr_dual_tiny.yaml",
                 model_conf={"frame_target_weight": 2.0, "frame_target_dim": 3})
    model = VSRTask.build_model(args).eval()
    video, vlen = torch.randn(2, 12, 88 * 88), torch.tensor([12, 9])
    text = py = torch.tensor([[2, 3, 4], [5, 2, -1]])
    tlen = torch.tensor([3, 2])
    targets = torch.randn(2, 12, 3)
    loss, stats, _ = model(video, vlen, text, tlen, py, tlen, frame_targets=targets,
                           frame_targets_lengths=torch.tensor([12, 9]))
    feats, _ = model.frontend(video, vlen)
    pred = model.frame_target_head(feats)
    expect = (((pred[0] - targets[0]) ** 2).sum() + ((pred[1, :9] - targets[1, :9]) ** 2).sum()) / 2
    assert torch.allclose(stats["loss_frame"], expect, atol=1e-4)
    base = stats["loss_char"] * 0.5 + stats["loss_pinyin"] * 0.5
    assert torch.allclose(loss, base + 2.0 * expect, atol=1e-4)
    model.zero_grad()
    loss.backward()
    assert model.frontend.stem[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="frame_targets"):
        model(video, vlen, text, tlen, py, tlen)  # the weight is on but the batch has no targets
    with pytest.raises(ValueError, match="frame rate"):  # e.g. targets at half the video's frame rate
        model(video, vlen, text, tlen, py, tlen, frame_targets=targets[:, :6],
              frame_targets_lengths=torch.tensor([6, 5]))
    # off (the paper's model): no head, no targets needed
    plain = VSRTask.build_model(_args(tmp_path, "train_vsr_dual_tiny.yaml")).eval()
    assert plain.frame_target_head is None and "loss_frame" not in plain(video, vlen, text, tlen, py, tlen)[1]


def test_frame_label_loss_is_cross_entropy_of_the_encoder_output(tmp_path):
    torch.manual_seed(0)
    args = _args(tmp_path, "train_vsr_dual_tiny.yaml", model_conf={"frame_label_weight": 0.5, "frame_label_classes": 4})
    model = VSRTask.build_model(args).eval()
    video, vlen = torch.randn(2, 12, 88 * 88), torch.tensor([12, 9])
    text = py = torch.tensor([[2, 3, 4], [5, 2, -1]])
    tlen = torch.tensor([3, 2])
    labels = torch.randint(0, 4, (2, 12))
    labels[1, 9:] = -1  # padding
    loss, stats, _ = model(video, vlen, text, tlen, py, tlen, frame_labels=labels,
                           frame_labels_lengths=torch.tensor([12, 9]))
    enc, _ = model.encode(video, vlen)
    logp = model.frame_label_head(enc).log_softmax(-1)
    expect = -(logp[0, torch.arange(12), labels[0]].sum() + logp[1, torch.arange(9), labels[1, :9]].sum()) / 2
    assert torch.allclose(stats["loss_frame_label"], expect, atol=1e-4)
    assert torch.allclose(loss, 0.5 * stats["loss_char"] + 0.5 * stats["loss_pinyin"] + 0.5 * expect, atol=1e-4)
    with pytest.raises(ValueError, match="frame_labels"):
        model(video, vlen, text, tlen, py, tlen)

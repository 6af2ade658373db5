"""--init_param from a CNVSRC baseline checkpoint: a randomly initialised model in the baselines' layout (the
auto-AVSR Conv3dResNet of their espnet/nets/pytorch_backend/backbones/, the names and order of its modules
re-created here) is saved as their model_avg_*.pth is, converted with vallr_pin.bin.convert_baseline_frontend,
and loaded by ESPnet's own load_pretrained_model: the frontend then computes the baseline's frame features."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from vallr_pin.bin import convert_baseline_frontend
from vallr_pin.nets.frontend import Conv3dResNetFrontend
from vallr_pin.nets.frontend_init import FrontendInitError, convert_baseline_frontend as convert

ROOT = Path(__file__).resolve().parents[1]
RESNET18_CONF = ROOT / "egs/cnvsrc/vsr1/conf/train_vsr_dual_resnet18.yaml"


class BaselineBlock(nn.Module):  # modules/resnet.py BasicBlock, relu_type="swish"
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1, self.relu2 = nn.SiLU(), nn.SiLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.downsample is None else self.downsample(x)))


class BaselineTrunk(nn.Module):  # modules/resnet.py ResNet(BasicBlock, [2, 2, 2, 2])
    def __init__(self):
        super().__init__()
        inplanes = 64
        for i, planes in enumerate((64, 128, 256, 512), 1):
            stride = 1 if i == 1 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            setattr(self, f"layer{i}", nn.Sequential(BaselineBlock(inplanes, planes, stride, down),
                                                     BaselineBlock(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class BaselineFrontend(nn.Module):  # backbones/conv3d_extractor.py Conv3dResNet
    def __init__(self):
        super().__init__()
        self.trunk = BaselineTrunk()
        self.frontend3D = nn.Sequential(nn.Conv3d(1, 64, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
                                        nn.BatchNorm3d(64), nn.SiLU(), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))

    def forward(self, x):  # (B, T, 1, H, W) -> (B, T, 512)
        b, t = x.shape[:2]
        x = self.frontend3D(x.transpose(1, 2))
        x = x.transpose(1, 2).reshape(b * x.shape[2], x.shape[1], x.shape[3], x.shape[4])
        return self.trunk(x).view(b, t, -1)


def randomised(module: nn.Module) -> nn.Module:
    """Random weights and BN statistics, so a wrong mapping shows in the output."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module.eval()


@pytest.fixture(scope="module")
def baseline_ckpt(tmp_path_factory):
    """model_avg_*.pth as the baselines write it: the whole model's state dict, frontend under encoder.frontend."""
    frontend = randomised(BaselineFrontend())
    state = {f"encoder.frontend.{k}": v for k, v in frontend.state_dict().items()}
    state.update({"encoder.embed.0.weight": torch.zeros(768, 512), "decoder.embed.0.weight": torch.zeros(10, 768),
                  "ctc.ctc_lo.weight": torch.zeros(10, 768)})
    path = tmp_path_factory.mktemp("baseline") / "model_avg_cncvs_4s_30s.pth"
    torch.save(state, path)
    return path, frontend


def test_converted_frontend_computes_the_baseline_features(baseline_ckpt, tmp_path):
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    path, baseline = baseline_ckpt
    out = tmp_path / "init" / "frontend.pth"
    convert_baseline_frontend.main(["--src", str(path), "--train-config", str(RESNET18_CONF), "--out", str(out)])
    conf = yaml.safe_load(RESNET18_CONF.read_text())["frontend_conf"]
    model = nn.Module()
    model.frontend = Conv3dResNetFrontend(**conf)
    proj_before = model.frontend.proj.weight.clone()
    load_pretrained_model(str(out), model, ignore_init_mismatch=False)  # what --init_param does
    fe = model.frontend.eval()
    assert torch.equal(fe.proj.weight, proj_before)  # the one layer the baselines do not have
    video = torch.rand(2, 5, 88 * 88)
    with torch.no_grad():
        x = fe.stem(video.view(2, 1, 5, 88, 88))
        x = x.transpose(1, 2).reshape(10, 64, x.shape[3], x.shape[4])
        ours = fe.pool(fe.trunk(x)).flatten(1).view(2, 5, -1)
        theirs = baseline(video.view(2, 5, 1, 88, 88))
    assert ours.shape == (2, 5, 512)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_lightning_ckpt_and_bare_frontend_layouts(baseline_ckpt):
    _, baseline = baseline_ckpt
    fe = Conv3dResNetFrontend(**yaml.safe_load(RESNET18_CONF.read_text())["frontend_conf"])
    n = len(baseline.state_dict())
    for ckpt in ({"state_dict": {f"model.encoder.frontend.{k}": v for k, v in baseline.state_dict().items()}},
                 {"model_state_dict": dict(baseline.state_dict())}):
        state, left = convert(ckpt, fe)
        assert len(state) == n and left == ["proj.weight", "proj.bias"]


def test_unmapped_or_mismatched_tensors_fail_loudly(baseline_ckpt, tmp_path):
    path, baseline = baseline_ckpt
    conf = yaml.safe_load(RESNET18_CONF.read_text())["frontend_conf"]
    prelu = dict(baseline.state_dict(), **{"trunk.layer1.0.relu1.weight": torch.ones(64)})  # relu_type=prelu
    with pytest.raises(FrontendInitError, match=r"trunk\.layer1\.0\.relu1\.weight"):
        convert(prelu, Conv3dResNetFrontend(**conf))
    with pytest.raises(FrontendInitError, match=r"shape mismatch.*trunk\.layer1\.0\.conv1\.weight"):
        convert(dict(baseline.state_dict()), Conv3dResNetFrontend(**dict(conf, stage_channels=[32, 64, 128, 256])))
    with pytest.raises(FrontendInitError, match="does not fill"):  # resnet34: more blocks than the checkpoint
        convert(dict(baseline.state_dict()), Conv3dResNetFrontend(**dict(conf, trunk="resnet34")))
    with pytest.raises(FrontendInitError, match="activation is 'prelu'"):
        convert(dict(baseline.state_dict()), Conv3dResNetFrontend(**dict(conf, activation="prelu")))
    # the entry point: one line naming the checkpoint and the tensor, exit 1, nothing written
    bad = tmp_path / "paper.yaml"
    bad.write_text(yaml.safe_dump({"frontend_conf": dict(conf, trunk="resnet50")}))
    out = tmp_path / "frontend.pth"
    r = subprocess.run([sys.executable, "-m", "vallr_pin.bin.convert_baseline_frontend", "--src", str(path),
                        "--train-config", str(bad), "--out", str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1 and str(path) in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()

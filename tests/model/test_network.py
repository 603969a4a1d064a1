"""Tests of src/dlmvi/model/network.py and presets.py."""

import pytest
import torch
from monai.networks.nets.resnet import ResNetBottleneck

from dlmvi.errors import ConfigError, ModelError
from dlmvi.model.network import NetworkConfig, build_network, count_parameters, flops_per_sample
from dlmvi.model.presets import PRESETS, get_preset

TINY = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32)


def paper_config(**kw):
    p = get_preset("paper")
    return NetworkConfig(stem_width=p.stem_width, widths=p.widths, blocks=p.blocks, input_size=p.input_size, **kw)


def test_paper_encoder_matches_study():
    net = build_network(paper_config())
    stem_conv = net.encoder.stem[0]
    assert stem_conv.kernel_size == (7, 7) and stem_conv.out_channels == 64 and stem_conv.in_channels == 1
    assert isinstance(net.encoder.stem[1], torch.nn.BatchNorm2d)
    assert isinstance(net.encoder.stem[3], torch.nn.MaxPool2d)
    blocks = [m for m in net.encoder.modules() if isinstance(m, ResNetBottleneck)]
    assert [b.conv1.out_channels for b in blocks] == [64] * 6 + [128] * 6
    assert blocks[-1].conv3.out_channels == 512  # expansion 4
    assert net.config.feature_dim == 512
    # 2 213 058 trainable parameters: 2 209 984 in the shared encoder + (3 * 512 + 1) * 2 in the FC layer
    assert count_parameters(net) == 2_213_058
    assert count_parameters(net.encoder) == 2_209_984
    assert net.classifier.in_features == 3 * 512


def test_paper_preset_settings():
    p = get_preset("paper")
    assert (p.input_size, p.epochs, p.batch_size, p.lr) == (320, 200, 2, 0.1)
    assert set(PRESETS) >= {"paper", "fast"}
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_flops_per_sample():
    # forward FLOPs (2 per multiply-accumulate) for one patient with 3 sequences
    assert flops_per_sample(paper_config()) == 34_612_844_544
    fast = get_preset("fast")
    cfg = NetworkConfig(stem_width=fast.stem_width, widths=fast.widths, blocks=fast.blocks, input_size=fast.input_size)
    assert flops_per_sample(cfg) == 23_299_584
    assert count_parameters(build_network(cfg)) == 30_706


def test_features_and_logits_shapes():
    torch.manual_seed(0)
    net = build_network(TINY).eval()
    x = torch.randn(5, 3, 1, 32, 32)
    logits, feats = net(x, return_features=True)
    assert logits.shape == (5, 2) and feats.shape == (5, 3, 32)
    assert torch.allclose(net.sequence_features(x), feats)
    assert torch.allclose(net(x.squeeze(2)), logits)  # (B, k, H, W) accepted for one channel


def test_one_encoder_shared_across_sequences():
    torch.manual_seed(0)
    net = build_network(TINY).eval()
    img = torch.randn(1, 1, 32, 32)
    other = torch.randn(1, 1, 32, 32)
    x = torch.stack([img, img, other], dim=1)  # same image in sequence slots 0 and 1
    f = net.sequence_features(x)
    assert torch.equal(f[0, 0], f[0, 1]) and not torch.equal(f[0, 0], f[0, 2])
    # adding sequences adds no encoder weights, only classifier inputs
    one = count_parameters(build_network(NetworkConfig(**{**TINY.to_dict(), "n_sequences": 1})))
    three = count_parameters(build_network(TINY))
    assert three - one == 2 * TINY.feature_dim * 2
    assert sum(isinstance(m, type(net.encoder)) for m in net.modules()) == 1


def test_three_classes():
    net = build_network(NetworkConfig(**{**TINY.to_dict(), "n_classes": 3}))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_bad_configs_and_inputs():
    with pytest.raises(ConfigError, match="equal length"):
        NetworkConfig(widths=(4, 8), blocks=(1,))
    with pytest.raises(ConfigError, match="n_classes must be 2 or 3"):
        NetworkConfig(n_classes=4)
    net = build_network(TINY)
    with pytest.raises(ModelError, match=r"expected \(batch, 3 sequences"):
        net(torch.randn(2, 2, 1, 32, 32))
    with pytest.raises(ModelError, match="cannot honour"):
        NetworkConfig.from_dict({**TINY.to_dict(), "attention": True})

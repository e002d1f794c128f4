"""Layer naming, truncation and the Caffe input convention."""

import pytest
import torch

from nst_core.vgg import VGG19, layer_index


def test_layer_names_follow_torchvision_numbering():
    index = layer_index()
    assert index["relu1_1"] == 1 and index["relu2_1"] == 6 and index["relu3_1"] == 11
    assert index["relu4_1"] == 20 and index["relu4_2"] == 22 and index["relu5_1"] == 29


@pytest.mark.parametrize("layers, length", [(["relu1_1"], 2), (["relu4_2"], 23),
                                            (["relu1_1", "relu5_1"], 30)])
def test_network_is_cut_after_the_deepest_layer_in_use(layers, length):
    net = VGG19(layers)
    assert len(net.features) == length
    assert isinstance(net.features[-1], torch.nn.ReLU)


def test_network_is_frozen_and_returns_the_layers_asked_for():
    net = VGG19(["relu1_1", "relu3_1"])
    assert not any(p.requires_grad for p in net.parameters())
    out = net(torch.rand(1, 3, 32, 32) * 255)
    assert set(out) == {"relu1_1", "relu3_1"}
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["relu3_1"].shape == (1, 256, 8, 8)


def test_average_pooling_option():
    assert isinstance(VGG19(["relu2_1"], pooling="avg").features[4], torch.nn.AvgPool2d)
    assert isinstance(VGG19(["relu2_1"]).features[4], torch.nn.MaxPool2d)


def test_input_is_rgb_0_255_turned_into_caffe_bgr_minus_mean():
    net = VGG19(["relu1_1"])
    conv = net.features[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # output channel 0 = input channel 0 (B in Caffe order)
    rgb = torch.zeros(1, 3, 4, 4)
    rgb[:, 2] = 200.0  # blue = 200
    out = net(rgb)["relu1_1"]
    assert torch.allclose(out[0, 0], torch.full((4, 4), 200.0 - 103.939))

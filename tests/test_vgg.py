"""Layer naming, truncation and the Caffe input convention, for both networks."""

import pytest
import torch

from nst_core import weights
from nst_core.options import MODEL_LAYERS, Options
from nst_core.vgg import VGG, VGG19, layer_index


def test_layer_names_follow_torchvision_numbering():
    index = layer_index()
    assert index["relu1_1"] == 1 and index["relu2_1"] == 6 and index["relu3_1"] == 11
    assert index["relu4_1"] == 20 and index["relu4_2"] == 22 and index["relu5_1"] == 29
    vgg16 = layer_index("vgg16")  # three convs in blocks 3-5: torchvision's vgg16 numbering
    assert vgg16["relu2_2"] == 8 and vgg16["relu3_3"] == 15 and vgg16["relu4_1"] == 18
    assert vgg16["relu4_3"] == 22 and vgg16["relu5_1"] == 25 and vgg16["relu5_3"] == 29
    assert "relu3_4" not in vgg16 and tuple(vgg16) == MODEL_LAYERS["vgg16"]


def test_keras_layer_names_reach_the_same_layers():
    o = Options(model="vgg16", content_layers=("block2_conv2",),
                style_layers=("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3",
                              "block5_conv3"))
    net = VGG(o.content_layers + o.style_layers, o.pooling, o.model)
    out = net(torch.rand(1, 3, 32, 32) * 255)
    assert set(out) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"}
    assert out["relu5_3"].shape == (1, 512, 2, 2)


@pytest.mark.parametrize("model, layers, length", [
    ("vgg19", ["relu1_1"], 2), ("vgg19", ["relu4_2"], 23), ("vgg19", ["relu1_1", "relu5_1"], 30),
    ("vgg16", ["relu1_1"], 2), ("vgg16", ["relu2_2"], 9), ("vgg16", ["relu5_3", "relu1_2"], 30)])
def test_network_is_cut_after_the_deepest_layer_in_use(model, layers, length):
    net = VGG(layers, model=model)
    assert len(net.features) == length
    assert isinstance(net.features[-1], torch.nn.ReLU)


@pytest.mark.parametrize("model", ["vgg19", "vgg16"])
def test_the_whole_network_holds_exactly_the_stored_layers(model):
    deepest = MODEL_LAYERS[model][-1]
    shapes = {k: tuple(v.shape) for k, v in VGG([deepest], model=model).state_dict().items()}
    assert shapes == weights.expected_shapes(model)  # what `weights.load` checks and returns


def test_weights_of_the_other_network_are_refused():
    vgg19_like = {k: torch.zeros(s) for k, s in weights.expected_shapes("vgg19").items()}
    with pytest.raises(ValueError, match="not vgg16's"):
        VGG(["relu1_1"], model="vgg16").load_weights(vgg19_like)  # even where relu1_1 would fit
    assert VGG19(["relu1_1"]).load_weights(vgg19_like).model == "vgg19"  # the old name


def test_network_is_frozen_and_returns_the_layers_asked_for():
    net = VGG(["relu1_1", "relu3_1"])
    assert not any(p.requires_grad for p in net.parameters())
    out = net(torch.rand(1, 3, 32, 32) * 255)
    assert set(out) == {"relu1_1", "relu3_1"}
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["relu3_1"].shape == (1, 256, 8, 8)


@pytest.mark.parametrize("model", ["vgg19", "vgg16"])
def test_average_pooling_option(model):
    assert isinstance(VGG(["relu2_1"], pooling="avg", model=model).features[4], torch.nn.AvgPool2d)
    assert isinstance(VGG(["relu2_1"], model=model).features[4], torch.nn.MaxPool2d)


@pytest.mark.parametrize("model", ["vgg19", "vgg16"])
def test_input_is_rgb_0_255_turned_into_caffe_bgr_minus_mean(model):
    net = VGG(["relu1_1"], model=model)
    conv = net.features[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # output channel 0 = input channel 0 (B in Caffe order)
    rgb = torch.zeros(1, 3, 4, 4)
    rgb[:, 2] = 200.0  # blue = 200
    out = net(rgb)["relu1_1"]
    assert torch.allclose(out[0, 0], torch.full((4, 4), 200.0 - 103.939))

"""The PyTorch tutorial's neural style transfer ("Neural Transfer Using PyTorch",
advanced_source/neural_style_tutorial.py), transcribed in plain PyTorch.

Kept from the tutorial: a content loss module (MSE against detached target features) and a
style loss module (MSE between Gram matrices, each divided by a*b*c*d) inserted after the
chosen layers of a copy of the CNN's `features` (ReLUs replaced by out-of-place ones), the
targets computed while the model is built, the model trimmed after its last loss module,
L-BFGS with PyTorch's defaults on the input image (the content image's clone), pixels
clamped to [0, 1] inside the closure and at the end, `while run <= num_steps:
optimizer.step(closure)` with `run` counting closure calls (so about 300 objective
evaluations, a few more as the last L-BFGS step finishes), style weight 1e6, content
weight 1, everything at full size.

Changed, as the issue asks: the backbone is VGG16 (HED's weights, the only VGG here) with
its own input normalisation (BGR, 0..255, minus the Caffe mean) in place of VGG19 with
ImageNet mean/std; content at conv4_2 and style at conv1_1, conv2_1, conv3_1, conv4_1,
conv5_1 (Gatys et al.'s layers; the tutorial's defaults are conv_4 and conv_1..conv_5).
The loss modules sit after the convolutions, before the ReLUs, as in the tutorial.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

# torchvision-style sequential numbering of VGG16's convolutions: conv1_1 is conv_1, ...
VGG16_CONV_NUMBER = {
    "conv1_1": 1, "conv1_2": 2, "conv2_1": 3, "conv2_2": 4, "conv3_1": 5, "conv3_2": 6,
    "conv3_3": 7, "conv4_1": 8, "conv4_2": 9, "conv4_3": 10, "conv5_1": 11, "conv5_2": 12,
    "conv5_3": 13,
}  # fmt: skip
CONTENT_LAYERS = [f"conv_{VGG16_CONV_NUMBER['conv4_2']}"]
STYLE_LAYERS = [f"conv_{VGG16_CONV_NUMBER[f'conv{b}_1']}" for b in range(1, 6)]


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target.detach()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(input, self.target)
        return input


def gram_matrix(input: torch.Tensor) -> torch.Tensor:
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    G = torch.mm(features, features.t())
    return G.div(a * b * c * d)


class StyleLoss(nn.Module):
    def __init__(self, target_feature: torch.Tensor) -> None:
        super().__init__()
        self.target = gram_matrix(target_feature).detach()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        G = gram_matrix(input)
        self.loss = F.mse_loss(G, self.target)
        return input


class Normalization(nn.Module):
    """HED's input: RGB [0, 1] -> BGR on a 0..255 scale minus the Caffe mean colour."""

    def __init__(self, bgr_mean: tuple[float, float, float]) -> None:
        super().__init__()
        self.mean = torch.tensor(bgr_mean).view(-1, 1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(1) * 255.0 - self.mean


def get_style_model_and_losses(cnn, bgr_mean, style_img, content_img,
                               content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS):  # fmt: skip
    cnn = copy.deepcopy(cnn)
    normalization = Normalization(bgr_mean)
    content_losses = []
    style_losses = []
    model = nn.Sequential(normalization)
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu_{i}"
            layer = nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool_{i}"
        else:
            raise RuntimeError(f"Unrecognized layer: {layer.__class__.__name__}")
        model.add_module(name, layer)
        if name in content_layers:
            target = model(content_img).detach()
            content_loss = ContentLoss(target)
            model.add_module(f"content_loss_{i}", content_loss)
            content_losses.append(content_loss)
        if name in style_layers:
            target_feature = model(style_img).detach()
            style_loss = StyleLoss(target_feature)
            model.add_module(f"style_loss_{i}", style_loss)
            style_losses.append(style_loss)
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], ContentLoss) or isinstance(model[i], StyleLoss):  # noqa: SIM101
            break
    model = model[: (i + 1)]
    return model, style_losses, content_losses


def get_input_optimizer(input_img: torch.Tensor) -> torch.optim.Optimizer:
    return torch.optim.LBFGS([input_img])


def run_style_transfer(cnn, bgr_mean, content_img, style_img, input_img, num_steps=300,
                       style_weight=1000000, content_weight=1):  # fmt: skip
    """Returns (image, {"seconds", "evaluations", "content", "style", "total"})."""
    start = time.perf_counter()
    model, style_losses, content_losses = get_style_model_and_losses(
        cnn, bgr_mean, style_img, content_img
    )
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = get_input_optimizer(input_img)
    run = [0]
    last = {}
    while run[0] <= num_steps:

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = 0
            content_score = 0
            for sl in style_losses:
                style_score += sl.loss
            for cl in content_losses:
                content_score += cl.loss
            style_score *= style_weight
            content_score *= content_weight
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            last.update(style=style_score.item(), content=content_score.item())
            return style_score + content_score

        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    seconds = time.perf_counter() - start
    return input_img, {"seconds": seconds, "evaluations": run[0], **last}


def final_losses(cnn, bgr_mean, content_img, style_img, image, style_weight=1e6, content_weight=1):
    """The tutorial's loss of `image` (content, style, total), one forward pass, no update."""
    model, style_losses, content_losses = get_style_model_and_losses(
        cnn, bgr_mean, style_img, content_img
    )
    with torch.no_grad():
        model(image.clamp(0, 1))
    style = style_weight * sum(sl.loss.item() for sl in style_losses)
    content = content_weight * sum(cl.loss.item() for cl in content_losses)
    return {"content": content, "style": style, "total": content + style}

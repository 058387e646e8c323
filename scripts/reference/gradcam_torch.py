#!/usr/bin/env python3
"""PyTorch reference Grad-CAM for crates/models/tests/gradcam.rs.

Regenerate the fixture (torch is never a project dependency: use a separate virtual
environment):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch safetensors numpy
    /tmp/torch-venv/bin/python scripts/reference/gradcam_torch.py --shared "$LITTLEDATA_SHARED" \
        --out crates/models/tests/data/gradcam_reference.safetensors

What it does, on the real weights and the exact input tensors of the shared reference files:

- VGG16: torchvision's `vgg16().features` (written out here, tensor names `features.N`) on
  `reference/vgg16_features.safetensors["input"]` ([4, 3, 150, 150]); the Grad-CAM map is the
  block-5 output [4, 512, 4, 4], checked here against that file's `block5_pool`.
- EfficientNet-Lite0: the network as models/SOURCE.md describes it (TF "SAME" padding, ReLU6,
  BatchNorm in eval mode, eps 1e-3; the tensor names of efficientnet-lite-pytorch) on
  `reference/efficientnet_lite0_features.safetensors["input"]` ([4, 3, 224, 224]); the map is
  the head convolution's activated output [4, 1280, 7, 7], checked here against that file's
  `head`, globally average-pooled before the top model.

For each network two small top models with a fixed torch seed, in the layout of the Rust
`TopModel` (`top.dense1.weight` [hidden, in], `top.dense1.bias`, `top.dense2.weight`
[units, hidden], `top.dense2.bias`; the input flattened in NCHW order): a binary one (one
sigmoid unit; class 1's score is the logit, class 0's its negation) and a categorical one
(three softmax units; a class's score is its logit). Grad-CAM by torch.autograd: the score of
the class, alpha_k = the spatial mean of d score / d A_k, cam = ReLU(sum_k alpha_k A_k).

The fixture holds, per case `<net>_<head>` (vgg16_binary, vgg16_categorical, lite0_binary,
lite0_categorical): `<case>/top.dense1.weight`, ... and `<case>/cams` [classes, 4, h, w]
(cams[c, i] is image i's map for class c); the metadata says which inputs they came from.
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from safetensors.torch import load_file

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# (repeats, kernel, first stride, expansion, output channels) per stage; stem 32, head 1280.
LITE0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
BN_EPS = 1e-3


def vgg16_features(weights, x):
    """torchvision's vgg16().features: conv 3x3 pad 1 + ReLU, max-pool 2x2 after each block."""
    i = 0
    for v in VGG16_CFG:
        if v == "M":
            x = F.max_pool2d(x, 2, 2)
            i += 1
        else:
            x = F.relu(F.conv2d(x, weights[f"features.{i}.weight"], weights[f"features.{i}.bias"], padding=1))
            i += 2
    return x


def same_pad(x, k, s):
    """TensorFlow "SAME" padding: total = max((ceil(in/s) - 1)·s + k - in, 0), smaller half first."""
    h, w = x.shape[-2:]

    def total(n):
        return max((math.ceil(n / s) - 1) * s + k - n, 0)

    th, tw = total(h), total(w)
    return F.pad(x, [tw // 2, tw - tw // 2, th // 2, th - th // 2])


def bn(weights, name, x):
    return F.batch_norm(
        x,
        weights[f"{name}.running_mean"],
        weights[f"{name}.running_var"],
        weights[f"{name}.weight"],
        weights[f"{name}.bias"],
        training=False,
        eps=BN_EPS,
    )


def lite0_head_map(weights, x):
    """EfficientNet-Lite0 up to the head convolution's BN + ReLU6 output [N, 1280, h, w]."""
    x = F.conv2d(same_pad(x, 3, 2), weights["_conv_stem.weight"], stride=2)
    x = F.relu6(bn(weights, "_bn0", x))
    cin, b = 32, 0
    for repeats, k, stride, ratio, cout in LITE0_STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"_blocks.{b}"
            h = x
            if ratio != 1:
                h = F.relu6(bn(weights, f"{p}._bn0", F.conv2d(h, weights[f"{p}._expand_conv.weight"])))
            c = h.shape[1]
            h = F.conv2d(same_pad(h, k, s), weights[f"{p}._depthwise_conv.weight"], stride=s, groups=c)
            h = F.relu6(bn(weights, f"{p}._bn1", h))
            h = bn(weights, f"{p}._bn2", F.conv2d(h, weights[f"{p}._project_conv.weight"]))
            if s == 1 and cin == cout:
                h = h + x
            x, cin, b = h, cout, b + 1
    x = F.conv2d(x, weights["_conv_head.weight"])
    return F.relu6(bn(weights, "_bn1", x))


def make_top(seed, inputs, hidden, units):
    """A TopModel-layout top: dense1 (inputs -> hidden) + ReLU, dense2 (hidden -> units)."""
    torch.manual_seed(seed)
    d1 = torch.nn.Linear(inputs, hidden)
    d2 = torch.nn.Linear(hidden, units)
    return {
        "top.dense1.weight": d1.weight.detach().clone(),
        "top.dense1.bias": d1.bias.detach().clone(),
        "top.dense2.weight": d2.weight.detach().clone(),
        "top.dense2.bias": d2.bias.detach().clone(),
    }


def top_logits(top, features):
    h = F.relu(F.linear(features.flatten(1), top["top.dense1.weight"], top["top.dense1.bias"]))
    return F.linear(h, top["top.dense2.weight"], top["top.dense2.bias"])


def grad_cams(top, fmap, pool, classes):
    """[classes, N, h, w]: Grad-CAM of each class for each image, by torch.autograd."""
    out = []
    for c in range(classes):
        a = fmap.detach().clone().requires_grad_(True)
        feats = a.mean(dim=(2, 3)) if pool else a
        logits = top_logits(top, feats)
        if logits.shape[1] == 1:
            score = logits[:, 0] if c == 1 else -logits[:, 0]
        else:
            score = logits[:, c]
        (grad,) = torch.autograd.grad(score.sum(), a)
        alpha = grad.mean(dim=(2, 3))
        cam = F.relu((alpha[:, :, None, None] * a).sum(dim=1))
        out.append(cam.detach())
    return torch.stack(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.environ.get("LITTLEDATA_SHARED", "../shared"))
    parser.add_argument("--out", default="crates/models/tests/data/gradcam_reference.safetensors")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    shared = args.shared
    tensors = {}
    cases = {}

    vgg_w = load_file(os.path.join(shared, "models/vgg16_imagenet_features.safetensors"))
    vgg_ref = load_file(os.path.join(shared, "reference/vgg16_features.safetensors"))
    with torch.no_grad():
        vmap = vgg16_features(vgg_w, vgg_ref["input"])
    d = (vmap - vgg_ref["block5_pool"]).abs().max().item()
    print(f"vgg16 block5 vs reference: max abs diff {d:.3e} (max {vgg_ref['block5_pool'].abs().max().item():.3f})")
    assert d < 1e-3, d

    lite_w = load_file(os.path.join(shared, "models/efficientnet_lite0_imagenet.safetensors"))
    lite_ref = load_file(os.path.join(shared, "reference/efficientnet_lite0_features.safetensors"))
    with torch.no_grad():
        lmap = lite0_head_map(lite_w, lite_ref["input"])
    d = (lmap - lite_ref["head"]).abs().max().item()
    print(f"lite0 head vs reference: max abs diff {d:.3e} (max {lite_ref['head'].abs().max().item():.3f})")
    assert d < 1e-3, d

    plan = [
        ("vgg16", vmap, False, "reference/vgg16_features.safetensors", 8, 1, 2),
        ("vgg16", vmap, False, "reference/vgg16_features.safetensors", 4, 3, 3),
        ("lite0", lmap, True, "reference/efficientnet_lite0_features.safetensors", 8, 1, 2),
        ("lite0", lmap, True, "reference/efficientnet_lite0_features.safetensors", 4, 3, 3),
    ]
    for i, (net, fmap, pool, source, hidden, units, classes) in enumerate(plan):
        case = f"{net}_{'binary' if units == 1 else 'categorical'}"
        inputs = fmap.shape[1] if pool else fmap[0].numel()
        # The first seed from --seed on whose cams every image has a non-zero map for every
        # class, so that no comparison is against an all-zero reference.
        seed = args.seed + 100 * i
        while True:
            top = make_top(seed, inputs, hidden, units)
            cams = grad_cams(top, fmap, pool, classes)
            if (cams.flatten(2).amax(dim=2) > 0).all():
                break
            seed += 1
        for name, t in top.items():
            tensors[f"{case}/{name}"] = t.numpy()
        tensors[f"{case}/cams"] = cams.numpy()
        cases[case] = {
            "input": source + ' ["input"]',
            "map": "block5_pool" if net == "vgg16" else "head (pooled before the top)",
            "hidden_units": hidden,
            "units": units,
            "classes": classes,
            "torch_seed": seed,
            "feature_shape": list(fmap.shape[1:]) if not pool else [fmap.shape[1], 1, 1],
        }
        print(f"{case}: seed {seed}, cams {list(cams.shape)}, max {cams.max().item():.4g}")

    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = {
        "produced_by": f"scripts/reference/gradcam_torch.py, torch {torch.__version__}, float32, CPU",
        "cases": json.dumps(cases, sort_keys=True),
        "files": "cat.0.jpg,dog.0.jpg,cat.1210.jpg,dog.1308.jpg",
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch CPU reference timings for the comparisons in BENCHMARKS.md.

Times, on this machine's CPU with PyTorch's own thread count, the same computations the
project's benchmarks time:
  vgg16_forward   VGG16 conv-base forward (13 conv + 5 pools), 150x150, batch 16, inference
  small_cnn_step  the post's small convnet, one training step (forward, BCE, backward, RMSprop)
  finetune_step   VGG16 block 5 + top model on block-4 outputs [16,512,9,9]: forward, backward,
                  SGD(lr 1e-4, momentum 0.9) step (blocks 1-4 frozen and cached)

Prints one JSON object per line: {"name", "images_per_s", "seconds_per_batch", "threads"}.
PyTorch is only a yardstick here, never a dependency of the project:
    python3 -m venv /opt/torchenv && /opt/torchenv/bin/pip install torch
    /opt/torchenv/bin/python scripts/torch_reference.py
"""
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit("torch is not installed (see the docstring)")

BATCH = 16


def vgg16_features():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 17 * 17, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1),
    )


def block5_top():
    return nn.Sequential(
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
        nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1),
    )


def timeit(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def report(name, secs):
    print(json.dumps({
        "name": name,
        "images_per_s": round(BATCH / secs, 2),
        "seconds_per_batch": round(secs, 4),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }), flush=True)


def main():
    torch.manual_seed(0)
    which = set(sys.argv[1:]) or {"vgg16_forward", "small_cnn_step", "finetune_step"}

    if "vgg16_forward" in which:
        net = vgg16_features().eval()
        x = torch.randn(BATCH, 3, 150, 150)
        with torch.inference_mode():
            report("vgg16_forward", timeit(lambda: net(x), 1, 5))

    def train_step(net, x, y, opt):
        def step():
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
            loss.backward()
            opt.step()
        return step

    if "small_cnn_step" in which:
        net = small_cnn().train()
        x, y = torch.randn(BATCH, 3, 150, 150), torch.randint(0, 2, (BATCH,)).float()
        opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        report("small_cnn_step", timeit(train_step(net, x, y, opt), 3, 30))

    if "finetune_step" in which:
        net = block5_top().train()
        x, y = torch.randn(BATCH, 512, 9, 9), torch.randint(0, 2, (BATCH,)).float()
        opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
        report("finetune_step", timeit(train_step(net, x, y, opt), 2, 10))


if __name__ == "__main__":
    main()

"""PyTorch CPU timings of the workloads in `examples/conv_bench.rs`.

Times the VGG16 conv-base forward (13 convolutions + 5 max-pools, random weights), one
training step of the small convnet (3 x [conv 3x3, ReLU, max-pool 2], dense 64, ReLU, dense 1,
binary cross-entropy, backward) and one fine-tuning step (VGG16 block 5 + the top model, dense
256, ReLU, dense 1, on block 4's output, backward), printing images/s in the same format as the
Rust example.

    python3 crates/kernels/bench/torch_conv.py [--batch 16] [--size 150] [--reps 3]
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VGG16 = [(3, 64, False), (64, 64, True), (64, 128, False), (128, 128, True),
         (128, 256, False), (256, 256, False), (256, 256, True), (256, 512, False),
         (512, 512, False), (512, 512, True), (512, 512, False), (512, 512, False),
         (512, 512, True)]


def best_time(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(42)
    n, s = args.batch, args.size

    layers = []
    for cin, cout, pool in VGG16:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(2))
    vgg = nn.Sequential(*layers).eval()
    x = torch.randn(n, 3, s, s)
    with torch.no_grad():
        dt = best_time(lambda: vgg(x), args.reps)
    flop = 0.0
    size = s
    for cin, cout, pool in VGG16:
        flop += 2.0 * n * size * size * cin * cout * 9
        if pool:
            size //= 2
    print(f"pytorch {torch.__version__} ({torch.get_num_threads()} threads):")
    print(f"  VGG16 conv-base forward {n / dt:8.2f} images/s  {flop / dt / 1e9:7.1f} GFLOP/s")

    size = s
    for _ in range(3):
        size = (size - 2) // 2
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * size * size, 64), nn.ReLU(), nn.Linear(64, 1))
    y = (torch.arange(n) % 2).float()

    def step():
        model.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)
        loss.backward()

    dt = best_time(step, args.reps)
    print(f"  small convnet training step {n / dt:8.2f} images/s")

    s5 = s // 16
    block5 = []
    for _ in range(3):
        block5 += [nn.Conv2d(512, 512, 3, padding=1), nn.ReLU()]
    finetune = nn.Sequential(
        *block5, nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(512 * (s5 // 2) ** 2, 256), nn.ReLU(), nn.Linear(256, 1))
    x5 = torch.relu(torch.randn(n, 512, s5, s5))

    def finetune_step():
        finetune.zero_grad()
        loss = F.binary_cross_entropy_with_logits(finetune(x5).squeeze(-1), y)
        loss.backward()

    dt = best_time(finetune_step, args.reps)
    print(f"  fine-tuning step (block 5 + top) {n / dt:8.2f} images/s")


if __name__ == "__main__":
    main()

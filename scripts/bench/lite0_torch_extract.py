"""PyTorch yardstick for `extract` with EfficientNet-Lite0: the same photos, the same work.

Every JPEG under DATA/train and DATA/validation (class folders, as `prep split` writes them),
in sorted order, in batches: PIL decode, resize to SIZE x SIZE, (x/255 - 0.5)/0.5, timm's
`tf_efficientnet_lite0` forward to the pooled [N, 1280] features (eval mode,
`torch.inference_mode()`), decoding on a pool of `--threads` threads. The wall time covers
building the model and the whole pass, as `extract`'s covers loading its weights and the pass.

    python3 scripts/bench/lite0_torch_extract.py DATA [--batch 32] [--size 224] [--threads 2]

Needs torch, timm, pillow and numpy in a separate virtual environment; never a dependency of
the project. Run by scripts/bench/lite0_vs_torch.sh.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import timm
import torch
from PIL import Image

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}


def photos(data):
    out = []
    for split in ("train", "validation"):
        root = os.path.join(data, split)
        for cls in sorted(os.listdir(root)):
            d = os.path.join(root, cls)
            out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--interpolation", choices=sorted(RESAMPLE), default="nearest")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    files = photos(a.data)
    resample = RESAMPLE[a.interpolation]

    def load(path):
        img = Image.open(path).convert("RGB").resize((a.size, a.size), resample)
        x = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(((x - 0.5) / 0.5).transpose(2, 0, 1).copy())

    start = time.perf_counter()
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    pool = ThreadPoolExecutor(a.threads)
    rows = 0
    with torch.inference_mode():
        for i in range(0, len(files), a.batch):
            x = torch.stack(list(pool.map(load, files[i : i + a.batch])))
            y = model(x)
            assert y.shape == (x.shape[0], 1280)
            rows += y.shape[0]
    wall = time.perf_counter() - start
    print(f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} threads, "
          f"batch {a.batch}, {a.size}x{a.size}, {a.interpolation} resize")
    print(f"torch_extract: {rows} images in {wall:.1f} s: {rows / wall:.2f} images/s")


if __name__ == "__main__":
    main()

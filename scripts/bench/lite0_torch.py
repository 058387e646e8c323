"""PyTorch CPU timing of the EfficientNet-Lite0 frozen forward, the yardstick for
`cargo run --release -p kernels --example lite0_bench`.

Times, best of N runs, on `--threads` threads (default 2):
- the forward pass alone: preprocessed input [N, 3, S, S] -> pooled features [N, 1280]
  (timm's `tf_efficientnet_lite0`, random weights, eval mode, `torch.inference_mode()`);
- the whole path from JPEG files: PIL decode, bilinear resize to S x S, (x/255 - 0.5)/0.5,
  forward (decoding on a pool of `--threads` threads, as the Rust example does with rayon).

    python3 scripts/bench/lite0_torch.py [--batch 16] [--size 224] [--reps 5] [--photos DIR]

Needs `pip install torch timm pillow numpy` (CPU is enough). Photos default to
$LITTLEDATA_SHARED/data/dogs-vs-cats/train.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import timm
import torch
from PIL import Image


def best_time(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def load(path, size):
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(((a - 0.5) / 0.5).transpose(2, 0, 1).copy())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    shared = os.environ.get("LITTLEDATA_SHARED")
    p.add_argument("--photos", default=os.path.join(shared, "data/dogs-vs-cats/train") if shared else None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    print(f"lite0_torch: torch {torch.__version__}, timm {timm.__version__}, batch {a.batch}, "
          f"{a.size}x{a.size}, best of {a.reps} runs, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        assert model(x).shape == (a.batch, 1280)
        t = best_time(lambda: model(x), a.reps)
        print(f"forward (preprocessed input -> pooled [N, 1280]): {a.batch / t:8.1f} images/s "
              f"({t * 1e3:.1f} ms per batch)")
        if a.photos and os.path.isdir(a.photos):
            files = sorted(f for f in os.listdir(a.photos) if f.lower().endswith(".jpg"))[: a.batch]
            files = [os.path.join(a.photos, f) for f in files]
            pool = ThreadPoolExecutor(a.threads)

            def batch():
                return torch.stack(list(pool.map(lambda f: load(f, a.size), files)))

            t = best_time(batch, a.reps)
            print(f"JPEG decode + resize + preprocess:                {a.batch / t:8.1f} images/s "
                  f"({t * 1e3:.1f} ms per batch)")
            t = best_time(lambda: model(batch()), a.reps)
            print(f"JPEG files -> pooled features (decode + forward):  {a.batch / t:8.1f} images/s "
                  f"({t * 1e3:.1f} ms per batch)")
        else:
            print("(no photos: pass --photos DIR or set LITTLEDATA_SHARED for the decode timing)")


if __name__ == "__main__":
    main()

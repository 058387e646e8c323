"""PyTorch eager single-image latency of EfficientNet-Lite0 + a top model, the yardstick for
our in-process single-image latency (scripts/bench/predict_latency.sh).

    $TORCH_PYTHON scripts/bench/lite0_latency_torch.py PHOTO [--threads 2] [--repeat 200] \
        [--warmup 20] [--head top|finetune] [--hidden 256] [--classes 2] [--weights FILE]

Times, call by call, what one prediction costs once the photo's bytes are in memory (as a
server has them): PIL decode, RGB, resize to 224x224 (nearest, as pipelines/efficientnet.toml),
(x/255 - 0.5)/0.5, timm's `tf_efficientnet_lite0` forward to the pooled 1280-d features, then
the head, then the sigmoid (one unit for two classes) or softmax, under
`torch.inference_mode()` with `torch.set_num_threads(--threads)` (OMP_NUM_THREADS too, when
unset). Batch 1, eval mode. --warmup calls first (not counted), then --repeat timed calls.

--head top: the pooled features -> Dense --hidden -> ReLU -> Dense units (the top model of
  method 2; --hidden 0: one linear layer); dropout is a no-op at inference.
--head finetune: the frozen part (stem, blocks 0-14) -> the tail (block 15, head conv, pool) ->
  the same top model (method 3's network). In eval mode it is the same computation as `top`,
  split where our fine-tuned model splits it.
The head's weights are random (timing only; the output says so). The backbone's are the
shared ImageNet weights when the file exists (--weights, else
$LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS, else /work/shared/models/efficientnet_lite0_imagenet.safetensors,
renamed from the efficientnet-lite-pytorch names to timm's), else random: either way the
timing is the same.

Needs torch, timm, safetensors, pillow and numpy in a separate virtual environment, never a
dependency of the project (like lite0_torch.py): TORCH_PYTHON names its python, e.g.
  python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch timm safetensors pillow numpy
  TORCH_PYTHON=/tmp/torch-venv/bin/python

Prints the versions, threads, the head and where the weights came from, the photo, and
  p50 X ms  p90 Y ms  p99 Z ms  (mean, min, max)
of the timed calls.
"""

import argparse
import io
import os
import re
import sys
import time

DEFAULT_WEIGHTS = "/work/shared/models/efficientnet_lite0_imagenet.safetensors"
# Blocks per stage of Lite0 (16 in all), to turn `_blocks.N` into timm's `blocks.S.I`.
REPEATS = [1, 2, 2, 3, 3, 4, 1]


def timm_name(name):
    """The timm `tf_efficientnet_lite0` name of an efficientnet-lite-pytorch tensor, or None."""
    if name.startswith("_fc."):
        return None  # the ImageNet classifier: not used
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    head, _, rest = name.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", name)
    if not m:
        raise ValueError(f"unexpected tensor {name}")
    n, layer, rest = int(m.group(1)), m.group(2), m.group(3)
    stage = 0
    while n >= REPEATS[stage]:
        n -= REPEATS[stage]
        stage += 1
    if stage == 0:  # depthwise-separable block: no expansion
        layers = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        layers = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                  "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return f"blocks.{stage}.{n}.{layers[layer]}.{rest}"


def load_backbone_weights(model, path):
    """Loads the shared weights file into timm's model; returns how many tensors were set."""
    import torch
    from safetensors.torch import load_file

    state = {}
    for name, t in load_file(path).items():
        new = timm_name(name)
        if new is not None:
            state[new] = t
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in own]
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or extra or bad:
        raise SystemExit(f"error: {path} does not fit tf_efficientnet_lite0: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, wrong shape {bad[:5]}")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
    return len(state)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--head", choices=["top", "finetune"], default="top")
    p.add_argument("--hidden", type=int, default=256, help="the top model's hidden units (0: none)")
    p.add_argument("--classes", type=int, default=2, help="2: one sigmoid unit; more: softmax")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--weights", help="the Lite0 weights file (default: see above)")
    a = p.parse_args()
    if a.repeat < 1 or a.warmup < 0 or a.threads < 1 or a.classes < 2 or a.hidden < 0:
        p.error("--repeat and --threads must be positive, --warmup and --hidden >= 0, --classes >= 2")
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    try:
        import numpy as np
        import timm
        import torch
        from PIL import Image
    except ImportError as e:
        raise SystemExit(f"error: {e}: run this with a Python that has torch, timm, safetensors, "
                         "pillow and numpy (TORCH_PYTHON; see the header of this script)")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    weights = a.weights or os.environ.get("LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS") or DEFAULT_WEIGHTS
    if os.path.isfile(weights):
        n = load_backbone_weights(model, weights)
        weights_note = f"{weights} ({n} tensors)"
    elif a.weights:
        raise SystemExit(f"error: {a.weights} not found")
    else:
        weights_note = f"random ({weights} not found; the timing is the same)"

    units = 1 if a.classes == 2 else a.classes
    nn = torch.nn
    if a.hidden:
        top = nn.Sequential(nn.Linear(1280, a.hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(a.hidden, units))
        top_desc = f"1280 -> {a.hidden} -> ReLU -> {units}"
    else:
        top = nn.Sequential(nn.Dropout(0.5), nn.Linear(1280, units))
        top_desc = f"1280 -> {units}"
    top = top.eval()
    if a.head == "top":
        def network(x):
            return top(model(x))
        head_desc = f"top model {top_desc}"
    else:
        frozen = nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:-1]).eval()
        tail = nn.Sequential(model.blocks[-1], model.conv_head, model.bn2, model.global_pool).eval()

        def network(x):
            return top(tail(frozen(x)))
        head_desc = f"frozen stem + blocks 0-14, tail block 15 + head conv + pool, top model {top_desc}"
    final = (lambda z: torch.sigmoid(z)) if units == 1 else (lambda z: torch.softmax(z, dim=1))

    with open(a.photo, "rb") as f:
        data = f.read()
    size = a.size

    def predict():
        img = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.NEAREST)
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = torch.from_numpy(((x - 0.5) / 0.5).transpose(2, 0, 1).copy()).unsqueeze(0)
        return final(network(x))

    with Image.open(io.BytesIO(data)) as im:
        photo_desc = f"{a.photo} ({im.width}x{im.height} {im.format}, {len(data)} bytes)"
    times = []
    with torch.inference_mode():
        out = predict()
        assert out.shape == (1, units), out.shape
        for _ in range(a.warmup):
            predict()
        for _ in range(a.repeat):
            t = time.perf_counter()
            predict()
            times.append((time.perf_counter() - t) * 1e3)

    times.sort()

    def pct(q):
        return times[min(len(times) - 1, int(round(q / 100 * (len(times) - 1))))]

    print(f"lite0_latency_torch: torch {torch.__version__}, timm {timm.__version__}, "
          f"{torch.get_num_threads()} threads, batch 1, eager, inference_mode")
    print(f"head: {a.head}: {head_desc} (head weights random: timing only)")
    print(f"backbone weights: {weights_note}")
    print(f"photo: {photo_desc}")
    print(f"per call: decode + resize {size}x{size} nearest + (x/255-0.5)/0.5 + forward + head, "
          f"{a.repeat} calls after {a.warmup} warm-up")
    print(f"p50 {pct(50):.2f} ms  p90 {pct(90):.2f} ms  p99 {pct(99):.2f} ms  "
          f"(mean {sum(times) / len(times):.2f}, min {times[0]:.2f}, max {times[-1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

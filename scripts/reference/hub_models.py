#!/usr/bin/env python3
"""Reference outputs of the hub backbones (crates/models/src/hub.rs) from PyTorch/timm.

Given the deterministic random weights the Rust tests regenerate, builds the timm model,
loads the weights with strict=True (the classifier's fc removed with reset_classifier(0), so
the file must hold exactly the backbone's tensors), runs it in eval mode on a fixed input and
writes crates/models/tests/data/hub_<model>.safetensors with `input` [2,3,64,64] and `pooled`
[2,D], the torch/timm versions and the weights' sha256 in the metadata (the weights file itself
is never committed: the test regenerates it).

    cargo run -p models --example hub_weights -- convnext_tiny /tmp/convnext_tiny.safetensors
    /opt/torchenv/bin/python scripts/reference/hub_models.py convnext_tiny /tmp/convnext_tiny.safetensors

With --bench, instead times the pooled features at 224x224, batch 8, on --threads threads.
torch and timm are yardsticks, never project dependencies:
    python3 -m venv /opt/torchenv && /opt/torchenv/bin/pip install torch timm safetensors numpy
"""

import argparse
import hashlib
import pathlib
import time

import numpy as np
import safetensors
import safetensors.torch
import timm
import torch

MODELS = ("convnext_tiny", "resnet50")
INPUT_SHAPE = (2, 3, 64, 64)
INPUT_SEED = 0
ROOT = pathlib.Path(__file__).resolve().parents[2]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(name, weights):
    model = timm.create_model(name, pretrained=False)
    model.reset_classifier(0)
    state = safetensors.torch.load_file(str(weights))
    # BatchNorm's num_batches_tracked is not in the file; PyTorch fills it in for a state dict
    # without version metadata, so strict loading checks every other name and shape.
    model.load_state_dict(state, strict=True)
    return model.eval()


def reference(name, weights, out):
    model = build(name, weights)
    x = np.random.default_rng(INPUT_SEED).standard_normal(INPUT_SHAPE, dtype=np.float32)
    x = torch.from_numpy(x)
    with torch.no_grad():
        pooled = model(x)
    assert pooled.shape == (INPUT_SHAPE[0], model.num_features), pooled.shape
    metadata = {
        "model": name,
        "weights_sha256": sha256(weights),
        "input": f"numpy default_rng({INPUT_SEED}).standard_normal({list(INPUT_SHAPE)}, float32)",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {"input": x.contiguous(), "pooled": pooled.contiguous()}, str(out), metadata=metadata
    )
    print(f"{name}: pooled {list(pooled.shape)}, max |pooled| {pooled.abs().max():.4g}, "
          f"std {pooled.std():.4g} -> {out}")


def bench(name, weights, threads, repeats):
    torch.set_num_threads(threads)
    model = build(name, weights)
    x = torch.from_numpy(
        np.random.default_rng(INPUT_SEED).standard_normal((8, 3, 224, 224), dtype=np.float32))
    with torch.no_grad():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    print(f"{name}: torch {torch.__version__}, {threads} threads, batch 8 at 224x224: "
          f"min {min(times):.3f} s, median {sorted(times)[len(times) // 2]:.3f} s "
          f"over {repeats} runs")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=MODELS)
    p.add_argument("weights", type=pathlib.Path, help="random weights from the hub_weights example")
    p.add_argument("--out", type=pathlib.Path,
                   help="default: crates/models/tests/data/hub_<model>.safetensors")
    p.add_argument("--bench", action="store_true", help="time 224x224 batch 8 instead")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.bench:
        bench(args.model, args.weights, args.threads, args.repeats)
    else:
        out = args.out or ROOT / "crates/models/tests/data" / f"hub_{args.model}.safetensors"
        reference(args.model, args.weights, out)


if __name__ == "__main__":
    main()

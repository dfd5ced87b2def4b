"""Train the bundled digits CNN and export loom/models/digits_cnn.onnx (dev-only, needs torch).

torch is not a dependency of Loom. Run this script from a throwaway environment:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 onnx==1.22.0 scikit-learn numpy
    /tmp/torchenv/bin/python scripts/train_digits.py

The model classifies scikit-learn's 8x8 digits (pixels scaled to [0, 1]; the split is
`train_test_split(test_size=0.25, random_state=0, stratify=y)`): three 3x3 convolutions (the
second with stride 2, the last two followed by BatchNormalization so that fold_batchnorm has
something to fold), ReLUs, Flatten and a Gemm to 10 logits. The export (TorchScript exporter,
opset 17, dynamic batch) and the float test accuracy in loom/models/digits_cnn.json are
reproducible: seeds are fixed and training runs on one thread.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "loom" / "models"
EPOCHS = 60
BATCH = 32


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The standard split: float32 images (N, 1, 8, 8) in [0, 1] and int64 labels."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)


def make_model() -> nn.Module:
    """The CNN: 1x8x8 -> 8x8x8 -> 16x4x4 -> 16x2x2 -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correctly classified images."""
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    """Adam with a cosine learning-rate schedule, cross-entropy, shuffled mini-batches."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(xt)).split(BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()


def export(model: nn.Module, path: Path) -> None:
    """ONNX export with the TorchScript exporter, BatchNormalization kept as its own node."""
    model.eval()
    # The TorchScript exporter is deprecated, but it is the one whose output Loom pins down.
    warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        # EVAL mode would fuse each BatchNormalization into its Conv; Loom's own pass does that.
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )


def main() -> None:
    """Train, report, export."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, x_test, y_train, y_test = digits_split()
    model = make_model()
    train(model, x_train, y_train)
    acc = accuracy(model, x_test, y_test)
    OUT.mkdir(parents=True, exist_ok=True)
    export(model, OUT / "digits_cnn.onnx")
    (OUT / "digits_cnn.json").write_text(json.dumps({"float_test_accuracy": acc}, indent=2) + "\n")
    print(f"float test accuracy {acc:.4f} ({len(y_test)} images); wrote {OUT / 'digits_cnn.onnx'}")


if __name__ == "__main__":
    main()

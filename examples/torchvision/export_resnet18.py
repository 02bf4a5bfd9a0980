"""Export a torchvision ResNet-18 to ONNX the way a user would, plus unlabeled images to
prune it on (oto then distills from the original model's outputs).

    python examples/torchvision/export_resnet18.py --out target/examples/resnet18
    oto prune --model target/examples/resnet18/resnet18.onnx \
              --data target/examples/resnet18/images.npz \
              --target-sparsity 0.5 --steps 100 --lr 0.01 --out target/examples/resnet18/pruned

A real user starts from trained weights (weights="DEFAULT" downloads them) and their own
images; this example stays offline: random weights with a fixed seed and random images.
"""

import argparse
import os

import numpy as np
import torch
import torchvision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--images", type=int, default=256, help="number of unlabeled images")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, args.size, args.size)
    path = os.path.join(args.out, "resnet18.onnx")
    torch.onnx.export(
        model,
        (x,),
        path,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},),
        dynamo=True,
    )
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.images, 3, args.size, args.size), dtype=np.float32)
    np.savez(os.path.join(args.out, "images.npz"), x=images)
    print(f"wrote {path} and {args.out}/images.npz ({args.images} images, no labels)")


if __name__ == "__main__":
    main()

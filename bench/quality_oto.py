"""The baseline of bench/quality.md, run here: OTO 3.0.1's HESSO (the `only_train_once` package,
PyTorch) on the digits CNN with the 30-epoch budget of the quality grid, seed for seed, so that
the grid compares oto with OTO measured by the same command on the same machine instead of with
numbers quoted from elsewhere.

    make bench-quality-oto                                   # sets up bench/.venv-oto, all targets, seeds 0-19
    bench/.venv-oto/bin/python bench/quality_oto.py --targets s0.5 --seeds 0,1,2

The run mirrors `oto prune --config examples/digits.toml --epochs 30 --batch-size 64` with
`--lr-after-pruning continue`, OTO's one schedule: graphs/zoo.py's DemoCNN (as
bench/quality_scratch.py builds it) from PyTorch's initialization under the seed, whole batches
of 64 in a fresh random order each epoch (660 steps), OTO's `hesso` with variant sgd, lr 0.05,
momentum 0.9, no weight decay, its default importance criteria, the target group sparsity, and
the HESSO schedule `oto prune` derives for 660 steps (pruning from step 66 over 198 steps in 5
periods), torch's cosine schedule to 0 over the 660 steps, one thread. OTO then constructs the
compact model (`construct_subnet`); its test accuracy on the 359 held-out images, parameters and
MACs (per image, multiply-accumulates of the convolutions and the linear layer, as oto counts
them) are recorded in bench/quality.json as method `oto-3.0.1`, budget `30ep`, and
`bench/quality.py --budgets ""` puts them in the table.

On a machine without a GPU, the one mask OTO's HESSO moves to the GPU unconditionally stays on the
CPU (a patch of `Tensor.cuda` in this process). OTO 3.0.1 needs a PyTorch whose TorchScript ONNX passes it calls still exist (it fails to import
with the project's PyTorch 2.13): the make target installs it with torch 2.2.2 into its own venv,
from PyPI.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from quality import key, record  # noqa: E402
from quality_scratch import Net, accuracy, load_digits, steps, train  # noqa: E402


def macs(net):
    """Multiply-accumulates per 8x8 image: each convolution's output positions (8x8, 8x8, then
    4x4 after the pool) times its weight's elements, plus the linear layer's weight."""
    positions = {"conv1": 64, "conv2": 64, "conv3": 16}
    total = sum(positions[name] * m.weight.numel() for name, m in net.named_modules() if isinstance(m, nn.Conv2d))
    return total + net.fc.weight.numel()


def run(target, seed):
    from only_train_once import OTO

    if not torch.cuda.is_available():
        # OTO's HESSO puts one mask on the GPU unconditionally (`.cuda()` in
        # `hesso.py`); on a machine without one, that mask stays on the CPU with the model.
        torch.Tensor.cuda = lambda self, *args, **kwargs: self

    torch.manual_seed(seed)
    net = Net(16, 32, 64)
    params_before, macs_before = sum(p.numel() for p in net.parameters()), macs(net)
    oto = OTO(net, torch.zeros(1, 1, 8, 8))
    x, y, xt, yt = load_digits()
    n = steps(x)
    optimizer = oto.hesso(
        variant="sgd",
        lr=0.05,
        first_momentum=0.9,
        weight_decay=0.0,
        target_group_sparsity=target,
        start_pruning_step=n // 10,
        pruning_steps=n * 3 // 10,
        pruning_periods=5,
    )
    started = time.time()
    train(net, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n), x, y)
    sparse_accuracy = accuracy(net, xt, yt)
    with tempfile.TemporaryDirectory(prefix="oto-301-") as out:
        oto.construct_subnet(out_dir=out)
        compact = torch.load(oto.compressed_model_path, weights_only=False)
    compact_accuracy = accuracy(compact, xt, yt)
    if compact_accuracy != sparse_accuracy:
        sys.exit(f"target {target} seed {seed}: OTO's compact model scores {compact_accuracy} but the trained one {sparse_accuracy}")
    params_after = sum(p.numel() for p in compact.parameters())
    return {
        "accuracy": compact_accuracy,
        "params": params_after,
        "params_ratio": params_after / params_before,
        "macs": macs(compact),
        "macs_ratio": macs(compact) / macs_before,
        "group_sparsity": optimizer.compute_group_sparsity_param_norm()[0],
        "narrow_groups": 0,
        "widths": [m.out_channels for m in compact.modules() if isinstance(m, nn.Conv2d)],
        "seconds": time.time() - started,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default="s0.5,s0.7,s0.8,s0.9", help="group sparsities, as sX")
    p.add_argument("--seeds", default=",".join(str(s) for s in range(20)))
    p.add_argument("--json", default=str(ROOT / "quality.json"))
    p.add_argument("--fresh", action="store_true", help="rerun runs already in the JSON file")
    a = p.parse_args()
    torch.set_num_threads(1)
    path = Path(a.json)
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {key(r) for r in runs if "error" not in r["result"]}
    for target in a.targets.split(","):
        if not target.startswith("s"):
            sys.exit(f"--targets {target}: OTO takes a group sparsity only (sX)")
        for seed in [int(s) for s in a.seeds.split(",")]:
            entry = {"budget": "30ep", "target": target, "method": "oto-3.0.1", "seed": seed, "extra": []}
            if key(entry) in done and not a.fresh:
                continue
            entry["result"] = run(float(target[1:]), seed)
            # Re-read: a grid run beside this one may have written the file meanwhile.
            runs = json.loads(path.read_text()) if path.exists() else []
            runs = record(
                path,
                runs,
                entry,
                key,
                f"30ep {target} oto-3.0.1 seed {seed}",
                lambda r: f"acc {100 * r['accuracy']:.2f}% params {r['params_ratio']:.3f} MACs {r['macs_ratio']:.3f} "
                f"widths {r['widths']} ({r['seconds']:.0f} s)",
            )


if __name__ == "__main__":
    main()

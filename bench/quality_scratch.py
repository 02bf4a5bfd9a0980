"""A baseline for bench/quality.md: the digits CNN of graphs/zoo.py at given widths, trained
from scratch in PyTorch with the 30-epoch budget of the quality grid (batch 64, SGD lr 0.05
momentum 0.9, cosine to 0 over the 660 steps, one thread), test accuracy on the 359 held-out
images, ten seeds. What pruning to that architecture should reach at least.

    python bench/quality_scratch.py 2,4,7             # the smallest model the default cap allows
    python bench/quality_scratch.py 2,4,7 --lr 0.1    # at the rate the digits job restarts at
"""

import argparse

import numpy as np
import torch
import torch.nn as nn
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The 30-epoch budget of the quality grid: as `oto prune --epochs 30 --batch-size 64`, whole
# batches only (22 of 64 per epoch, 660 steps).
EPOCHS, BATCH = 30, 64


def load_digits():
    """examples/data's digits as tensors: training images and labels, test images and labels."""
    train, test = (np.load(ROOT / f"examples/data/digits_{s}.npz") for s in ("train", "test"))
    return torch.tensor(train["x"]), torch.tensor(train["labels"]), torch.tensor(test["x"]), torch.tensor(test["labels"])


def steps(x):
    """Optimizer steps of the budget on the training images `x`."""
    return EPOCHS * (len(x) // BATCH)


def train(net, optimizer, schedule, x, y):
    """The budget's training loop: a fresh random order each epoch (torch's generator),
    cross-entropy, `optimizer` and then `schedule` stepped after every batch."""
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        for i in range(0, len(x) // BATCH * BATCH, BATCH):
            batch = order[i : i + BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
            schedule.step()


def accuracy(net, x, y):
    """Share of `x` that `net`, in eval mode, classifies as `y`."""
    net.eval()
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


class Net(nn.Module):
    """graphs/zoo.py's DemoCNN with widths (a, b, c) instead of (16, 32, 64)."""

    def __init__(self, a, b, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a)
        self.conv2, self.bn2 = nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b)
        self.conv3, self.bn3 = nn.Conv2d(b, c, 3, padding=1), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("widths", nargs="?", default="2,4,7", help="channels of the three convolutions")
    p.add_argument("--lr", type=float, default=0.05, help="the peak of the cosine (default: the grid's 0.05)")
    args = p.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    torch.set_num_threads(1)
    x, y, xt, yt = load_digits()
    accuracies = []
    for seed in range(10):
        torch.manual_seed(seed)
        net = Net(*widths)
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
        train(net, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps(x)), x, y)
        accuracies.append(100 * accuracy(net, xt, yt))
    a = np.array(accuracies)
    print(f"widths {widths}, lr {args.lr}: {a.mean():.2f}% ± {a.std(ddof=1) / np.sqrt(len(a)):.2f} (worst {a.min():.2f}%) over seeds 0-9:",
          " ".join(f"{v:.2f}" for v in a))


if __name__ == "__main__":
    main()

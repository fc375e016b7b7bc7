"""The PyTorch examples' VAE recipe (examples/vae/main.py), transcribed in plain PyTorch.

Same model (784-400-20 MLP, ReLU, sigmoid output), same loss (summed BCE + KLD), same
optimiser (Adam 1e-3), batch 128, 10 epochs, seed 1, a test pass after every epoch that
saves a reconstruction comparison, and 64 samples saved per epoch. torchvision does not
run here, so its MNIST dataset and ToTensor/save_image are re-created with the same
per-item pipeline: each item is turned into a PIL image, then into a float tensor.

Usage: python pytorch_examples_vae.py MNIST_DIR OUT_DIR [--epochs 10]
Prints one JSON line: {"test_loss_per_epoch": [...], "seconds": ...}.
"""

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data
from PIL import Image
from torch import nn, optim
from torch.nn import functional as F

START = time.perf_counter()


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class MNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST's item pipeline: uint8 array -> PIL image -> transform."""

    def __init__(self, root: Path, train: bool, transform):
        prefix = "train" if train else "t10k"
        self.data = torch.from_numpy(read_idx(root / f"{prefix}-images-idx3-ubyte.gz").copy())
        self.targets = torch.from_numpy(read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").copy())
        self.transform = transform

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        return self.transform(img), target

    def __len__(self):
        return len(self.data)


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """transforms.ToTensor for a mode-L PIL image: HxW uint8 -> 1xHxW float in [0, 1]."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


def save_image(tensor: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """torchvision.utils.save_image for 1-channel images (grid with 2-pixel padding)."""
    n, _, h, w = tensor.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.zeros(rows * (h + 2) + 2, nrow * (w + 2) + 2)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = tensor[
            i, 0
        ]
    array = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
    Image.fromarray(array).save(path)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mnist_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--log-interval", type=int, default=10)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    device = torch.device("cpu")
    train_loader = torch.utils.data.DataLoader(
        MNIST(args.mnist_dir, train=True, transform=to_tensor), batch_size=128, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(
        MNIST(args.mnist_dir, train=False, transform=to_tensor), batch_size=128, shuffle=False
    )
    model = VAE().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        train_loss = 0
        for batch_idx, (data, _) in enumerate(train_loader):
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            if batch_idx % args.log_interval == 0:
                print(
                    f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)}]"
                    f"\tLoss: {loss.item() / len(data):.6f}"
                )
        print(f"====> Epoch: {epoch} Average loss: {train_loss / len(train_loader.dataset):.4f}")
        model.eval()
        test_loss = 0
        with torch.no_grad():
            for i, (data, _) in enumerate(test_loader):
                data = data.to(device)
                recon_batch, mu, logvar = model(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
                if i == 0:
                    n = min(data.size(0), 8)
                    comparison = torch.cat([data[:n], recon_batch.view(128, 1, 28, 28)[:n]])
                    save_image(
                        comparison.cpu(), args.out_dir / f"reconstruction_{epoch}.png", nrow=n
                    )
        test_loss /= len(test_loader.dataset)
        print(f"====> Test set loss: {test_loss:.4f}")
        losses.append(test_loss)
        with torch.no_grad():
            sample = model.decode(torch.randn(64, 20).to(device)).cpu()
            save_image(sample.view(64, 1, 28, 28), args.out_dir / f"sample_{epoch}.png")
    print(json.dumps({"test_loss_per_epoch": losses, "seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()

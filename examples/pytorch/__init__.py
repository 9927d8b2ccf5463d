"""PyTorch example: a MnasNet-like search space on distorted digits, wired to the proxy-task protocol."""

"""Training: losses, checkpoints, the training loop and its configuration files."""

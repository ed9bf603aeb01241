"""The training engine: configs, losses, checkpoints and the loop."""

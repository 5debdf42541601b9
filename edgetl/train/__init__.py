"""Training: losses, optimizer and schedule, the loop, checkpoints and the fit driver."""

"""Hardware: the GPU catalog (profiles/*.json) and device detection (the only torch.cuda user)."""

"""Hardware: the GPU catalog (profiles/*.json) and device detection (the only torch.cuda user)."""

# Loading the system catalog module registers system names as GPU names in get_gpu
# ("--gpu dgx-h100"); it imports nothing heavy.
from shapewise.hardware import system as _system  # noqa: F401

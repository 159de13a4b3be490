"""Process-group setup shared by `pretrain` and `finetune` under torchrun (one process = one rank).

torchrun sets WORLD_SIZE / LOCAL_RANK; without it the run is a single process and no process
group is created. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
import platform

import torch
import torch.distributed as dist

from ..errors import UsageError


def init_distributed(device_opt: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size) for this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_opt in ("auto", "cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: fp32 training at tensor-core speed
        return torch.device("cuda", local_rank), dist.get_rank() if world > 1 else 0, world
    if device_opt.startswith("cuda"):
        raise UsageError("--device cuda requested but torch sees no CUDA device")
    if world > 1:  # share the cores between the local processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    return torch.device("cpu"), dist.get_rank() if world > 1 else 0, world


def hardware_name(device: torch.device) -> str:
    """For training records: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} CPU threads"


def finish_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

"""Where the engine runs and in what number format. torch is imported where it is needed:
check_present() answers without it, in a fraction of the seconds torch takes to load."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch


def check_present(name: str) -> None:
    """Refuse a device that is certainly absent, without loading torch (select_device checks
    the rest once torch is there): CUDA where no NVIDIA driver is installed, MPS off macOS."""
    if name.startswith("cuda") and sys.platform.startswith("linux") and not (
            Path("/proc/driver/nvidia/version").exists() or ctypes.util.find_library("cuda")):
        raise DeviceError(f"device {name!r} asked for, but no NVIDIA GPU driver is installed "
                          "here. Use --device cpu or auto, or install the NVIDIA driver.")
    if name == "mps" and sys.platform != "darwin":
        raise DeviceError("device 'mps' asked for, but Apple's Metal backend exists only on "
                          "macOS (Apple silicon, 12.3+). Use --device cpu or auto.")


def select_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then the CPU. A device asked for but absent is an error."""
    import torch

    cuda, mps = torch.cuda.is_available(), _mps_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not cuda:
            build = "a CPU-only build" if torch.version.cuda is None else \
                f"built for CUDA {torch.version.cuda}, but no NVIDIA GPU/driver answers"
            raise DeviceError(f"device {name!r} asked for, but this torch {torch.__version__} is "
                              f"{build}. Use --device cpu or auto, or install a CUDA build.")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} asked for, but only "
                              f"{torch.cuda.device_count()} CUDA device(s) are present")
        return torch.device("cuda", index)
    if name == "mps":
        if not mps:
            raise DeviceError("device 'mps' asked for, but Apple's Metal backend is not "
                              "available here (it needs Apple silicon and macOS 12.3+)")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _cpuinfo(field: str) -> str | None:
    """A field of Linux's /proc/cpuinfo (first CPU), or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux); empty where unknown."""
    return set((_cpuinfo("flags") or "").split())


def cpu_has_fast_bf16() -> bool:
    """bf16 convolutions beat fp32 on x86 CPUs with AVX-512 BF16 or AMX (measured: bench/)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def release_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim), where there is
    one. Without it, a long CPU run's resident memory creeps up with every evaluation as the
    heap fragments: measured, 1024x683 in blocks in a 1.2 GB budget, 1.20 -> 1.30 GB over 6
    iterations, flat at 1.25 with it, at the same speed."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def hold_to_budget() -> None:
    """For a run held to a --max-memory it does not fit whole: large tensors (4 MB and more)
    get their own pages from the system and give them back when freed, instead of glibc
    raising that threshold as it goes and keeping them in a heap that fragments. Measured
    (1024x683 in blocks of 224, 1.2 GB, with release_memory): peak 1.25 -> 1.08 GB, 15 %
    slower; so only where the user capped the memory. For the rest of the process."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD; setting it also stops its adjustment


def _libc():
    if not hasattr(_libc, "lib"):
        try:
            _libc.lib = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
        except OSError:  # musl or another libc: nothing to tune
            _libc.lib = None
    return _libc.lib


def select_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of the VGG passes (fp32: no autocast). Losses stay fp32 regardless."""
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError("this GPU has no bf16 support; use --precision fp16 or fp32")
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceError("fp16 is not supported on the CPU; use bf16 or fp32")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def available_memory(device: torch.device | str) -> int:
    """Bytes the engine may use on the device (free GPU memory, or available RAM)."""
    if getattr(device, "type", device) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return free
    import psutil

    return psutil.virtual_memory().available


def describe(device: torch.device, dtype: torch.dtype) -> str:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        ("Apple GPU (MPS)" if device.type == "mps" else f"{cpu_name()}, "
         f"{torch.get_num_threads()} threads")
    return f"{device.type} ({name}), {str(dtype).replace('torch.', '')}, " \
           f"torch {torch.__version__}, Python {sys.version.split()[0]}"


def machine() -> str:
    """One line for benchmark figures: CPU, threads, instruction set, torch and Python."""
    import torch

    flags = cpu_flags()
    isa = "AVX-512 BF16" if flags & {"avx512_bf16", "amx_bf16"} else (
        "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX")
    return (f"{cpu_name()}, {torch.get_num_threads()} threads, {isa}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")

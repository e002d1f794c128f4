"""Which PyTorch build the core gets (CUDA, CPU, or the default wheel) and where pip finds it."""
from __future__ import annotations

import os
import shutil

from .errors import EXIT_USAGE, InstallError
from .processes import run_capture

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
PYPI = "https://pypi.org/simple"
# Rough free space needed to install PyTorch (download + unpacked), by build.
SPACE_NEEDED_GB = {"cpu": 1.5, "cuda": 6.0, "default": 1.5}
NVIDIA_SMI_WINDOWS = (r"C:\Windows\System32\nvidia-smi.exe",
                      r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe")


def wanted_build(choice: str, platform: str) -> tuple[str, str, str | None]:
    """("cuda" | "cpu" | "default", why, a warning or None) for --torch CHOICE."""
    if platform == "darwin":
        if choice == "cuda":
            raise InstallError("There is no CUDA PyTorch for macOS; use --torch auto (the "
                               "default wheel, which uses the GPU through MPS on Apple "
                               "silicon) or --torch cpu.", EXIT_USAGE)
        return "default", "macOS: the default wheel (MPS on Apple silicon)", None
    if choice != "auto":
        return choice, f"--torch {choice}", None
    smi = shutil.which("nvidia-smi")
    if not smi and platform == "win32":
        smi = next((c for c in NVIDIA_SMI_WINDOWS if os.path.isfile(c)), None)
    if not smi:
        return "cpu", "no NVIDIA GPU (nvidia-smi not found)", None
    rc, out = run_capture([smi, "-L"], 30)
    if rc == 0 and "GPU" in out:
        return "cuda", f"NVIDIA GPU found: {out.strip().splitlines()[0]}", None
    return "cpu", "nvidia-smi lists no GPU", (
        f"nvidia-smi was found but lists no GPU ({out.strip()[-200:]}); installed the CPU build "
        "of PyTorch. Use --torch cuda to force the CUDA build.")


def indexes(build: str, platform: str, torch_index: str | None) -> list[str | None]:
    """Package indexes to try in order (None: pip's default, PyPI)."""
    if torch_index is not None:
        return [torch_index or None]
    if build == "cpu" and platform.startswith("linux"):
        return [TORCH_CPU_INDEX, None]   # PyPI's Linux wheel is the large CUDA one
    if build == "cuda" and platform == "win32":
        return [TORCH_CUDA_INDEX_WINDOWS]  # PyPI's Windows wheel is CPU-only
    return [None]


def pip_command(py: str, torch_min: tuple[int, ...], index: str | None) -> list[str]:
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check",
           "torch>={}".format(".".join(map(str, torch_min)))]
    if index and index != PYPI:
        cmd += ["--index-url", index]
    return cmd


def reachable(url: str, timeout: float = 10) -> bool:
    """Whether a package index answers at all (any HTTP status counts), so that pip is not left
    retrying an index a firewall blocks."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except Exception:  # any other failure means: cannot be reached
        return False
    return True

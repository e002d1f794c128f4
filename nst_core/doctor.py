"""`nst doctor`: what a bug report needs, in one screen."""

from __future__ import annotations

import os
import platform
import sys

import torch

from . import __version__, weights
from .device import cpu_has_fast_bf16, cpu_name, select_dtype
from .errors import WeightsError
from .options import MODELS


def report() -> str:
    lines = [
        f"nst_core     {__version__}",
        f"Python       {sys.version.split()[0]} ({sys.executable})",
        f"platform     {platform.platform()}",
        f"torch        {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})",
        f"CPU          {cpu_name()}, {os.cpu_count()} logical cores, "
        f"{torch.get_num_threads()} torch threads",
        f"CPU bf16     {'yes (avx512_bf16/AMX)' if cpu_has_fast_bf16() else 'no fast bf16'}; "
        f"auto precision on the CPU: "
        f"{str(select_dtype('auto', torch.device('cpu'))).replace('torch.', '')}",
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"CUDA {i}       {props.name}, {props.total_memory / 2**30:.1f} GB, "
                         f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        lines.append("CUDA         not available")
    mps = getattr(torch.backends, "mps", None)
    lines.append(f"MPS          {'available' if mps and mps.is_available() else 'not available'}")
    for model in MODELS:
        path = weights.weights_path(model)
        try:
            weights.verify(path, model)
            state = f"OK ({path})"
        except WeightsError as e:  # VGG16's are optional: missing ones are no fault
            missing = not path.exists() and model != "vgg19"
            state = f"not installed. {weights.how_to_get(model)}" if missing else \
                f"NOT USABLE: {e.message}"
        lines.append(f"{model} weights {state}")
    return "\n".join(lines)

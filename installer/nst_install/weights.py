"""Fetching and verifying the VGG19 weights, through the core's own `nst weights fetch`."""
from __future__ import annotations

import os

from .console import shell_words, step
from .context import Context, full_path
from .errors import classify
from .processes import run_capture


def fetch_weights(ctx: Context) -> None:
    """Fetch the weights; a failure is kept in the report (everything else is installed)."""
    step("Weights (VGG19)")
    nst = ctx.layout.venv_script(ctx.venv, "nst")
    base = [nst] if os.path.isfile(nst) else [ctx.venv_python, "-m", "nst_core.cli"]
    cmd = base + ["weights", "fetch"]
    if ctx.args.weights_from:
        cmd += ["--from", full_path(ctx.args.weights_from)]
    # Where the core keeps them, for the manifest: uninstall removes them only if we fetched them.
    path = ctx.actions.check(weights_path, base)
    existed = bool(path) and os.path.isfile(path)
    rc, tail = ctx.actions.run(cmd, "fetch and verify the weights")
    if rc != 0:
        kind = classify(tail)
        if kind == "network":
            why = "could not be downloaded (no network?)"
        elif kind == "space":
            why = "could not be stored (disk full?)"
        else:
            why = "could not be fetched ({})".format(" | ".join(tail[-3:]).rstrip("."))
        ctx.report.weights_error = (
            f"The VGG19 weights {why}. Everything else is installed. Fetch them later with\n"
            f"        {shell_words(base + ['weights', 'fetch'])}\n      or, with a copy of "
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, with `... --from FILE`; or run "
            "this installer again.")
        return
    previous = ctx.manifest.data.get("weights") or {}
    fetched = not existed or (previous.get("path") == path and previous.get("fetched"))
    if path:
        ctx.manifest.data["weights"] = {"path": path, "fetched": bool(fetched)}
        ctx.manifest.save()
    ctx.report.did("weights verified%s" % (f" ({path})" if path else ""),
                   "fetch and verify the weights")


def weights_path(base: list[str]) -> str | None:
    rc, out = run_capture(base + ["weights", "path"], 120)
    return out.strip().splitlines()[-1].strip() if rc == 0 and out.strip() else None

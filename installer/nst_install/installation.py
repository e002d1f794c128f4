"""The install flow: find GIMP, check everything, then the environment, the plug-ins, the
weights and the summary. The manifest is marked "installing" before the first change and
"complete" after the last, so an interrupted run is finished by the next one."""
from __future__ import annotations

import os

from .console import say, step
from .context import Context
from .environment import CoreEnvironment
from .errors import EXIT_OK, EXIT_WEIGHTS
from .gimp import choose_targets
from .plugins import PluginCopier, check_targets, sandbox_notes
from .weights import fetch_weights


def install(ctx: Context) -> int:
    args, manifest, report = ctx.args, ctx.manifest, ctx.report
    report.heading("Neural Style for GIMP installer")
    say(f"    source: {ctx.source}")
    say(f"    data folder: {ctx.data_dir}")
    if manifest.state == "installing":
        say("    an earlier run did not finish; this run completes it")
    if args.no_plugins:
        step("Looking for GIMP: skipped (--no-plugins)")
        targets, notes = [], []
    else:
        targets, notes = choose_targets(ctx.layout, args.gimp_dir, args.gimp_version,
                                        args.include_snap)
    check_targets(ctx.source, targets)

    manifest.data["source"] = ctx.source
    manifest.data["venv"] = ctx.venv
    manifest.save("installing")

    has_env = os.path.isfile(ctx.venv_python)
    if args.skip_env:
        step("Core environment: skipped (--skip-env)")
        if not has_env:
            report.warnings.append(f"--skip-env: {ctx.venv_python} does not exist yet; the "
                                   "plug-in cannot start the core until it does.")
    else:
        CoreEnvironment(ctx).setup()

    copier = PluginCopier(ctx)
    for t in targets:
        if not t.skipped:
            copier.install(t)
    sandbox_notes(targets, ctx)

    if args.skip_weights:
        step("Weights: skipped (--skip-weights)")
    elif args.skip_env and not has_env:
        step("Weights: skipped (no core environment)")
    else:
        fetch_weights(ctx)

    manifest.save("complete")
    report.todo += notes
    report.print_install(targets, ctx.layout.venv_script(ctx.venv, "nst"), ctx.script)
    return EXIT_WEIGHTS if report.weights_error else EXIT_OK


"""The installer behind installer/install.py, one module per job (read them in this order):

    cli           the command line: options, checks of bad input before any work, exit codes
    context       one run's settings: folders, the manifest, the actions object, the report
    layout        where things live on each platform (data folder, environment, config)
    gimp          finding GIMP: user folders and programs, and which plug-ins folders to use
    manifest      what the installer created (also the journal of a run in progress)
    actions       every change goes through one object that makes it or, in a dry run, says it
    files         file helpers, among them the one atomic write
    environment   the core's Python environment (venv, PyTorch, the core itself)
    torch_build   which PyTorch build to install, and from where
    plugins       copying the plug-ins into each GIMP and writing their core command
    weights       fetching the VGG19 weights through the core
    installation  the install flow, step by step
    uninstall     removing exactly what the manifest lists
    summary       what was done, what is left to do, how to start
    console, processes, errors: output, child processes, the error type and its messages

Standard library only, Python 3.8+: users run it with whatever Python 3 they have.
"""

APP = "neural-style-gimp"
MANIFEST_NAME = "install-manifest.json"
ENV_MARKER = "nst-install.json"
CONFIG_NAME = "nst-core.json"
FLATPAK_ID = "org.gimp.GIMP"
FLATPAK_GRANT = "flatpak override --user --talk-name=org.freedesktop.Flatpak " + FLATPAK_ID
FLATPAK_REVOKE = "flatpak override --user --no-talk-name=org.freedesktop.Flatpak " + FLATPAK_ID
MENU = "Filters > Artistic > Neural Style Transfer..."
# Temp files are ".NAME" + TMP_MARK + random: an interrupted run's leftovers are recognisable.
TMP_MARK = ".nst-tmp-"
BACKUP_SUFFIX = ".nst-backup"

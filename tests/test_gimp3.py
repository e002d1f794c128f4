"""The GIMP 3 plug-in in a real GIMP 3 (Debian trixie, GIMP 3.0.x) in a chroot.

The chroot is built once and cached (tests/gimp3/chroot.py). The plug-in is installed into a fresh
GIMP profile there, with nst-core.json pointing at this virtual environment's Python, which is
bind-mounted into the chroot at the same path with this checkout and the VGG19 weights. One GIMP
session runs tests/gimp3/gimp_checks.py, which calls plug-in-neural-style through the PDB on
images it creates and writes what it saw as JSON; the tests below assert on it.

Skipped, with the reason, where a chroot cannot be built (not root, no apt, no mirror) or the
weights are missing. NST_REQUIRE_GIMP=1 turns those skips into failures (for CI).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.gimp3 import chroot, harness

pytestmark = pytest.mark.gimp

CHECKS = harness.HERE / "gimp_checks.py"
GUI_CHECKS = harness.HERE / "gui_checks.py"
STYLE_NAME = "test-stripes"
OPTIONS = {"preset": "draft", "size-mode": "custom", "size": 48, "strength": 1.0,
           "colors": "style", "device": "cpu", "seed": 0}
# Long enough to be cancelled mid-run: two scales (181, 256 px), 160 iterations.
CANCEL_OPTIONS = {"preset": "high", "size": 256}
# A 1024x768 layer at its own size in 1 GB: its last scales run in blocks (bf16 and fp32).
BLOCK_OPTIONS = {"size-mode": "layer", "max-memory": 1.0}


def _unavailable(reason):
    if os.environ.get("NST_REQUIRE_GIMP") == "1":
        pytest.fail(f"real-GIMP tests required (NST_REQUIRE_GIMP=1) but: {reason}")
    pytest.skip(reason)


def _session(packages=chroot.PACKAGES):
    try:
        # NST_GIMP_PLUGIN_DIR: install another copy of gimp_plugin/ (e.g. to try a fix).
        s = harness.open_session(packages, os.environ.get("NST_GIMP_PLUGIN_DIR") or None)
    except chroot.Unavailable as e:
        _unavailable(f"no GIMP 3 chroot: {e}")
    from tests.conftest import stripes

    stripes(64, 64).save(s.dir / f"{STYLE_NAME}.png")
    return s


@pytest.fixture(scope="module")
def gimp_run():
    """One headless GIMP session running every case of tests/gimp3/gimp_checks.py."""
    s = _session()
    try:
        cases = os.environ.get("NST_GIMP_CASES")
        params = {"style": s.inside(s.dir / f"{STYLE_NAME}.png"),
                  "core_config": s.inside(s.core_config), "options": OPTIONS,
                  "cancel_options": CANCEL_OPTIONS, "cancel_after_s": 5.0,
                  "block_options": BLOCK_OPTIONS,
                  "cases": cases.split(",") if cases else None}
        proc, results = harness.run_headless(s, CHECKS, params)
        if not results.get("done"):
            pytest.fail(f"GIMP did not finish the checks (exit {proc.returncode}):\n"
                        f"{(proc.stdout or '')[-4000:]}")
        results.update(output=proc.stdout or "", session=s)
        print(f"\nGIMP {s.version}: chroot ready in {s.build_s:.0f} s, checks ran in "
              f"{results.get('seconds', 0):.0f} s")
        yield results
    finally:
        harness.close_session(s)


@pytest.fixture(scope="module")
def remote_run(tmp_path_factory):
    """A GIMP session whose core runs through ssh (tests/remote.py's private sshd), as the
    README's NST_CORE_COMMAND="ssh HOST nst worker" does."""
    import shutil

    from tests import remote

    sshd = remote.start(tmp_path_factory.mktemp("sshd"))
    s = _session(chroot.PACKAGES + ("openssh-client",))
    try:
        for key in ("user_key", "other_key"):  # where ssh inside the chroot can read them
            shutil.copy(sshd.folder / key, s.dir / key)
        inside = {key: ["-i", s.inside(s.dir / key)] for key in ("user_key", "other_key")}

        def command(key):
            c = sshd.command()
            return c[:c.index("-i")] + inside[key] + c[c.index("-i") + 2:]

        params = {"style": s.inside(s.dir / f"{STYLE_NAME}.png"),
                  "core_config": s.inside(s.core_config), "options": OPTIONS,
                  "cancel_options": CANCEL_OPTIONS, "remote_command": command("user_key"),
                  "refused_command": command("other_key"),
                  "cases": ["remote_run", "remote_kill", "remote_refused"]}
        # The remote cores run outside the chroot: watched from here, on the same clock.
        watching, seen = threading.Event(), []

        def watch():
            while not watching.wait(0.05):
                if sshd.cores():
                    seen.append(time.time())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            proc, results = harness.run_headless(s, CHECKS, params)
        finally:
            watching.set()
            watcher.join(5)
        if not results.get("done"):
            pytest.fail(f"GIMP did not finish the checks (exit {proc.returncode}):\n"
                        f"{(proc.stdout or '')[-4000:]}")
        results["remote_core_seen"] = seen
        yield results
    finally:
        harness.close_session(s)
        sshd.close()


@pytest.fixture(scope="module")
def gui_run():
    """GIMP with its GUI on Xvfb: the dialog, last values, Ctrl+Z (tests/gimp3/gui_checks.py)."""
    s = _session(chroot.PACKAGES + harness.GUI_PACKAGES)
    try:
        params = {"style": s.inside(s.dir / f"{STYLE_NAME}.png"), "options": OPTIONS}
        proc, results = harness.run_gui(s, GUI_CHECKS, params)
        driver_log = (s.dir / "driver.log").read_text() if (s.dir / "driver.log").exists() else ""
        gimp_out = ((s.dir / "gimp-output.txt").read_text()
                    if (s.dir / "gimp-output.txt").exists() else "")
        if not results.get("done") or results.get("exception"):
            pytest.fail(f"GIMP's GUI run did not finish (exit {proc.returncode}):\n"
                        f"{results.get('exception', '')}\n{(proc.stdout or '')[-2000:]}\n"
                        f"{driver_log[-3000:]}\n{gimp_out[-3000:]}")
        results.update(session=s, steps={st["step"]: st for st in results["steps"]})
        yield results
    finally:
        harness.close_session(s)


def case(results, name):
    if name not in results["cases"]:
        pytest.skip(f"case {name} not run (NST_GIMP_CASES)")
    r = results["cases"][name]
    assert "exception" not in r, r["exception"]
    return r


def pluginrc_sensitivity(results) -> int:
    text = (results["session"].profile / "pluginrc").read_text(errors="replace")
    block = text.split('(proc-def "plug-in-neural-style"', 1)[1]
    lines = [line.strip() for line in block.splitlines()]
    return int(lines[lines.index('"RGB*, GRAY*"') + 1])


def log_path_in(message: str) -> str:
    assert "Log: " in message, message
    return message.rsplit("Log: ", 1)[1].strip()


# -- registration ------------------------------------------------------------------------------


def test_registered_as_documented(gimp_run):
    from tests.test_bridge import nst_protocol

    r = gimp_run
    assert r["procedure_found"], r["output"][-3000:]
    assert [a[0] for a in r["arguments"]] == [
        "run-mode", "image", "drawables", "style-file", "style-file-2", "style-file-3",
        "style-layer", "style-weights", "preset", "size-mode", "size", "style-scale", "strength",
        "colors", "model", "style-loss", "device", "seed", "max-memory", "auto-minutes"]
    assert r["menu_paths"] == ["<Image>/Filters/Artistic"]
    assert r["menu_label"] == "Neural Style Transfer..."
    assert r["image_types"] == "RGB*, GRAY*"
    # The PDB proxy does not carry the sensitivity mask; GIMP's pluginrc does (after the types).
    assert pluginrc_sensitivity(r) == r["sensitivity_expected"]  # DRAWABLE | DRAWABLES
    d = r["defaults"]
    for name, value in nst_protocol.DEFAULTS.items():
        assert d[name.replace("_", "-")] == value, name
    assert d["style-file"] is None and d["style-layer"] is None and d["style-weights"] == ""


# -- results -------------------------------------------------------------------------------------


def test_new_layer_above_source_same_size_and_offsets(gimp_run):
    r = case(gimp_run, "basic")
    assert r["status"] == "success", r["message"]
    assert len(r["added"]) == 1
    new, src = r["added"][0], r["source"]
    assert new["name"] == f"Photo ({STYLE_NAME})"
    assert (new["w"], new["h"], new["offsets"]) == (48, 36, [10, 6])
    assert new["parent"] == src["parent"]
    assert new["position"] == src["position"] - 1  # directly above
    assert r["layer_order"][0] == new["id"]
    assert new["has_alpha"] and new["format"] == "R'G'B'A u8"
    assert r["mean_abs_diff"] > 0.02  # it really is painted over
    assert r["alpha_min"] == pytest.approx(1.0)  # no selection: opaque everywhere


def test_source_layer_untouched(gimp_run):
    r = case(gimp_run, "basic")
    assert r["source_unchanged"]
    assert r["before"]["layers"][0] in r["after"]["layers"]
    assert r["after"]["precision"] == r["before"]["precision"]


def test_selection_confines_result_with_feathering(gimp_run):
    r = case(gimp_run, "selection")
    assert r["status"] == "success", r["message"]
    assert r["source_unchanged"]
    (new,) = r["added"]
    assert (new["w"], new["h"], new["offsets"]) == (56, 40, [4, 4])
    assert r["alpha_centre"] == pytest.approx(1.0, abs=0.01)
    assert r["alpha_corner"] == 0.0 and r["alpha_far_right"] == 0.0
    assert r["selection_partial"] > 20 and r["alpha_partial"] > 20  # the soft edge survives
    assert r["alpha_vs_selection_max_err"] < 0.01  # alpha is the selection, pixel for pixel


def test_16bit_image_stays_16bit(gimp_run):
    r = case(gimp_run, "u16")
    assert r["status"] == "success", r["message"]
    assert r["precision"] == r["precision_after"] == "u16-non-linear"
    (new,) = r["added"]
    assert new["format"] == "R'G'B'A u16"
    assert r["source_unchanged"]
    # Through 8 bits every value would be a multiple of 257.
    assert r["u16_not_multiple_of_257"] > r["u16_values"] // 2
    assert r["u16_distinct"] > 256


def test_float_greyscale_image(gimp_run):
    r = case(gimp_run, "float_grey")
    assert r["status"] == "success", r["message"]
    assert r["precision_after"] == "float-linear"
    (new,) = r["added"]
    assert new["format"] == "YA float"
    assert r["source_unchanged"]


def test_each_selected_layer_gets_its_own_result(gimp_run):
    r = case(gimp_run, "two_layers")
    assert r["status"] == "success", r["message"]
    assert r["source_unchanged"]
    assert r["order"] == [f"Top ({STYLE_NAME})", "Top", f"Bottom ({STYLE_NAME})", "Bottom"]
    sizes = {a["name"]: (a["w"], a["h"], a["offsets"]) for a in r["added"]}
    assert sizes == {f"Top ({STYLE_NAME})": (32, 24, [16, 12]),
                     f"Bottom ({STYLE_NAME})": (64, 48, [0, 0])}


def test_all_new_layers_are_selected(gimp_run):
    # Inserting a layer selects only it: after a run on two layers both results are selected.
    r = case(gimp_run, "two_layers")
    assert r["status"] == "success", r["message"]
    assert r["selected"] == [f"Bottom ({STYLE_NAME})", f"Top ({STYLE_NAME})"]


def test_layer_mask_is_copied_and_what_it_hides_stays_hidden(gimp_run):
    r = case(gimp_run, "mask")
    assert r["status"] == "success", r["message"]
    assert r["source_unchanged"] and r["source_mask_unchanged"]
    assert r["has_mask"], "the new layer has no layer mask: the hidden part shows, stylised"
    assert r["mask_format"][0] == r["mask_format"][1]
    assert r["mask_equal"]
    flags = r["flags"]
    assert flags["apply_mask"] == [True, True] and flags["show_mask"] == [False, False]
    assert flags["edit_mask"] == [False, False]  # the layer is selected, not its mask
    assert r["hidden_max_diff"] < 1e-6  # the image looks the same where the mask hides
    assert r["shown_mean_diff"] > 0.02  # and is painted where it shows


def test_indexed_image_is_refused_with_one_clear_error(gimp_run):
    r = case(gimp_run, "indexed")
    assert r["status"] == "execution-error"
    assert "indexed" in r["message"] and "Image > Mode > RGB" in r["message"]
    assert r["unchanged"] and r["layers_after"] == r["layers_before"] == 1
    assert r["base_type"] == "indexed"


# -- failures ------------------------------------------------------------------------------------


def test_missing_style_file_is_one_clear_error(gimp_run):
    # The plug-in's own message naming the file and its field, not GIMP's "value '<not
    # transformable to string>' ... out of range".
    r = case(gimp_run, "missing_style")
    assert r["status"] == "execution-error", r
    assert r["missing"] in r["message"] and "Style image" in r["message"]
    assert "does not exist" in r["message"] and "transformable" not in r["message"]
    assert r["unchanged"]


def test_corrupt_style_file_error_names_it(gimp_run):
    r = case(gimp_run, "corrupt_style")
    assert r["status"] == "execution-error"
    assert "not-a-picture.jpg" in r["message"]
    assert r["unchanged"]


def test_no_style_chosen_is_an_error(gimp_run):
    r = case(gimp_run, "no_style")
    assert r["status"] == "execution-error"
    assert "style image" in r["message"].lower()
    assert r["unchanged"]


def test_broken_core_command_is_an_error_naming_it(gimp_run):
    r = case(gimp_run, "broken_core")
    assert r["status"] == "execution-error"
    assert r["program"] in r["message"]
    assert "install" in r["message"].lower()  # says how to repair
    assert r["unchanged"]


def test_crashing_core_error_names_the_log(gimp_run):
    r = case(gimp_run, "crashing_core")
    assert r["status"] == "execution-error"
    assert r["unchanged"]
    log = harness.host_path(gimp_run["session"], log_path_in(r["message"]))
    assert "simulated crash" in log.read_text()


def test_cancel_stops_core_and_leaves_image(gimp_run):
    r = case(gimp_run, "cancel")
    assert "error" not in r, r
    assert "nst_core.worker" in r["worker_cmd"]
    assert "neural-style.py" in r["plugin_cmd"]
    assert r["worker_alive_at_kill"], "the core finished before it could be cancelled"
    assert r["status"] != "success"
    assert r["unchanged"]
    assert not r["worker_alive_after"]
    assert r["worker_exit_s"] < 3.0


def test_cancel_in_the_middle_of_a_block_wise_run_leaves_the_image(gimp_run):
    r = case(gimp_run, "cancel_blocks")
    assert "error" not in r, r
    assert any("in blocks of" in line for line in r["log_at_kill"]), r["log_at_kill"]
    assert r["worker_alive_at_kill"], "the core finished before it could be cancelled"
    assert r["status"] != "success"
    assert r["unchanged"]
    assert not r["worker_alive_after"]
    assert r["worker_exit_s"] < 3.0


# -- several styles, a style from an open image ---------------------------------------------------


def test_a_layer_of_another_image_and_a_file_blend_as_styles(gimp_run):
    r = case(gimp_run, "style_layer")
    assert r["status"] == "success", r["message"]
    (new,) = r["added"]
    assert new["name"] == f"Photo ({STYLE_NAME} + Starry Night: Brushes)"  # image: layer
    assert new["format"] == "R'G'B'A u8"
    assert r["source_unchanged"] and r["style_image_unchanged"]


def test_style_weights_that_do_not_fit_are_refused(gimp_run):
    r = case(gimp_run, "bad_weights")
    three, zero = r["three_for_two"], r["all_zero"]
    assert three["status"] == zero["status"] == "execution-error"
    assert "3 weight(s) for 2 style(s)" in three["message"]
    assert "all zero" in zero["message"]
    assert r["unchanged"]


def test_an_indexed_style_layer_is_refused(gimp_run):
    r = case(gimp_run, "indexed_style")
    assert r["status"] == "execution-error"
    assert '"Palette"' in r["message"] and "indexed" in r["message"]
    assert "Image > Mode > RGB" in r["message"]
    assert r["unchanged"]


def test_a_closed_style_image_is_refused(gimp_run):
    r = case(gimp_run, "closed_style_image")
    assert r["status"] != "success"
    assert r["unchanged"]


def test_undo_groups_balanced(gimp_run):
    # GIMP closes undo groups a plug-in left open and says so; there must be no such message.
    assert "inconsistent state" not in gimp_run["output"]
    assert "undo" not in gimp_run["output"].lower(), gimp_run["output"][-3000:]


# -- the core on another machine, through ssh ----------------------------------------------------


def test_a_run_through_ssh_adds_the_painted_layer(remote_run):
    r = case(remote_run, "remote_run")
    assert r["status"] == "success", r["message"]
    (new,) = r["added"]
    assert new["name"] == f"Photo ({STYLE_NAME})" and r["source_unchanged"]


def test_a_cancel_through_ssh_stops_the_remote_core(remote_run):
    r = case(remote_run, "remote_kill")
    assert "error" not in r, r
    assert r["client_cmd"].startswith("ssh ") and r["status"] != "success" and r["unchanged"]
    killed, seen = r["killed_at"], remote_run["remote_core_seen"]
    assert any(killed - 1.0 < t < killed for t in seen), "no remote core was painting"
    outlived = max(seen) - killed
    assert outlived < 3.0, f"the remote core outlived the plug-in by {outlived:.1f} s"
    assert r["client_exit_s"] < 3.0  # the local ssh client ends too


def test_a_refused_key_is_one_message_in_the_dialog(remote_run):
    r = case(remote_run, "remote_refused")
    assert r["status"] == "execution-error" and r["unchanged"]
    assert "could not be reached over ssh" in r["message"]
    assert "Permission denied" in r["message"] and ".." not in r["message"]


# -- the GUI: dialog, remembered values, undo ---------------------------------------------------


def test_dialog_runs_on_ok(gui_run):
    st = gui_run["steps"]["interactive"]
    assert st["ack"] == "ok", st
    assert st["status"] == "success", st["message"]
    assert st["layers"] == [f"Photo ({STYLE_NAME})", "Photo"]


def test_the_dialog_offers_only_values_the_core_takes(gui_run):
    """Custom size is greyed out unless Paint at is Custom and starts at the core's smallest
    size; the memory limit skips the values that always fail; the technical fields sit under
    Advanced."""
    state = json.loads((gui_run["session"].dir / "dialog-state.json").read_text())
    assert state["size_sensitive_layer"] is False and state["size_sensitive_custom"] is True
    assert state["size"]["lower"] == 16 and state["size"]["upper"] == 16384
    assert state["memory_up"] == 0.75 and state["memory_down"] == 0.0
    assert state["expander"] == "Advanced" and state["expanded"] is False
    assert state["advanced"] == ["model", "style-loss", "device", "seed", "max-memory",
                                 "auto-minutes"]


def test_last_values_are_remembered(gui_run):
    # A WITH_LAST_VALS run given no style file succeeds: GIMP handed it the last dialog's values.
    st = gui_run["steps"]["last-values"]
    assert st["status"] == "success", st["message"]
    assert st["layers"][0] == f"Photo ({STYLE_NAME})"
    saved = [p for p in gui_run["session"].profile.rglob("*")
             if p.is_file() and "plug-in-neural-style" in p.name]
    text = "\n".join(p.read_text(errors="replace") for p in saved)
    assert f"{STYLE_NAME}.png" in text, saved
    assert "seed 3" in text and "size 40" in text, text


def test_one_undo_removes_everything_a_run_added(gui_run):
    two = gui_run["steps"]["two-layers"]
    assert two["status"] == "success", two["message"]
    assert two["after"] == [f"Top ({STYLE_NAME})", "Top", f"Bottom ({STYLE_NAME})", "Bottom"]
    undo = gui_run["steps"]["undo"]
    assert undo["undone"], undo
    assert undo["layers"] == two["before"]
    redo = gui_run["steps"]["redo"]
    assert redo["redone"] and redo["layers"] == two["after"], redo


def test_the_dialogs_preview_paints_a_draft(gui_run):
    st = gui_run["steps"]["preview-painted"]
    assert st["previews"] >= 1 and st["painted"], st
    assert st["status"] == "cancel" and st["layers"] == ["Photo"], st  # nothing added


def test_closing_the_dialog_stops_a_running_preview(gui_run):
    st = gui_run["steps"]["preview-closed"]
    assert st["cancelled"] and not st["finished"], st
    assert st["stopped"], st  # no core left running
    assert st["layers"] == ["Photo"], st

"""GPU readiness check (a check with figures, not a test): the CUDA path end to end, in under
8 minutes on one GPU. Each part checks its result (size, not blank, differs from the content
but keeps its structure) and prints seconds and peak GPU memory:

  1. stylize at 512 px, precision auto (bf16 or fp16 autocast on CUDA);
  2. a 24 MP (6000x4000) layer at its own size, in blocks under a small --max-memory (the
     smallest of 4, 5, 6, 8 GB that the planner accepts; its last scale must run in blocks);
  3. an out-of-memory retry: torch.cuda.OutOfMemoryError is raised once from the first
     objective evaluation, as a real one would be, and the run must go on at half the budget on
     the same device;
  4. `nst batch` of 2 images, as a child process;
  5. one request to `nst worker`, as a child process, over the plug-in's protocol.

    python bench/gpu_check.py              # on a machine with CUDA (exit 2 without it)
    python bench/gpu_check.py --cpu-smoke  # the same checks at tiny sizes on the CPU (~1 min)

Exit status: 0 when every check passed, 1 when one failed, 2 when there is no CUDA. Parts 1-3
run in this process (one CUDA start-up, paid by an untimed warm-up); each has a time limit, so a
slow part fails with its figures instead of eating the others' time.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core import blockwise, budget, engine, images, protocol  # noqa: E402
from nst_core.device import machine, select_dtype  # noqa: E402
from nst_core.options import Options  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
MEMORY_CANDIDATES_GB = (4, 5, 6, 8)

# What each mode runs. Time limits (seconds) add up to under 8 minutes with start-up.
GPU = dict(device="cuda", size=512, big=(6000, 4000), block_size=None, preset="standard",
           iterations=None, limits=dict(warmup=40, stylize=60, big=220, oom=50, batch=50,
                                        worker=40))
# Tiny sizes, blocks forced; 12 iterations, as 2 per scale can end a scale on an unscored
# L-BFGS overshoot (noise).
SMOKE = dict(device="cpu", size=64, big=(256, 176), block_size=128, preset="draft",
             iterations=12, limits=dict(warmup=60, stylize=60, big=120, oom=60, batch=120,
                                       worker=120))


class Log(logging.Handler):
    """The engine's log lines during one check (the plan, the device, the OOM warnings)."""

    def __init__(self, verbose: bool):
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.verbose = verbose

    def emit(self, record):
        line = record.getMessage()
        self.lines.append(line)
        if self.verbose or record.levelno >= logging.WARNING:
            print(f"    [{record.levelname.lower()}] {line}", file=sys.stderr, flush=True)


class Check:
    """One part's outcome: passed, seconds, peak GPU memory, notes."""

    def __init__(self, name: str):
        self.name, self.ok, self.seconds, self.notes = name, True, None, []
        self.peak = self.reserved = None

    def require(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.ok = False
            self.notes.append(f"FAILED: {problem}")
        return condition

    def note(self, text: str) -> None:
        self.notes.append(text)


def thumb(image, side: int = 512) -> np.ndarray:
    """An image (PIL or HxWx3 array in 0..1) at most `side` px long, as float 0..1 HxWx3."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    image = image.convert("RGB")
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255


def check_result(check: Check, result, content: Image.Image, size: tuple[int, int]) -> None:
    """The properties a user sees: the right size, a picture (not blank, no NaN), painted
    (differs from the photo) and still the photo's scene (its structure correlates)."""
    if isinstance(result, np.ndarray):
        got = (result.shape[1], result.shape[0])
        check.require(bool(np.isfinite(result).all()), "the result has NaN or inf pixels")
    else:
        got = result.size
    if not check.require(got == tuple(size), f"result is {got[0]}x{got[1]}, expected "
                                             f"{size[0]}x{size[1]}"):
        return
    r = thumb(result)
    c = thumb(content.resize(size, Image.BICUBIC) if content.size != tuple(size) else content)
    c = c[:r.shape[0], :r.shape[1]]
    spread, change = float(r.std()), float(np.abs(r - c).mean())
    lr, lc = r.mean(axis=2).ravel(), c.mean(axis=2).ravel()
    structure = float(np.corrcoef(lr, lc)[0, 1]) if lr.std() > 0 and lc.std() > 0 else 0.0
    check.note(f"result {got[0]}x{got[1]}: spread {spread * 255:.0f}/255, differs from the "
               f"content by {change * 255:.1f}/255 on average, structure correlation "
               f"{structure:.2f}")
    check.require(spread > 0.03, "the result is blank (almost one colour)")
    check.require(change > 0.02, "the result is (almost) the content: nothing was painted")
    check.require(structure > 0.1, "the result has lost the content's structure")


def device_line(check: Check, lines: list[str], mode: dict, runs: int = 1) -> None:
    """The engine's 'stylizing on ...' line(s): the right device, autocast on CUDA."""
    found = [m.group(1) for line in lines if (m := re.match(r"stylizing on (.*?); ", line))]
    if found:
        check.note(f"engine: {found[-1]}")
    check.require(len(found) == runs, f"expected {runs} engine run(s), the log shows {len(found)}")
    check.require(all(f.startswith(mode["device"]) for f in found),
                  f"the engine did not run on {mode['device']}: {found}")
    if mode["device"] == "cuda":
        check.require(all("float32" not in f for f in found),
                      "precision auto did not choose bf16/fp16 autocast on CUDA")


class Deadline:
    """should_stop for stylize(): True once `seconds` have passed (remembered)."""

    def __init__(self, seconds: float):
        self.end, self.hit = time.monotonic() + seconds, False

    def __call__(self) -> bool:
        self.hit = self.hit or time.monotonic() > self.end
        return self.hit


def in_process(name: str, mode: dict, limit: float, content: Image.Image, style: Image.Image,
               options: Options, verbose: bool, runs: int = 1) -> tuple[Check, object, list]:
    """stylize() in this process under a time limit: (the check, the result, the log lines)."""
    check, handler = Check(name), Log(verbose)
    logger = logging.getLogger("nst_core")
    logger.addHandler(handler)
    cuda = mode["device"] == "cuda"
    if cuda:  # each check's own peak, without the previous one's cached blocks
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    deadline = Deadline(limit)
    start = time.perf_counter()
    result = None
    try:
        result = engine.stylize(content, style, options, should_stop=deadline)
    except Exception as e:  # a figure for the table, not a traceback that hides the others
        check.require(False, f"{type(e).__name__}: {e}")
    finally:
        if cuda:
            torch.cuda.synchronize()
        check.seconds = time.perf_counter() - start
        logger.removeHandler(handler)
    if cuda:
        check.peak = torch.cuda.max_memory_allocated()
        check.reserved = torch.cuda.max_memory_reserved()
    check.require(not deadline.hit, f"did not finish within its limit of {limit:.0f} s")
    if result is not None:
        device_line(check, handler.lines, mode, runs)
    return check, result, handler.lines


def big_memory(mode: dict, size: tuple[int, int], style_size: tuple[int, int]) -> float:
    """The smallest candidate budget (GB) the planner accepts for `size` at its own size, with
    its last scale in blocks (chosen here, as the planner's figures may change)."""
    device = torch.device(mode["device"])
    dtype = select_dtype("auto", device)
    for gb in MEMORY_CANDIDATES_GB if mode["block_size"] is None else (1,):
        options = Options(size=None, max_memory=gb, device=mode["device"],
                          block_size=mode["block_size"], preset=mode["preset"],
                          iterations=mode["iterations"])
        try:
            _, scales = budget.plan_run(options, size, [style_size], dtype, int(gb * budget.GB),
                                        device)
        except Exception:  # too large for this budget: try the next
            continue
        if scales[-1].plan.core is not None:
            return gb
    raise SystemExit(f"no budget of {MEMORY_CANDIDATES_GB} GB plans {size[0]}x{size[1]} in "
                     "blocks; the planner changed: update MEMORY_CANDIDATES_GB")


def oom_once():
    """Make the first objective evaluation raise torch.cuda.OutOfMemoryError, as a real one
    would (mid-run, with the network and images on the device); returns an undo function and
    a counter of the errors raised."""
    original = blockwise.Objective.__call__
    raised = [0]

    def failing(self, *args, **kwargs):
        if not raised[0]:
            raised[0] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (forced by bench/gpu_check.py)")
        return original(self, *args, **kwargs)

    blockwise.Objective.__call__ = failing
    return lambda: setattr(blockwise.Objective, "__call__", original), raised


def child(cmd: list[str], limit: float, stdin: bytes | None = None) -> tuple[int | None, str]:
    """Run a child process under a time limit: (exit status or None on timeout, its stderr)."""
    try:
        proc = subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=limit, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        return None, (e.stderr or b"").decode(errors="replace")
    return proc.returncode, proc.stderr.decode(errors="replace")


def engine_lines(log: str) -> list[str]:
    """The engine's messages in a child's log (its lines carry a logging prefix)."""
    return [line[line.index("stylizing on"):] for line in log.splitlines()
            if "stylizing on" in line]


def run_batch(mode: dict, limit: float, content: Image.Image, style_path: Path,
              work: Path) -> Check:
    """`nst batch` of two images (the photo and its mirror image) into a fresh folder."""
    check = Check("nst batch, 2 images")
    inputs = work / "batch-in"
    inputs.mkdir()
    photos = {"a.png": content, "b.png": content.transpose(Image.FLIP_LEFT_RIGHT)}
    for name, image in photos.items():
        image.save(inputs / name)
    out = work / "batch-out"
    cmd = [sys.executable, "-m", "nst_core", "-v", "batch", str(inputs), "--style",
           str(style_path), "-o", str(out), "--size", str(mode["size"]), "--device",
           mode["device"], "--preset", mode["preset"], "-q"]
    if mode["iterations"]:
        cmd += ["--iterations", str(mode["iterations"])]
    start = time.perf_counter()
    status, log = child(cmd, limit)
    check.seconds = time.perf_counter() - start
    if not check.require(status == 0, "timed out" if status is None else
                         f"exit status {status}; log tail:\n{log[-2000:]}"):
        return check
    device_line(check, engine_lines(log), mode, runs=2)
    for name, image in photos.items():
        path = out / name
        if check.require(path.is_file(), f"{path} was not written"):
            with Image.open(path) as result:
                check_result(check, result.convert("RGB"), image,
                             images.fit_size(*image.size, mode["size"]))
    check.note("peak GPU memory: not measured (a child process)")
    return check


def run_worker(mode: dict, limit: float, content: Image.Image, style_bytes: bytes) -> Check:
    """One request to `nst worker` over stdin/stdout, as the GIMP plug-in sends it: u8 RGB
    pixels at the layer's size, the style file's bytes; the result comes back at that size."""
    check = Check("nst worker, one request")
    w, h = content.size
    pixels = np.asarray(content.convert("RGB"), dtype=np.uint8).tobytes()
    options = {"size": mode["size"], "device": mode["device"], "preset": mode["preset"]}
    if mode["iterations"]:
        options["iterations"] = mode["iterations"]
    header = {"type": "request", "protocol": protocol.VERSION, "options": options,
              "content": {"width": w, "height": h, "channels": 3, "format": "u8"},
              "styles": [{"name": STYLE.name, "size": len(style_bytes)}], "mask": None,
              "result": {"format": "u8"}}
    log_file = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nst_core.worker", "--log-level", "INFO"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                            cwd=ROOT)
    timer = threading.Timer(limit, proc.kill)  # a hang fails this check, not the whole script
    timer.start()
    final, payload = None, b""
    try:
        # Stdin stays open until the answer: closing it is how a plug-in cancels.
        protocol.write_message(proc.stdin, header, pixels + style_bytes)
        while (message := protocol.read_header(proc.stdout)) is not None:
            data = protocol.read_payload(proc.stdout, message)
            if message["type"] in ("result", "error"):
                final, payload = message, data
                break
    except (OSError, protocol.ProtocolError) as e:
        check.require(False, f"talking to the worker: {e}")
    finally:
        timer.cancel()
        proc.stdin.close()
        status = proc.wait(timeout=60)
        check.seconds = time.perf_counter() - start
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
        log_file.close()
    if not check.require(final is not None and final["type"] == "result",
                         f"no result (exit status {status}): "
                         f"{final or 'killed at the time limit'}; log tail:\n{log[-2000:]}"):
        return check
    check.require(status == 0, f"the worker exited with status {status}")
    device_line(check, engine_lines(log), mode)
    rw, rh = final["width"], final["height"]
    if check.require(len(payload) == rw * rh * 3 and final["channels"] == 3,
                     f"result header {final} does not match its {len(payload)} bytes"):
        result = np.frombuffer(payload, dtype=np.uint8).reshape(rh, rw, 3)
        check_result(check, Image.fromarray(result), content, (w, h))
    check.note("peak GPU memory: not measured (a child process)")
    return check


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run the same checks at tiny sizes on the CPU (tests this script)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the engine's log")
    args = parser.parse_args(argv)
    mode = SMOKE if args.cpu_smoke else GPU
    if not args.cpu_smoke and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else \
            f"built for CUDA {torch.version.cuda}, but no NVIDIA GPU/driver answers"
        print(f"gpu_check: no CUDA here (torch {torch.__version__} is {build}); nothing was "
              "checked. Run it on a machine with an NVIDIA GPU and a CUDA build of torch, or "
              "use --cpu-smoke to test this script on the CPU.", file=sys.stderr)
        return 2
    logging.getLogger("nst_core").setLevel(logging.INFO)
    limits, total_start = mode["limits"], time.perf_counter()
    print(f"machine: {machine()}")
    if mode["device"] == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"GPU: {props.name}, {props.total_memory / budget.GB:.1f} GiB, CUDA "
              f"{torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    print(f"mode: {'CPU smoke test (tiny sizes)' if args.cpu_smoke else 'GPU'}", flush=True)

    photo = Image.open(CONTENT).convert("RGB")
    style = Image.open(STYLE).convert("RGB")
    base = dict(device=mode["device"], preset=mode["preset"], iterations=mode["iterations"])
    checks = []

    # Warm-up, untimed: CUDA's start-up, the weights and cuDNN's first kernels.
    warm, _, _ = in_process("warm-up", mode, limits["warmup"], photo, style,
                            Options(size=64, **dict(base, iterations=2)), args.verbose)
    print(f"warm-up: {warm.seconds:.1f} s{'' if warm.ok else ' ' + '; '.join(warm.notes)}",
          flush=True)

    # 1. 512 px (the dialog's old default), precision auto.
    s = mode["size"]
    check, result, _ = in_process(f"stylize {s} px", mode, limits["stylize"], photo, style,
                                  Options(size=s, **base), args.verbose)
    if result is not None:
        check_result(check, result, photo, images.fit_size(*photo.size, s))
    checks.append(check)
    report(check)

    # 2. A 24 MP layer at its own size, in blocks under a small budget.
    bw, bh = mode["big"]
    big = photo.resize((bw, bh), Image.BICUBIC)
    gb = big_memory(mode, (bw, bh), style.size)
    check, result, lines = in_process(
        f"{bw}x{bh} ({bw * bh / 1e6:.2g} MP) in blocks, --max-memory {gb}", mode, limits["big"],
        big, style, Options(size=None, max_memory=gb, block_size=mode["block_size"], **base),
        args.verbose)
    plan = next((m.group(1) for line in lines if (m := re.search(r"scales (.*)", line))), "")
    check.note(f"plan: {plan}")
    check.require("blocks of" in plan, "no scale ran in blocks")
    if result is not None:
        check_result(check, result, big, (bw, bh))
    if check.peak is not None:
        check.note(f"peak allocated {check.peak / (gb * budget.GB):.0%} of the budget")
    checks.append(check)
    report(check)
    del big, result

    # 3. An out-of-memory error once, mid-run: the retry at half the budget must finish.
    # A set budget: the default one follows the free memory, which the first try changes.
    undo, raised = oom_once()
    try:
        check, result, lines = in_process(f"out-of-memory retry at {s} px", mode, limits["oom"],
                                          photo, style, Options(size=s, max_memory=4, **base),
                                          args.verbose, runs=2)
    finally:
        undo()
    warnings = [line for line in lines if line.startswith("out of GPU memory")]
    budgets = [float(m.group(1)) for line in lines
               if (m := re.search(r"memory budget ([\d.]+) GB", line))]
    check.require(raised[0] == 1 and len(warnings) == 1,
                  f"expected one forced out-of-memory error and one warning, got {raised[0]} "
                  f"and {len(warnings)} (did blockwise.Objective change?)")
    if check.require(len(budgets) == 2, f"expected 2 runs' budgets in the log, got {budgets}"):
        check.note(f"budget {budgets[0]:.1f} GB, then {budgets[1]:.1f} GB")
        check.require(abs(budgets[1] - budgets[0] / 2) <= 0.11, "the retry did not halve the "
                      "budget")
    if result is not None:
        check_result(check, result, photo, images.fit_size(*photo.size, s))
    checks.append(check)
    report(check)

    # 4 and 5: child processes, as a user or the plug-in starts them.
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        check = run_batch(mode, limits["batch"], photo, STYLE, Path(work))
        checks.append(check)
        report(check)
    check = run_worker(mode, limits["worker"], photo, STYLE.read_bytes())
    checks.append(check)
    report(check)

    total = time.perf_counter() - total_start
    print("\n| check | result | seconds | peak GPU memory allocated | reserved |\n"
          "|---|---|---|---|---|")
    for c in checks:
        memory = "-" if c.peak is None else f"{c.peak / budget.GB:.2f} GiB"
        reserved = "-" if c.reserved is None else f"{c.reserved / budget.GB:.2f} GiB"
        print(f"| {c.name} | {'ok' if c.ok else 'FAILED'} | {c.seconds:.1f} | {memory} | "
              f"{reserved} |")
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks passed in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def report(check: Check) -> None:
    print(f"\n{check.name}: {'ok' if check.ok else 'FAILED'}, {check.seconds:.1f} s"
          + ("" if check.peak is None else f", peak GPU memory {check.peak / budget.GB:.2f} GiB "
             f"allocated, {check.reserved / budget.GB:.2f} GiB reserved"), flush=True)
    for note in check.notes:
        print(f"  {note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""`nst batch --ray` on a real Ray cluster: two nodes started here on 127.0.0.1 (`ray start
--head` and `ray start --address`, one CPU each), the real engine on tiny images. The executor
spreads the images over both nodes; through the CLI every good image is written once, the bad
one is named and the exit code is non-zero, and a re-run writes nothing; a node killed in the
middle of a batch has its image painted on the other one.

The cluster is tests/ray_cluster.py's: the tests stop and kill exactly the processes they
started, never another Ray instance on this machine."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from nst_core.errors import DeviceError, OptionError
from nst_core.options import Options
from tests.conftest import picture, stripes
from tests.ray_cluster import Cluster, free_port
from tests.worker_client import engine_run

ray = pytest.importorskip("ray", reason="needs the [cluster] extra (make setup installs it)")
from nst_core.batch.ray_executor import ClusterError, RayExecutor  # noqa: E402
from nst_core.batch.task import Done, Failed, Job  # noqa: E402

pytestmark = engine_run
FAST = ["--preset", "draft", "--size", "64", "--precision", "fp32", "-q"]
OPTIONS = Options(preset="draft", size=64, precision="fp32")
# A lost node is noticed within a few seconds instead of Ray's default ~30 s.
HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
          "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


@pytest.fixture(scope="module")
def cluster(real_weights):
    """The two-node cluster. Ray's token authentication is off for it, explicitly, in the nodes'
    and the drivers' environment: with it on, the nodes and the drivers would need one token
    (~/.ray/auth_token, made by the first local ray.init), and this test process reads Ray's
    settings once, when it imports ray. The cluster lives as long as this module's tests."""
    c = Cluster({**HEALTH, "RAY_AUTH_MODE": "disabled"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.delenv("RAY_ADDRESS", raising=False)
        try:
            c.start("head", head=True)
            c.start("worker")
            c.wait_for(2)
            yield c
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.stop()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def contents(folder: Path, n: int, bad: bool = True) -> dict[str, tuple[int, int]]:
    """n small pictures (64-96 px) in folder, and a corrupt bad.png: name -> the size the
    result must have (long side 64)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for k in range(n):
        w, h = (96, 72) if k % 2 else (64, 80)
        picture(w, h, seed=k).save(folder / f"img{k}.png")
        sizes[f"img{k}.png"] = (64, 48) if k % 2 else (51, 64)
    if bad:
        (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    return sizes


def nst(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "nst_core", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def check_outputs(out: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Every good image's result is there, decodes at its size; nothing else was written.
    Returns each result's mtime (ns)."""
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(sizes), written
    for name, size in sizes.items():
        with Image.open(out / name) as img:
            assert img.size == size, name
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    return {name: (out / name).stat().st_mtime_ns for name in sizes}


# -- the executor -------------------------------------------------------------------------------


def test_executor_spreads_the_images_over_both_nodes(cluster, tmp_path):
    style = png(stripes())
    sizes = contents(tmp_path / "in", 4)
    jobs = [Job(f"{name}", name, (tmp_path / "in" / name).read_bytes(), style, OPTIONS, "png")
            for name in [*sizes, "bad.png"]]
    updates = []
    ex = RayExecutor(cluster.address)
    try:
        assert (ex.slots, ex.cpus_per_task, ex.on_gpus) == (2, 1, False)
        results = {r.key: r for r in ex.run(iter(jobs), updates.append)}
    finally:
        ex.close()
    assert not ray.is_initialized()  # disconnected, and the cluster still runs
    assert cluster.processes("head") and cluster.processes("worker")
    assert sorted(results) == sorted([*sizes, "bad.png"])
    bad = results.pop("bad.png")
    assert isinstance(bad, Failed) and "bad.png" in bad.message
    for name, r in results.items():
        assert isinstance(r, Done), r
        with Image.open(io.BytesIO(r.data)) as img:
            assert img.size == r.size == sizes[name]
            assert np.asarray(img).std() > 5  # a picture, not a blank
    assert len(set(ex.node_of.values())) == 2, ex.node_of  # both nodes painted
    assert {u.key for u in updates} >= set(sizes)  # progress from the tasks
    assert all(0 <= u.fraction <= 1 for u in updates)


def test_an_error_every_image_would_have_is_raised_as_itself(cluster, tmp_path):
    style = png(stripes())
    job = Job("a.png", "a.png", png(picture()), style,
              Options(preset="draft", size=64, device="mps"), "png")
    ex = RayExecutor(cluster.address)
    try:
        with pytest.raises(DeviceError, match="mps"):
            list(ex.run([job], lambda u: None))
    finally:
        ex.close()


def test_a_task_no_node_can_take_is_refused_before_any_work(cluster):
    with pytest.raises(ClusterError, match="no node of the Ray cluster has 2 CPU"):
        RayExecutor(cluster.address, cpus_per_task=2)
    assert not ray.is_initialized()


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is missing
    with pytest.raises(OptionError, match=r"pip install neural-style-gimp\[cluster\]"):
        RayExecutor("local")


def test_an_address_where_no_cluster_answers_is_one_error_at_once():
    start = time.monotonic()
    with pytest.raises(ClusterError, match="no Ray cluster answers at 127.0.0.1"):
        RayExecutor(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - start < 10  # Ray itself would retry for minutes
    assert not ray.is_initialized()


# -- nst batch --ray ----------------------------------------------------------------------------


def test_batch_on_the_cluster_writes_each_good_image_once(cluster, tmp_path):
    sizes = contents(tmp_path / "in", 4)
    stripes().save(tmp_path / "style.png")
    out = tmp_path / "out"
    args = ["batch", tmp_path / "in", "--style", tmp_path / "style.png", "-o", out,
            "--ray", cluster.address, *FAST]
    done = nst(*args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "bad.png" in done.stderr
    assert "4 painted, 0 already done, 1 failed" in done.stdout
    stamps = check_outputs(out, sizes)

    again = nst(*args)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "0 painted, 4 already done, 1 failed" in again.stdout
    assert check_outputs(out, sizes) == stamps  # nothing written again


def painting(cluster: Cluster, node: str) -> bool:
    """Whether a Ray worker process of the node is running an image (Ray names it after the
    task while it runs one)."""
    for p in cluster.processes(node):
        try:
            if "_paint" in " ".join(p.cmdline()):
                return True
        except psutil.Error:
            pass
    return False


def test_a_node_killed_mid_batch_has_its_images_painted_elsewhere(cluster, tmp_path):
    sizes = contents(tmp_path / "in", 6, bad=False)
    stripes().save(tmp_path / "style.png")
    out = tmp_path / "out"
    batch = subprocess.Popen(
        [sys.executable, "-m", "nst_core", "batch", tmp_path / "in", "--style",
         tmp_path / "style.png", "-o", out, "--ray", cluster.address, *FAST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not painting(cluster, "worker"):
            assert batch.poll() is None, batch.communicate()
            assert time.monotonic() < deadline, "the worker node never got an image"
            time.sleep(0.1)
        cluster.kill("worker")
        assert not cluster.processes("worker")
        stdout, stderr = batch.communicate(timeout=240)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.communicate()
        cluster.start("worker-2")  # two nodes again for whatever runs next
    assert batch.returncode == 0, stdout + stderr
    assert "6 painted, 0 already done, 0 failed" in stdout
    check_outputs(out, sizes)

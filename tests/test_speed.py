"""The speed record the time estimate learns from: what real runs measured, per device and path.

No timing here: the record is fed figures and read back (a run's real figures are in bench/)."""

import json
import threading
from types import SimpleNamespace

import pytest
import torch

from nst_core import budget, estimate, speed

KEY = "cpu (Test CPU, 2 threads), bfloat16, torch 2.13.0+cpu"


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_HOME", str(tmp_path))
    return tmp_path


def runs(key, path, *per_unit):
    """Record one run of 1000 units per value (seconds per unit)."""
    for value in per_unit:
        speed.record_run(key, path, value * 1000, 1000, speed.new_run())


def test_the_estimate_uses_the_recent_runs_and_one_slow_run_moves_nothing():
    runs(KEY, "whole", 1.0, 1.1, 0.9, 1.0)
    runs(KEY, "whole", 4.0)  # one run slowed down by other work
    assert speed.value(KEY, "whole") == pytest.approx(1.0)


def test_a_speed_contradicted_by_the_later_runs_is_replaced():
    runs(KEY, "whole", 3.0, 3.1, 2.9)  # measured while the machine was busy
    runs(KEY, "whole", 1.0, 1.05)  # the machine is quiet now: two runs agree
    assert speed.value(KEY, "whole") == pytest.approx(1.025)
    runs(KEY, "whole", 1.0)
    assert speed.value(KEY, "whole") == pytest.approx(1.0)


def test_old_runs_are_forgotten(monkeypatch):
    runs(KEY, "whole", 3.0)
    now = speed.time.time()
    monkeypatch.setattr(speed.time, "time", lambda: now + speed.MAX_AGE_S + 1)
    runs(KEY, "whole", 1.0)
    assert speed.value(KEY, "whole") == pytest.approx(1.0)


def test_a_runs_scales_add_up_to_one_measurement():
    run = speed.new_run()
    speed.record_run(KEY, "whole", 10.0, 100, run)
    speed.record_run(KEY, "whole", 30.0, 100, run)
    runs(KEY, "whole", 0.2)
    assert speed.value(KEY, "whole") == pytest.approx((0.2 + 0.2) / 2)  # two runs, not three


def test_each_path_and_device_has_its_own_record_and_a_path_without_runs_borrows():
    runs(KEY, "whole", 1.0)
    other = KEY.replace("bfloat16", "float32")
    runs(other, "blocks", 5.0)
    assert speed.speeds(KEY) == {"whole": 1.0, "blocks": 1.0}  # blocks' extra cost is in .work
    assert speed.speeds(other) == {"whole": 5.0, "blocks": 5.0}
    runs(KEY, "blocks", 2.0)
    assert speed.speeds(KEY) == {"whole": 1.0, "blocks": 2.0}
    assert speed.speeds("cuda (Some GPU), float16, torch 2.13.0") == {}


def test_small_scales_are_not_recorded():
    plan = budget.Plan(None, "lbfgs", 100, 0)
    speed.record_scale(KEY, (256, 192), plan, 50.0, 1000, speed.new_run())
    assert speed.value(KEY, "whole") is None
    speed.record_scale(KEY, (512, 384), budget.Plan(256, "lbfgs", 100, 0), 2.0, 1000,
                       speed.new_run())
    assert speed.value(KEY, "blocks") == pytest.approx(0.002)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"cpu": 1e-7}', b"\x00\xff"])
def test_a_corrupt_record_costs_a_new_measurement_and_is_rewritten(data_dir, monkeypatch,
                                                                   content):
    (data_dir / speed.FILE_NAME).write_bytes(content)
    probes = []
    monkeypatch.setattr(estimate, "_measure", lambda *a: probes.append(1) or 2e-7)
    device, dtype = torch.device("cpu"), torch.float32
    assert estimate.rates(device, dtype) == {"whole": 2e-7, "blocks": 2e-7}
    assert estimate.rates(device, dtype) == {"whole": 2e-7, "blocks": 2e-7}
    assert probes == [1]  # measured once, then kept
    assert json.loads((data_dir / speed.FILE_NAME).read_text())["version"] == speed.VERSION


def test_real_runs_replace_the_first_time_probe(monkeypatch):
    device, dtype = torch.device("cpu"), torch.float32
    monkeypatch.setattr(estimate, "_measure", lambda *a: 9e-7)
    assert estimate.rates(device, dtype)["whole"] == 9e-7
    runs(estimate.key(device, dtype), "whole", 1e-7)
    assert estimate.rates(device, dtype) == {"whole": 1e-7, "blocks": 1e-7}


def test_without_a_record_a_run_measures_nothing_first():
    assert estimate.rates(torch.device("cpu"), torch.float32, measure=False) == {}


def test_concurrent_cores_lose_no_measurement():
    def record(i):
        runs(f"device {i % 3}", "whole", 1.0 + i % 3)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record_ = speed.read()
    assert sum(len(r["whole"]) for r in record_["runs"].values()) == 12
    assert speed.value("device 2", "whole") == pytest.approx(3.0)


def test_the_estimate_counts_each_scale_at_its_paths_speed():
    # budget.Scale's fields the estimate reads
    whole = SimpleNamespace(size=(100, 100), plan=budget.Plan(None, "lbfgs", 10, 0), work=1e5)
    blocks = SimpleNamespace(size=(200, 200), plan=budget.Plan(128, "lbfgs", 10, 0), work=6e5)
    slow_blocks = estimate.of_scales([whole, blocks], 1, "gram", {"whole": 1.0, "blocks": 2.0})
    same = estimate.of_scales([whole, blocks], 1, "gram", {"whole": 1.0, "blocks": 1.0})
    assert slow_blocks - same == pytest.approx(6e5)


def test_a_busy_computer_is_named(monkeypatch):
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(estimate, "_steal", lambda: 0.0)
    assert estimate.busy() is None
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (3.0 * (estimate.os.cpu_count() or 1),
                                                           0.0, 0.0))
    assert "busy" in estimate.busy()

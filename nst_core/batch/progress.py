"""The batch's two progress bars (tqdm): the whole batch (images done, failed, ETA) and, under
it, the image being painted. Messages go above the bars."""

from __future__ import annotations

import sys

from .task import Update


class BatchProgress:
    def __init__(self, total: int, names: dict[str, str], quiet: bool = False):
        self.total, self.names, self.quiet = total, names, quiet
        self.done = self.failed = 0
        self.running: dict[str, float] = {}  # key -> fraction of the jobs under way

    def __enter__(self):
        from tqdm import tqdm

        off = self.quiet or None  # None: tqdm turns itself off where stderr is not a terminal
        self.batch = tqdm(total=self.total, disable=off, file=sys.stderr, unit="image",
                          position=0, desc="batch",
                          bar_format="{desc} {n:.1f}/{total} images |{bar}| {elapsed}<{remaining}"
                                     "{postfix}")  # tqdm puts ", " before the postfix
        self.image = tqdm(total=1000, disable=off, file=sys.stderr, position=1, leave=False,
                          bar_format="  {desc}{postfix} {percentage:3.0f}%|{bar}|")
        self._show()
        return self

    def update(self, u: Update) -> None:
        self.running[u.key] = u.fraction
        self.image.set_description_str(self.names.get(u.key, u.key), refresh=False)
        eta = "" if u.eta_s is None else f"ETA {int(u.eta_s) // 60}:{int(u.eta_s) % 60:02d}"
        more = f", {len(self.running) - 1} more running" if len(self.running) > 1 else ""
        self.image.set_postfix_str(eta + more, refresh=False)
        self.image.n = round(u.fraction * 1000)
        self._show()

    def finished(self, key: str, failed: str | None = None) -> None:
        self.running.pop(key, None)
        if failed is None:
            self.done += 1
        else:
            self.failed += 1
            self.message(f"failed: {failed}")
        self._show()

    def message(self, text: str) -> None:
        self.batch.write(text, file=sys.stderr)

    def _show(self) -> None:
        # Fractional: the images under way count by how far they are, so the ETA moves smoothly.
        self.batch.n = self.done + self.failed + sum(self.running.values())
        self.batch.set_postfix_str(f"done {self.done}, failed {self.failed}", refresh=False)
        self.batch.refresh()
        self.image.refresh()

    def __exit__(self, *exc):
        self.image.close()
        self.batch.close()

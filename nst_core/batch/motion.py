"""Carrying an animation's last painted frame along to the next (Ruder et al. 2016): dense
optical flow between the two content frames (OpenCV's DIS, which also fills flat areas such as
a sky, where Farnebäck's flow stays near zero) says where each pixel of the
new frame was; the last result, moved accordingly, is where the new frame starts and what it
holds to, except where the flow is unreliable (new areas, occlusions, the border)."""

from __future__ import annotations

import numpy as np

# A pixel whose moved content differs from the new frame by more than this (0..1, mean of RGB)
# was not seen in the last frame: it is painted afresh.
UNRELIABLE = 0.08


def carry(result: np.ndarray, then: np.ndarray, now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, hold): the last frame's `result` moved to the new frame `now` (the last content
    frame was `then`; all HxWx3 in 0..1, one size), and an HxW mask, 1 where that is reliable.
    Unreliable pixels start from the new content."""
    import cv2

    def grey(a):
        return cv2.cvtColor(np.round(a * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)

    h, w = now.shape[:2]
    # For each pixel of `now`, its offset to where it was in `then`.
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(grey(now), grey(then), None)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xx + flow[..., 0], yy + flow[..., 1]

    def move(a):
        return cv2.remap(np.ascontiguousarray(a, dtype=np.float32), map_x, map_y,
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    seen = np.abs(move(then) - now).mean(axis=2) < UNRELIABLE
    hold = (inside & seen).astype(np.float32)
    start = np.where(hold[..., None] > 0, move(result), now)
    return np.clip(start, 0, 1), hold

"""Which Jetson this is: the board model, SoC and L4T release, and the e4gym device spec they map to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from e4gym.hardware.jetson.paths import COMPATIBLE_FILES, DPKG_STATUS, MODEL_FILES, NV_TEGRA_RELEASE
from e4gym.hardware.sysfs import Sysfs

__all__ = ["DEVICE_RULES", "BoardInfo", "detect_board"]

#: (lower-case text in the model string or a ``compatible`` entry, device spec name); first match wins.
DEVICE_RULES: tuple[tuple[str, str], ...] = (
    ("orin nano", "orin-nano"),
    ("p3767-0003", "orin-nano"),
    ("p3767-0004", "orin-nano"),
    ("p3767-0005", "orin-nano"),
    ("orin nx", "orin-nx"),
    ("p3767-0000", "orin-nx"),
    ("p3767-0001", "orin-nx"),
    ("agx orin", "agx-orin"),
    ("p3701", "agx-orin"),
    ("xavier nx", "xavier-nx"),
    ("p3668", "xavier-nx"),
    ("agx xavier", "agx-xavier"),
    ("jetson-agx", "agx-xavier"),  # the model string of AGX Xavier on L4T 32
    ("p2888", "agx-xavier"),
    ("tx2", "jetson-tx2"),
    ("p3310", "jetson-tx2"),
    ("p3489", "jetson-tx2"),
    ("p3636", "jetson-tx2"),
    ("jetson nano", "jetson-nano"),
    ("jetson-nano", "jetson-nano"),
    ("p3448", "jetson-nano"),
)


@dataclass(frozen=True)
class BoardInfo:
    """What the tree says about the board.

    Attributes:
        model: device-tree model string (``""`` when not found).
        compatible: device-tree ``compatible`` entries.
        soc: ``tegra210``, ``tegra186``, ``tegra194``, ``tegra234`` (``""`` when unknown).
        device: the e4gym device spec it maps to (``None`` when unknown).
        l4t: L4T release, e.g. ``"35.4.1"`` (``None`` when not found).
        l4t_source: the file the release was read from.
    """

    model: str
    compatible: tuple[str, ...]
    soc: str
    device: str | None
    l4t: str | None
    l4t_source: str = ""

    @property
    def l4t_major(self) -> int | None:
        """Major L4T release (32, 35, 36...), ``None`` when unknown."""
        if not self.l4t:
            return None
        try:
            return int(self.l4t.split(".")[0])
        except ValueError:
            return None


_L4T_RELEASE_RE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def _read_l4t(io: Sysfs) -> tuple[str | None, str]:
    text = io.read_opt(io.path(NV_TEGRA_RELEASE))
    if text:
        m = _L4T_RELEASE_RE.search(text)
        if m:
            return f"{m.group(1)}.{m.group(2).rstrip('.')}", NV_TEGRA_RELEASE
    status = io.read_opt(io.path(DPKG_STATUS))
    if status:
        for stanza in re.split(r"\n\s*\n", status):
            if re.search(r"^Package:\s*nvidia-l4t-core\s*$", stanza, re.M):
                m = re.search(r"^Version:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1).split("-")[0], f"{DPKG_STATUS} (nvidia-l4t-core)"
    return None, ""


def _device_for(texts: Sequence[str]) -> str | None:
    for text in texts:
        low = text.lower()
        for key, device in DEVICE_RULES:
            if key in low:
                return device
    return None


def detect_board(sysfs_root: str | Path = "/") -> BoardInfo:
    """Read the board model, SoC and L4T release from the tree rooted at ``sysfs_root`` (never raises).

    The device spec name comes from the model string (``NVIDIA Jetson Xavier NX Developer Kit`` →
    ``xavier-nx``), else from the module part number in ``compatible`` (``p3668`` → ``xavier-nx``); see
    :data:`DEVICE_RULES`.
    """
    io = Sysfs(sysfs_root, read_only=True)
    model = next((t for t in (io.read_opt(io.path(p)) for p in MODEL_FILES) if t), "")
    compatible: tuple[str, ...] = ()
    for p in COMPATIBLE_FILES:
        text = io.read_opt(io.path(p))
        if text:
            compatible = tuple(x for x in text.split() if x)
            break
    soc = next((c.split(",")[-1] for c in compatible if "tegra" in c), "")
    l4t, l4t_source = _read_l4t(io)
    return BoardInfo(model, compatible, soc, _device_for((model, " ".join(compatible))), l4t, l4t_source)

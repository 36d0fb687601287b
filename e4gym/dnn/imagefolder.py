"""A minimal image-folder dataset and the ImageNet preprocessing shared by exit training and trace recording.

Layout (as torchvision's ``ImageFolder``): one sub-folder per class under a root folder, each holding images
(``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, case-insensitive). Classes are the sub-folder names sorted
alphabetically; class index = position in that list (for an ImageNet folder tree named by WordNet ids this
is torchvision's class order). Hidden entries (names starting with ``.``) are ignored.

Preprocessing: the image is converted to RGB, resized to ``size × size`` pixels (bilinear, aspect ratio not
kept), scaled to [0, 1] and normalised per channel with the ImageNet mean and standard deviation.
torchvision is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from e4gym.errors import ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "load_image",
    "normalise_rgb",
    "resize_rgb",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
#: Per-channel (R, G, B) mean and standard deviation of ImageNet, on pixel values in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"image size must be an integer of at least 8 pixels, got {size!r}")
    return size


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB image (H, W, 3) uint8 to (size, size, 3) uint8 with Pillow's bilinear filter."""
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(image, mode="RGB").resize((size, size), Image.BILINEAR))


def normalise_rgb(images: np.ndarray | Sequence[np.ndarray]) -> Tensor:
    """uint8 RGB images (N, H, W, 3) → float32 tensor (N, 3, H, W), scaled to [0, 1], ImageNet-normalised."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images of shape (N, H, W, 3), got {arr.dtype} {arr.shape}")
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, copy=True, order="C")
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def load_image(path: str | Path, size: int) -> Tensor:
    """Read an image file, resize it to ``size × size`` pixels and normalise it; returns (3, size, size).

    Raises:
        ConfigError: the file cannot be opened or decoded as an image (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    size = _check_size(size)
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ConfigError(
            f"{path}: cannot read this image ({exc}); replace or delete the file (supported: "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        ) from exc
    return normalise_rgb(rgb)[0]


class ImageFolder(Dataset):
    """Images in one sub-folder per class; item ``i`` is ``(image (3, size, size) float32, class index)``.

    Args:
        root: the folder holding one sub-folder per class.
        size: side of the square the images are resized to, in pixels.
        min_per_class: fewest images a class folder must hold.

    Attributes:
        classes: class (sub-folder) names, sorted.
        samples: ``(path, class index)`` pairs, sorted by class then file name.
        targets: the class index of each sample.

    Raises:
        ConfigError: ``root`` is missing or not a folder, has fewer than two class folders, or a class
            folder holds fewer than ``min_per_class`` images (the message names the folder and the fix).
    """

    def __init__(self, root: str | Path, size: int = 224, min_per_class: int = 1) -> None:
        self.root = Path(root)
        self.size = _check_size(size)
        if not self.root.exists():
            raise ConfigError(
                f"{self.root}: data folder not found; pass a folder holding one sub-folder of images per class"
            )
        if not self.root.is_dir():
            raise ConfigError(
                f"{self.root}: not a folder; pass a folder holding one sub-folder of images per class"
            )
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(classes) < 2:
            raise ConfigError(
                f"{self.root}: found {len(classes)} class folder(s) {classes}; need at least 2 sub-folders, "
                f"one per class, each holding images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        samples: list[tuple[Path, int]] = []
        for idx, name in enumerate(classes):
            folder = self.root / name
            files = sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if len(files) < min_per_class:
                raise ConfigError(
                    f"{folder}: class folder holds {len(files)} image(s) ({', '.join(IMAGE_EXTENSIONS)}); "
                    f"need at least {min_per_class}: add images or remove the folder"
                )
            samples.extend((p, idx) for p in files)
        self.classes: list[str] = classes
        self.samples: list[tuple[Path, int]] = samples
        self.targets: list[int] = [t for _, t in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, target = self.samples[i]
        return load_image(path, self.size), target

"""The OSIE eye-fixation set (700 photos, 800x600, 15 viewers each), read in place.

Layout (../shared/data/osie): stimuli/NNNN.jpg and eye/fixations.mat, a MATLAB struct array
`fixations(i).img` / `.subjects{j}.fix_x, fix_y, fix_duration`. Following standard practice each
viewer's first fixation is dropped (it sits where the image appeared, usually the centre), and
density maps are blurred by about one degree of visual angle, ~16 px on these photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lens.config import REPO_ROOT
from lens.errors import LensError

DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "data" / "osie"
OSIE_SHAPE = (600, 800)  # H, W of every OSIE photo
# ~1 degree of visual angle at OSIE's viewing distance; the dataset README recommends 16 px.
DEFAULT_SIGMA = 16.0


class OsieMissingError(LensError):
    """The OSIE data is not where it was looked for."""


@dataclass(frozen=True, eq=False)
class OsieImage:
    id: str  # file stem, e.g. "1001"
    path: Path
    # (N, 2) float x, y in 0-based pixel coordinates, first fixation of each viewer dropped.
    fixations: np.ndarray
    # (N,) int: which viewer (0-based) made each fixation, for inter-observer measurements.
    viewers: np.ndarray
    shape: tuple[int, int] = OSIE_SHAPE

    def fixation_map(self) -> np.ndarray:
        return fixation_map(self.fixations, self.shape)

    def density_map(self, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
        return density_map(self.fixations, self.shape, sigma)

    def load_rgb(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as img:
            return np.asarray(img.convert("RGB"))


def _row(field: np.ndarray) -> np.ndarray:
    return np.asarray(field, dtype=np.float64).ravel()


def load_osie(root: str | Path | None = None, drop_first: bool = True) -> list[OsieImage]:
    """Every OSIE photo with its fixations, in file order."""
    return list(_load_cached(str(Path(root) if root else DEFAULT_ROOT), drop_first))


@lru_cache(maxsize=4)
def _load_cached(root_str: str, drop_first: bool) -> tuple[OsieImage, ...]:
    from scipy.io import loadmat

    root = Path(root_str)
    mat_path = root / "eye" / "fixations.mat"
    stimuli = root / "stimuli"
    if not mat_path.is_file() or not stimuli.is_dir():
        raise OsieMissingError(
            f"OSIE data not found under {root} (need eye/fixations.mat and stimuli/)"
        )
    records = loadmat(mat_path)["fixations"].ravel()
    images = []
    for record in records:
        entry = record[0, 0] if record.ndim else record
        name = str(np.asarray(entry["img"]).ravel()[0])
        points, viewers = [], []
        for viewer, subject in enumerate(np.asarray(entry["subjects"]).ravel()):
            s = subject[0, 0] if subject.ndim else subject
            xs, ys = _row(s["fix_x"]), _row(s["fix_y"])
            if drop_first:
                xs, ys = xs[1:], ys[1:]
            # MATLAB coordinates are 1-based.
            points.append(np.stack([xs - 1.0, ys - 1.0], axis=1))
            viewers.append(np.full(xs.size, viewer, dtype=np.int32))
        fix = np.concatenate(points) if points else np.zeros((0, 2))
        who = np.concatenate(viewers) if viewers else np.zeros(0, dtype=np.int32)
        h, w = OSIE_SHAPE
        # A few recorded fixations fall just outside the screen area of the photo.
        inside = (fix[:, 0] >= 0) & (fix[:, 0] < w) & (fix[:, 1] >= 0) & (fix[:, 1] < h)
        images.append(
            OsieImage(id=Path(name).stem, path=stimuli / name, fixations=fix[inside], viewers=who[inside])
        )
    return tuple(images)


def fixation_map(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float32 (H, W) map counting the fixations at each pixel (zero where none)."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.size == 0:
        return out
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
    np.add.at(out, (ys, xs), 1.0)
    return out


def density_map(points: np.ndarray, shape: tuple[int, int], sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Fixations blurred by a Gaussian of `sigma` px, scaled to a maximum of 1 (float32)."""
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(fixation_map(points, shape).astype(np.float64), sigma, mode="constant")
    top = blurred.max()
    return (blurred / top if top > 0 else blurred).astype(np.float32)


def other_fixation_map(images: list[OsieImage], exclude: int, shape: tuple[int, int] = OSIE_SHAPE) -> np.ndarray:
    """Fixations of every image except `images[exclude]`: the negatives of shuffled AUC."""
    points = [im.fixations for i, im in enumerate(images) if i != exclude]
    return fixation_map(np.concatenate(points) if points else np.zeros((0, 2)), shape)

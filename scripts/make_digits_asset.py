"""Write core/data/assets/digits.npz from scikit-learn's bundled digits (run once).

scikit-learn is only needed to run this script, never at runtime: imori ships the
resulting 45 KB file. The 1,797 images are 8x8 with values 0..16 (stored as uint8).

    python scripts/make_digits_asset.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET = Path(__file__).resolve().parents[1] / "core" / "data" / "assets" / "digits.npz"


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images)
    labels = np.asarray(digits.target)
    assert images.shape == (1797, 8, 8) and images.min() >= 0 and images.max() <= 16
    assert np.array_equal(images, np.round(images)), "digits are expected to be whole numbers"
    images_u8 = images.astype(np.uint8)
    labels_u8 = labels.astype(np.uint8)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(TARGET, images=images_u8, labels=labels_u8)
    with np.load(TARGET) as check:  # round-trips exactly
        assert np.array_equal(check["images"], images_u8)
        assert np.array_equal(check["labels"], labels_u8)
    print(f"wrote {TARGET} ({TARGET.stat().st_size:,} bytes, {len(labels_u8)} images)")


if __name__ == "__main__":
    main()

"""Where tests put the pictures they draw: docs/images/ when TRADERD_DOCS_IMAGES=1 (to refresh the README's
pictures), else a temporary folder, so an ordinary test run leaves the checkout as it was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def images_dir() -> Path:
    if os.environ.get("TRADERD_DOCS_IMAGES") == "1":
        REPO_IMAGES.mkdir(parents=True, exist_ok=True)
        return REPO_IMAGES
    return Path(tempfile.mkdtemp(prefix="traderd-images-"))

"""Images (PNG, JPEG, TIFF, BMP): OCR, one page per frame of a multi-page TIFF."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ingest.parsers import ocr
from ingest.parsers.base import ParsedDocument, ParseError
from ingest.parsers.limits import check_page_count

if TYPE_CHECKING:
    from PIL.Image import Image

# tesseract needs letters about 20-30 pixels high. A screenshot or a page saved at
# 72 dpi has them at 10: upscaled, the same file read nearly perfectly instead of
# as gibberish. Photos and proper scans are larger and left alone.
_MIN_LONG_SIDE = 2000
_TARGET_LONG_SIDE = 2500


def _for_ocr(frame: Image) -> bytes:
    """One frame upright, on white, greyscale and large enough, as a PGM image."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    image = ImageOps.exif_transpose(frame)  # phones store the rotation as a tag
    if image.mode in ("RGBA", "LA", "PA", "P") and (image.mode != "P" or "transparency" in image.info):
        # Transparent pixels are black underneath: text on them would vanish.
        rgba = image.convert("RGBA")
        image = PILImage.new("RGBA", rgba.size, "white")
        image.alpha_composite(rgba)
    grey = image.convert("L")
    long_side = max(grey.size)
    if long_side < _MIN_LONG_SIDE:
        scale = min(4.0, _TARGET_LONG_SIDE / long_side)
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    grey.save(out, format="PPM")  # uncompressed: nothing to gain from PNG on a pipe
    return out.getvalue()


class ImageParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"png", "jpg", "tiff", "bmp"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        ocr.require_ocr()
        from PIL import Image as PILImage

        try:
            with PILImage.open(path) as image:
                frames = int(getattr(image, "n_frames", 1))
        except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
            raise ParseError(f"The image could not be read; it may be damaged ({exc}).") from exc
        check_page_count(frames)

        def read(page: int) -> str:
            # Each thread opens the file itself: a PIL image is not shared across threads.
            try:
                with PILImage.open(path) as image:
                    image.seek(page - 1)
                    encoded = _for_ocr(image)
            except (OSError, ValueError, EOFError, PILImage.DecompressionBombError) as exc:
                raise ParseError(f"The image could not be read; it may be damaged ({exc}).") from exc
            return ocr.ocr_image(encoded, what=f"page {page}" if frames > 1 else "the image")

        numbers = list(range(1, frames + 1))
        texts = ocr.in_parallel(read, numbers)
        elements = [e for page, text in zip(numbers, texts, strict=True) for e in ocr.text_elements(text, page=page)]
        if not elements:
            raise ParseError("No text was found in the image.")
        return ParsedDocument(elements=elements, pages=frames)

"""Strict checks of an uploaded image before any model sees it (project p4, layer 1).

``decode_upload(data, content_type, limits)`` turns the bytes of one PNG or JPEG into a tensor
x: (1, C, H, W) float in [0, 1] of the model's input shape, or raises ``UploadError`` with an HTTP
status (4xx) and a message the client can act on. The checks run cheapest first, and nothing is
decoded before the header says the image is small enough:

1. content type: ``image/png`` or ``image/jpeg`` (415 otherwise);
2. byte size: not empty, at most ``max_bytes`` (413);
3. magic bytes: the file really starts like a PNG / JPEG and matches the declared type (415);
4. header: width and height at most ``max_side`` and ``max_pixels`` in all, read from the header
   without decoding (a decompression bomb is a tiny file that declares a huge image: 413). The
   limits are sized to the model: by default ``PIXEL_FACTOR`` = 64 times its input pixels (224 x 224
   for a 28 x 28 model) and ``SIDE_FACTOR`` = 16 times its longer side, so the costliest accepted
   upload decodes in milliseconds (a 4000 x 4000 16-bit PNG cost 460 ms under the old 16 Mpx limit);
5. full decode under Pillow's own bomb guard; truncated or corrupt data is a 400;
6. EXIF orientation applied (``ImageOps.exif_transpose``: a phone photo is seen as it is shown);
7. values scaled by bit depth (16-bit PNG: / 65535, not clipped at 255), colour mode converted
   to the model's channels, size resized (bilinear) to the model's.

``decode_upload`` is CPU work: the service runs it in a worker thread, off the event loop.

Pillow's decoders are the largest attack surface here: keep Pillow patched (OWASP File Upload
Cheat Sheet; CVE-2023-44271 and friends are denial-of-service bugs in image parsing).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch

PIXEL_FACTOR = 64  # default max_pixels: this many times the model's input pixels H * W
SIDE_FACTOR = 16  # default max_side: this many times the model's longer side
HIGH_BIT_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}  # PNG 16-bit grey
CONTENT_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}
MAGIC = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}


class UploadError(ValueError):
    """A rejected upload: ``status`` (an HTTP 4xx code) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UploadLimits:
    """What the service accepts. input_shape: the model's (C, H, W); C is 1 (grey) or 3 (RGB).

    max_side / max_pixels default to ``SIDE_FACTOR`` x max(H, W) and ``PIXEL_FACTOR`` x H x W.
    """

    input_shape: tuple = (1, 28, 28)
    max_bytes: int = 1_000_000  # 1 MB: a phone photo resized by the app is far smaller
    max_side: int | None = None  # pixels per side, read from the header before decoding
    max_pixels: int | None = None  # width * height, the decompression-bomb limit

    def __post_init__(self):
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else ()
        if (len(shape) != 3 or shape[0] not in (1, 3)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in shape)):
            raise ValueError(f"input_shape must be (C, H, W) with C = 1 or 3 and 1 <= H, W <= 4096, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        if self.max_side is None:
            object.__setattr__(self, "max_side", SIDE_FACTOR * max(shape[1:]))
        if self.max_pixels is None:
            object.__setattr__(self, "max_pixels", PIXEL_FACTOR * shape[1] * shape[2])
        for name in ("max_bytes", "max_side", "max_pixels"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


def check_content_type(content_type: str | None) -> str:
    """The image format ("PNG" / "JPEG") named by a Content-Type header, else UploadError(415)."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base not in CONTENT_TYPES:
        raise UploadError(415, f"content type must be image/png or image/jpeg, got {base or 'none'!r}")
    return CONTENT_TYPES[base]


def decode_upload(data: bytes, content_type: str | None, limits: UploadLimits = UploadLimits()) -> torch.Tensor:
    """Validate and decode one uploaded image: bytes -> x (1, C, H, W) float32 in [0, 1].

    Raises ``UploadError`` (status 400, 413 or 415, with a message); never anything else for bad
    bytes. The returned tensor has the model's ``limits.input_shape``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    fmt = check_content_type(content_type)
    if not data:
        raise UploadError(400, "the upload is empty: send the bytes of one PNG or JPEG image")
    if len(data) > limits.max_bytes:
        raise UploadError(413, f"the upload has {len(data):,} bytes; at most {limits.max_bytes:,} are accepted")
    if not data.startswith(MAGIC[fmt]):
        actual = next((f for f, m in MAGIC.items() if data.startswith(m)), None)
        what = f"a {actual} file" if actual else "not a PNG or JPEG file"
        raise UploadError(415, f"content type says {fmt}, but the bytes are {what}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
            w, h = img.size
            if w < 1 or h < 1 or w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
                raise UploadError(413, f"image is {w} x {h} pixels; at most {limits.max_side} per side and "
                                       f"{limits.max_pixels:,} in all are accepted")
            img.load()  # full decode: truncated / corrupt data fails here
            try:
                img = ImageOps.exif_transpose(img)  # as the camera meant it to be shown
            except Exception as e:  # noqa: BLE001 - a malformed EXIF block is the client's bad file, not a 500
                raise UploadError(400, f"the {fmt} file's EXIF metadata could not be read ({type(e).__name__})") from None
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError(413, f"image refused as a decompression bomb: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise UploadError(400, f"the {fmt} file is corrupt or truncated and could not be decoded ({type(e).__name__})") from None
    return _to_tensor(img, limits.input_shape)


def _to_tensor(img, input_shape) -> torch.Tensor:
    from PIL import Image

    c, h, w = input_shape
    if img.mode in HIGH_BIT_MODES:  # 16-bit grey: scale by the bit depth (convert("L") would clip at 255)
        grey = Image.fromarray(np.asarray(img, dtype=np.float32) / HIGH_BIT_MODES[img.mode])  # mode "F"
        if grey.size != (w, h):
            grey = grey.resize((w, h), Image.BILINEAR)
        arr = np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)
        arr = np.repeat(arr[None], c, axis=0)
        return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
    try:
        img = img.convert("L" if c == 1 else "RGB")
    except (ValueError, OSError) as e:
        raise UploadError(400, f"image mode {img.mode!r} cannot be converted to {'grey' if c == 1 else 'RGB'}: {e}") from None
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)


def encode_png(x: torch.Tensor) -> bytes:
    """One image x: (C, H, W) or (1, C, H, W) in [0, 1] -> PNG bytes (8 bits per channel, lossless).

    Rounds to the 1/255 grid, so an image sent through the API is what the service decodes.
    """
    from PIL import Image

    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"encode_png takes one image, got a batch of shape {tuple(x.shape)}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"x must have shape (C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    arr = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

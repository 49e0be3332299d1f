"""Banner text: OCR (``index --ocr``), its per-item store, and search by the words read.

- :mod:`.engine`: PP-OCRv4 detection and recognition (rapidocr-onnxruntime's ONNX files
  and its pre/post-processing) run through the project's own onnxruntime;
- :mod:`.store`: ``<collection>/ocr/``, the text and boxes of every item, and
  :func:`load_ocr`;
- :mod:`.read`: the job that reads a collection's images, threaded and resumable.
"""

from .engine import OcrLine, OcrResult
from .store import load_ocr

__all__ = ["OcrLine", "OcrResult", "load_ocr"]

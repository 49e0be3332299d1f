"""bannermatch: find images that look alike, from Steam banners to any folder of pictures."""

__version__ = "0.1.0"

"""Turning images into vectors: the models (presets, weights, engines), decoding into
batches, the ``index`` job and its Ray variant."""

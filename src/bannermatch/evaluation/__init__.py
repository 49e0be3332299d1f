"""Measuring: ``audit`` (the collection's health), ``eval`` on same-item groups and on
synthetic copies, model comparisons, and the re-rank's figures."""

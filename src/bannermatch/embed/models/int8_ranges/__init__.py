"""Shipped int8 activation ranges, one JSON file per fp32 export and recipe
(:mod:`bannermatch.embed.models.ranges`; remade by ``bench/int8_ranges.py``)."""

"""Art-only variants on a grouped folder: recall and text bias per mask method and pad.

    .venv/bin/python bench/text_mask_variants.py IMAGES GROUPS.tsv --ocr-from COLLECTION \
        [blur:0.3 inpaint:0.15 fill:0 blur:0.3:0.08 ...] [--out results.jsonl]

Each variant is ``METHOD:PAD[:BLUR_SIGMA]``: the same ``bannermatch.evaluation.evaluate``
as ``bannermatch eval IMAGES --groups TSV --text-bias --mask-text METHOD``, with
``bannermatch.ocr.mask.PAD`` (and ``BLUR_SIGMA``) set for the run; the model is loaded
once. The text comes from COLLECTION's ``index --ocr`` store (matched by SHA-256).
One JSON line a variant: recall@1, recall@10, mAP, text bias and its counts, seconds.
docs/evaluation.md ("Text bias") has the figures on the covers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import bannermatch.ocr.mask as mask
from bannermatch.embed.models import create_model
from bannermatch.evaluation.groups import evaluate
from bannermatch.evaluation.text import TextEval


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("images")
    p.add_argument("groups")
    p.add_argument("variants", nargs="*", default=["blur:0.3", "inpaint:0.3", "fill:0.3"])
    p.add_argument("--ocr-from", required=True, help="a collection indexed with --ocr")
    p.add_argument("--out", help="append the JSON lines to this file too")
    args = p.parse_args(argv)
    net = create_model("effnet-lite0", device="cpu")
    pad, sigma = mask.PAD, mask.BLUR_SIGMA
    for spec in args.variants:
        method, pad_text, *rest = spec.split(":")
        mask.PAD, mask.BLUR_SIGMA = float(pad_text), float(rest[0]) if rest else sigma
        t0 = time.perf_counter()
        options = TextEval(bias=True, mask=method, ocr_from=args.ocr_from)
        result = evaluate(args.images, args.groups, model=net, progress=False, text=options)
        d = result.to_dict()
        row = {
            "variant": spec,
            "recall@1": d["recall@1"],
            "recall@10": d["recall@10"],
            "mAP": d["mAP"],
            **{k: d["text"][k] for k in ("text_bias", "sharing_a_word", "other_group_neighbours")},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    mask.PAD, mask.BLUR_SIGMA = pad, sigma
    return 0


if __name__ == "__main__":
    sys.exit(main())

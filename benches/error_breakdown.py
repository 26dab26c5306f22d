"""Where a binary segmentation model's errors are: whole structures missed or added, the
boundary, and the slice position; next to what a one-pixel boundary error alone would score.

    medseg segment --model m.onnx test_images/ --out pred/
    python3 benches/error_breakdown.py --pred pred/ --truth data/masks/

Slices are matched by file name (<name>_mask.png in --pred, <name>.png in --truth). Names
ending in a slice number (myo47_sag020) are grouped by the part before the first '_' (the
patient), and each slice is placed by its distance from that patient's area-weighted centre
slice, in five bins from central (0) to outermost (4).

With --levels (masks numbering the structures 1..K from top to bottom, e.g. the data set's
masks_level/), added structures are split by where they sit: above level 1 or below level K
(the network counted wrong: T12 or the sacrum taken for a lumbar body) or in between.
"""
import argparse
import collections
import pathlib
import re

import numpy as np
from PIL import Image
from scipy import ndimage


def dice(pred_px, truth_px, both_px):
    return 2 * both_px / max(pred_px + truth_px, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", type=pathlib.Path, required=True)
    ap.add_argument("--truth", type=pathlib.Path, required=True)
    ap.add_argument("--levels", type=pathlib.Path,
                    help="optional folder of level masks (1..K top to bottom), same file names as --truth")
    ap.add_argument("--min-overlap", type=float, default=0.2,
                    help="a structure overlapping the other mask by less than this share counts as missed / added")
    args = ap.parse_args()

    slices = []  # (patient, slice number, pred, truth)
    for f in sorted(args.pred.glob("*_mask.png")):
        name = f.name[: -len("_mask.png")]
        truth_file = args.truth / f"{name}.png"
        if not truth_file.exists():
            raise SystemExit(f"{truth_file}: no ground truth for prediction {f}")
        p = np.array(Image.open(f).convert("L")) > 0
        g = np.array(Image.open(truth_file).convert("L")) > 0
        if p.shape != g.shape:
            raise SystemExit(f"{f}: shape {p.shape}, ground truth {truth_file} has {g.shape}")
        number = re.search(r"(\d+)$", name)
        levels = None
        if args.levels:
            levels = np.array(Image.open(args.levels / f"{name}.png").convert("L"))
            if levels.shape != g.shape:
                raise SystemExit(f"{args.levels / (name + '.png')}: shape {levels.shape}, ground truth has {g.shape}")
        slices.append((name.split("_")[0], int(number.group(1)) if number else 0, p, g, levels))
    if not slices:
        raise SystemExit(f"{args.pred}: no *_mask.png files (the output of `medseg segment`)")

    totals = np.zeros(3)  # predicted, truth, both
    fp = fn = missed_px = added_px = 0
    missed = added = structures = 0
    bounds = {"truth eroded 1 px": np.zeros(3), "truth dilated 1 px": np.zeros(3),
              "truth shifted 1 px": np.zeros(3)}
    added_where = collections.Counter()  # with --levels: above / below / between, in pixels
    edges = (1.5, 2.5, 5.5)
    by_distance = np.zeros(len(edges) + 1)  # error pixels by distance to the other mask
    for _, _, p, g, levels in slices:
        totals += [p.sum(), g.sum(), (p & g).sum()]
        fp += (p & ~g).sum()
        fn += (g & ~p).sum()
        labels, n = ndimage.label(g)
        for i in range(1, n + 1):
            c = labels == i
            structures += 1
            if (c & p).sum() < args.min_overlap * c.sum():
                missed += 1
                missed_px += (c & ~p).sum()
        if levels is not None and levels.max() > 0:  # rows of the top and bottom level present
            top = np.nonzero((levels == levels[levels > 0].min()).any(1))[0].min()
            bottom = np.nonzero((levels == levels.max()).any(1))[0].max()
        else:
            top = bottom = None
        labels, n = ndimage.label(p)
        for i in range(1, n + 1):
            c = labels == i
            if (c & g).sum() < args.min_overlap * c.sum():
                added += 1
                added_px += (c & ~g).sum()
                if top is not None:
                    centre = np.nonzero(c)[0].mean()
                    where = "above" if centre < top else "below" if centre > bottom else "between"
                    added_where[where] += (c & ~g).sum()
        # How far each wrong pixel is from the other mask: 1 px is a boundary disagreement.
        for wrong, other in ((g & ~p, p), (p & ~g, g)):
            if wrong.any():
                dist = ndimage.distance_transform_edt(~other) if other.any() else np.full(g.shape, np.inf)
                by_distance += np.histogram(dist[wrong], [0, *edges, np.inf])[0]
        for key, q in zip(bounds, (ndimage.binary_erosion(g), ndimage.binary_dilation(g), np.roll(g, 1, 0))):
            bounds[key] += [q.sum(), g.sum(), (q & g).sum()]

    errors = max(fp + fn, 1)
    print(f"{len(slices)} slices, Dice {dice(*totals):.4f}; error pixels: {fp} false positive, {fn} false negative")
    print(f"whole structures missed: {missed} of {structures}, {missed_px / errors:.0%} of the error pixels")
    print(f"structures added where there is none: {added}, {added_px / errors:.0%} of the error pixels")
    if added_where:
        print("  of which (--levels) above the top level in the slice {:.0%}, below the bottom one {:.0%}, between {:.0%}".format(
            *(added_where[k] / errors for k in ("above", "below", "between"))))
    rest = (errors - missed_px - added_px) / errors
    print(f"the rest, {rest:.0%}, is in structures both masks have: boundaries and partial misses")
    print("error pixels by distance to the other mask: 1 px {:.0%}, 2 px {:.0%}, 3-5 px {:.0%}, "
          "more {:.0%}".format(*(by_distance / errors)))
    # Dice = 2I / (2I + E): keeping only the one-pixel disagreements leaves E * share.
    both2 = 2 * totals[2]
    print(f"Dice with every error beyond 1 px fixed: {both2 / (both2 + by_distance[0]):.4f}")

    by_patient = collections.defaultdict(list)
    for s in slices:
        by_patient[s[0]].append(s)
    bins = collections.defaultdict(lambda: np.zeros(3))
    for rows in by_patient.values():
        numbers = np.array([r[1] for r in rows], float)
        areas = np.array([r[3].sum() for r in rows], float)
        centre = (numbers * areas).sum() / max(areas.sum(), 1)
        half = max(np.abs(numbers - centre).max(), 1e-9)
        for (_, k, p, g, _) in rows:
            b = min(int(abs(k - centre) / half * 5), 4)
            bins[b] += [p.sum(), g.sum(), (p & g).sum()]
    print("slice position (0 central .. 4 outermost): Dice, precision, recall, share of the error pixels")
    for b in sorted(bins):
        pp, gg, both = bins[b]
        share = (pp + gg - 2 * both) / errors
        print(f"  {b}: {dice(pp, gg, both):.3f}  {both / max(pp, 1):.3f}  {both / max(gg, 1):.3f}  {share:.0%}")
    print("what a one-pixel boundary error alone scores (Dice against the truth):")
    for key, t in bounds.items():
        print(f"  {key}: {dice(*t):.3f}")


if __name__ == "__main__":
    main()

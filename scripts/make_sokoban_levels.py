"""Regenerate the shipped Sokoban level sets in data/sokoban/, byte-identically.

    python scripts/make_sokoban_levels.py            # writes data/sokoban/*.jsonl
    python scripts/make_sokoban_levels.py --check    # regenerates in memory, fails if a file differs

ID  = 6x6 boards with 1 box  (RAGEN's SimpleSokoban), solutions of 3..15 moves.
OOD = 8x8 boards with 2 boxes (RAGEN's LargerSokoban), solutions of 3..22 moves.
Level i of a family comes from ``generate_level(seed=base + i)``; a grid already
taken by an earlier level is skipped, so no grid appears in two splits.

mix_train / mix_val: the training levels (families shuffled together), from two generator
styles (``reverse_play``, ``room_carving``) on 6x6, 7x7 and 8x8 boards with one
box and 6x6 and 7x7 boards with two boxes, spread evenly over solution lengths
(``envs.generators.level_set``). Never in them: an 8x8 board with two boxes (the
OOD setting) and the ``random_placement`` style (held out).

style_test_*: 6x6 one-box test sets of the other two styles, 20 levels per
optimal length: ``room_carving`` (a training style, 4..10 moves) and
``random_placement`` (the held-out style, 4..12 moves).

    python scripts/make_sokoban_levels.py --extra-id 9000 --extra-out runs/extra/id_extra_9000.jsonl

writes, instead, N more levels of the ID family's generator (reverse play, 6x6, one box;
seeds from 3,000,000; no grid of any shipped split), not shipped: the training levels of
row W in ``benchmarks/stage1_variants.md`` (more distinct levels for the same SFT steps).

    python scripts/make_sokoban_levels.py --extra-spread 1800 --extra-out runs/extra/rp_spread_4_8.jsonl

writes N levels of that generator spread evenly over 4..8 optimal moves (``level_set``,
seeds from 5,000,000; no shipped grid), not shipped: the training levels of row AB (a spread
of difficulty from the training generator alone). 8 moves is its reach at 6x6: it makes too
few distinct levels of 9 and 10 moves.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from dynamind_lite.envs.generators import level_set
from dynamind_lite.envs.sokoban import generate_level, load_levels, solve
from dynamind_lite.io import jsonl_text, write_text_atomic

FAMILIES = {
    # family: (size, num_boxes, max_moves, base seed, [(split, count), ...])
    "id": ((6, 6), 1, 15, 0, [("train", 2000), ("val", 100), ("test", 200)]),
    "ood": ((8, 8), 2, 22, 1_000_000, [("train", 300), ("val", 50), ("test", 100)]),
}


def draw_family_levels(name: str, prefix: str, count: int, seed: int, seen: set[str]) -> tuple[list[dict], int]:
    """``count`` levels of family ``name`` from generator seeds ``seed, seed + 1, ...``, skipping
    (and adding to ``seen``) grids already seen; returns them and the next unused seed."""
    size, num_boxes, max_moves = FAMILIES[name][:3]
    rows: list[dict] = []
    while len(rows) < count:
        grid = generate_level(seed, size, num_boxes, max_moves=max_moves)
        if grid not in seen:
            seen.add(grid)
            rows.append({"id": f"{prefix}_{len(rows):04d}", "grid": grid, "solution": solve(grid),
                         "size": list(size), "num_boxes": num_boxes, "seed": seed})
        seed += 1
    return rows, seed


def make_family(name: str) -> dict[str, list[dict]]:
    """All splits of one family, as lists of level records."""
    seed, splits = FAMILIES[name][3:]
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, count in splits:
        out[f"{name}_{split}"], seed = draw_family_levels(name, f"{name}_{split}", count, seed, seen)
    return out


MIX = [
    # (style, size, boxes, solution lengths, train count, val count): lengths each style makes at that size
    ("reverse_play", (6, 6), 1, range(4, 9), 400, 20),
    ("room_carving", (6, 6), 1, range(4, 11), 400, 20),
    ("reverse_play", (7, 7), 1, range(4, 10), 150, 10),
    ("room_carving", (7, 7), 1, range(4, 13), 150, 10),
    ("reverse_play", (8, 8), 1, range(4, 10), 120, 10),
    ("room_carving", (8, 8), 1, range(4, 13), 120, 10),
    ("reverse_play", (6, 6), 2, range(4, 13), 150, 10),
    ("reverse_play", (7, 7), 2, range(4, 13), 150, 10),
]
"""The tiny preset's training mix (mix_train, mix_val)."""

STYLE_TESTS = {
    # split: (style, lengths, levels per length, first seed)
    "style_test_room_carving": ("room_carving", range(4, 11), 20, 8_000_000),
    "style_test_random_placement": ("random_placement", range(4, 13), 20, 9_000_000),
}
"""6x6 one-box test sets of the two styles besides reverse play (id_test)."""


def make_styles(taken: set[str]) -> dict[str, list[dict]]:
    """The style test sets, then mix_train and mix_val; no grid of ``taken`` or of
    an earlier set is reused (tests first, so training never holds a test grid)."""
    out: dict[str, list[dict]] = {}
    for split, (style, lengths, per_length, seed) in STYLE_TESTS.items():
        rows = level_set(style, per_length * len(lengths), lengths=lengths, first_seed=seed, exclude=taken,
                         prefix=split)
        taken |= {row["grid"] for row in rows}
        out[split] = rows
    for split in ("mix_val", "mix_train"):
        rows = []
        for family, (style, size, boxes, lengths, train_count, val_count) in enumerate(MIX):
            seed = 100_000 * (family + 1) + (50_000 if split == "mix_val" else 0)
            count = val_count if split == "mix_val" else train_count
            part = level_set(style, count, size=size, num_boxes=boxes, lengths=lengths,
                             first_seed=seed, exclude=taken, prefix=f"{style}_{size[0]}x{size[1]}_{boxes}")
            taken |= {row["grid"] for row in part}
            rows += part
        random.Random(split).shuffle(rows)  # families interleaved: the first N levels are a mix too
        out[split] = [{**row, "id": f"{split}_{i:04d}"} for i, row in enumerate(rows)]
    return {split: out[split] for split in (*STYLE_TESTS, "mix_train", "mix_val")}


EXTRA_ID_FIRST_SEED = 3_000_000
"""First generator seed of ``--extra-id``: above every shipped family's seeds."""


def make_extra_id(count: int, taken: set[str]) -> list[dict]:
    """``count`` more ID-family levels (6x6, one box), none of whose grids is in ``taken``."""
    return draw_family_levels("id", "id_extra", count, EXTRA_ID_FIRST_SEED, taken)[0]


EXTRA_SPREAD_FIRST_SEED = 5_000_000
"""First rng seed of ``--extra-spread``."""
EXTRA_SPREAD_LENGTHS = range(4, 9)
"""Optimal lengths of ``--extra-spread``: what reverse play makes at 6x6 with one box."""


def make_extra_spread(count: int, taken: set[str]) -> list[dict]:
    """``count`` reverse-play 6x6 one-box levels spread evenly over EXTRA_SPREAD_LENGTHS, none in ``taken``."""
    return level_set("reverse_play", count, lengths=EXTRA_SPREAD_LENGTHS, first_seed=EXTRA_SPREAD_FIRST_SEED,
                     exclude=taken, prefix="rp_spread")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "sokoban")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    extra_levels = parser.add_mutually_exclusive_group()
    extra_levels.add_argument("--extra-id", type=int, metavar="N",
                              help="instead, write N more ID-family levels (no shipped grid) to --extra-out")
    extra_levels.add_argument("--extra-spread", type=int, metavar="N",
                              help="instead, write N ID-generator levels spread over 4..8 moves (no shipped grid) "
                                   "to --extra-out")
    parser.add_argument("--extra-out", type=Path, help="the JSONL file of --extra-id or --extra-spread")
    args = parser.parse_args(argv)
    if args.extra_id is not None or args.extra_spread is not None:
        flag, count, make = (("--extra-id", args.extra_id, make_extra_id) if args.extra_id is not None
                             else ("--extra-spread", args.extra_spread, make_extra_spread))
        if count < 1 or args.extra_out is None:
            parser.error(f"{flag} needs a positive N and --extra-out FILE")
        shipped = {level["grid"] for path in args.out.glob("*.jsonl") for level in load_levels(path)}
        if not shipped:
            parser.error(f"no level files in {args.out}: {flag} keeps its grids apart from the shipped ones")
        write_text_atomic(args.extra_out, jsonl_text(make(count, shipped)))
        print(f"{args.extra_out}: {count} levels")
        return 0
    mismatches = 0
    splits = {split: rows for family in FAMILIES for split, rows in make_family(family).items()}
    splits.update(make_styles({row["grid"] for rows in splits.values() for row in rows}))
    for split, rows in splits.items():
        path = args.out / f"{split}.jsonl"
        text = jsonl_text(rows)
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            mismatches += not same
            print(f"{path}: {'identical' if same else 'DIFFERS'}")
        else:
            write_text_atomic(path, text)
            print(f"{path}: {len(rows)} levels")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

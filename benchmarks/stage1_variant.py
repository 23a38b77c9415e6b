"""One Stage 1 variant of the tiny preset, end to end, on the held-out benchmark (not a test).

    python benchmarks/stage1_variant.py --out runs/variant-mix6-s0 --seed 0 --levels id_train:1000 mix_train@6x6/1
    python benchmarks/stage1_variant.py --out runs/variant-explore03-s0 --seed 0 --levels id_train:1800 --explore 0.3
    python benchmarks/stage1_variant.py --out runs/variant-wide192-s0 --levels id_train:1800 --base runs/tiny-base-192
    python benchmarks/stage1_variant.py --out runs/variant-2x-s0 --seed 0 --levels id_train:1800 --max-steps 3490
    python benchmarks/stage1_variant.py --out runs/variant-order-s0 --seed 0 --levels id_train:1800 --rollout-order action
    python benchmarks/stage1_variant.py --out runs/variant-b4order-s0 --seed 0 --levels id_train:1800 --rollout-order action --b 4
    python benchmarks/stage1_variant.py --out runs/variant-b4search-s0 --seed 0 --levels id_train:1800 --b 4
    python benchmarks/stage1_variant.py --out runs/variant-d3-s0 --seed 0 --levels id_train:1800 --d 3
    python benchmarks/stage1_variant.py --out runs/variant-d3heur-s0 --seed 0 --levels id_train:1800 --d 3 --value heuristic
    python benchmarks/stage1_variant.py --out runs/variant-4x-s0 --seed 0 --levels id_train:1800 --max-steps 6980
    python benchmarks/stage1_variant.py --out runs/variant-mix6-2x-s0 --seed 0 --levels id_train:1000 mix_train@6x6/1 --max-steps 3490
    python benchmarks/stage1_variant.py --out runs/variant-wide192-2x-s0 --seed 0 --levels id_train:1800 --base runs/tiny-base-192 --max-steps 3490
    python benchmarks/stage1_variant.py --out runs/variant-lr4e3-s0 --seed 0 --levels id_train:1800 --learning-rate 4e-3
    python benchmarks/stage1_variant.py --out runs/variant-accum2-s0 --seed 0 --levels id_train:1800 --grad-accum 2 --max-steps 3490
    python scripts/make_sokoban_levels.py --extra-id 9000 --extra-out runs/extra/id_extra_9000.jsonl
    python benchmarks/stage1_variant.py --out runs/variant-levels9k-s0 --seed 0 --levels runs/extra/id_extra_9000.jsonl
    python scripts/make_sokoban_levels.py --extra-spread 1800 --extra-out runs/extra/rp_spread_4_8.jsonl
    python benchmarks/stage1_variant.py --out runs/variant-l2-spread-s0 --seed 0 --levels runs/extra/rp_spread_4_8.jsonl --max-steps 3490

The table of Stage 1 variants in ``benchmarks/stage1_variants.md`` (summed up in the
README's section "Generalisation") compares training data for the tiny model at the
preset's SFT budget. This script runs
one row with the package's commands, so a row is one command:

1. the training levels: each ``--levels`` spec is ``SPLIT[:N][@HxW/B]``, a level
   split of ``data/sokoban/`` or the path of a ``.jsonl`` level file (its first N
   levels; only boards of H x W with B boxes), written to ``OUT/levels.jsonl``; two or more specs are concatenated
   and shuffled with ``random.Random(0)`` (the same order for every seed);
2. ``python -m dynamind_lite resim`` with the tiny preset's V, b, d, refine fraction,
   exploration and rollout order (exact, 2, 1, 0.2, 0.1, search; ``--value``, ``--b``, ``--d``, ``--explore``
   and ``--rollout-order`` override theirs) -> ``OUT/train.jsonl``;
3. ``python -m dynamind_lite sft --preset tiny`` from the shipped tiny base (``--base``: another
   base, e.g. a wider one from ``scripts/build_tiny_base.py --hidden-size 192``)
   (its progress bar in ``OUT/sft.log``). The shipped base has 2 layers since row Y became the
   preset; rows A-X were measured from the 4-layer base shipped before it, which
   ``git archive 6b273f8 data/models/tiny-base | tar -x -C runs/base-l4`` restores for
   ``--base runs/base-l4/data/models/tiny-base`` (``build_tiny_base.py --layers 4`` today trains a
   similar 4-layer base, not the same bytes: the training code has changed since it was built);
   capped at ``--max-steps`` optimiser steps (default 1745, the previous preset's steps on
   its 1800 ``id_train`` levels at seed 0, so every variant gets the same SFT budget; a larger
   ``--max-steps`` trains longer, 3490 = 2.5 epochs, with the learning-rate schedule over all its steps;
   ``--learning-rate`` sets the peak learning rate; ``--grad-accum`` the sorted micro-batches of 2
   examples per step, 4 in the preset: ``--grad-accum 2 --max-steps 3490`` trains the preset's examples in
   twice its steps) -> ``OUT/sft/final``;
4. ``benchmarks/heldout_styles.py`` on that model -> ``OUT/heldout.json`` and the
   tables on stdout.

With ``--levels id_train:1800`` step 2 writes the same bytes as the pipeline's
notebook 03 at the same seed (checked at seed 0), and step 3 trains with the
preset's settings for its 1745 steps: the baseline of seed 0 is the pipeline's
distilled model (seeds 1 and 2 ran 1724 and 1760 steps there).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

SPEC = re.compile(r"^(?P<split>[\w./-]+)(:(?P<limit>\d+))?(@(?P<h>\d+)x(?P<w>\d+)/(?P<boxes>\d+))?$")


def board_shape(level: dict) -> tuple[list[int], int]:
    """``([height, width], boxes)`` of a level line."""
    return level["size"], level["num_boxes"]


def select_levels(spec: str) -> list[str]:
    """The JSONL lines of one ``SPLIT[:N][@HxW/B]`` spec, in file order (SPLIT: a shipped
    split's name, or the path of a ``.jsonl`` level file)."""
    from dynamind_lite.paths import level_file

    match = SPEC.match(spec)
    if not match:
        raise ValueError(f"--levels {spec!r}: expected SPLIT[:N][@HxW/B], e.g. id_train:1000 or mix_train@6x6/1")
    source = Path(match["split"]) if match["split"].endswith(".jsonl") else level_file(match["split"])
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line]
    if match["h"]:
        shape = ([int(match["h"]), int(match["w"])], int(match["boxes"]))
        lines = [line for line in lines if board_shape(json.loads(line)) == shape]
    return lines[: int(match["limit"])] if match["limit"] else lines


def run(command: list[str], log: Path) -> None:
    """Run one package command, its output (progress included) to ``log``; exit if it fails."""
    print("$", " ".join(command), flush=True)
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"{' '.join(command[1:4])} failed (exit {code}); see {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the levels, RESIM data, model and results")
    parser.add_argument("--levels", nargs="+", required=True, help="SPLIT[:N][@HxW/B] specs (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explore", type=float, default=None, help="resim --explore (default: the preset's)")
    parser.add_argument("--rollout-order", default=None, help="resim --rollout-order (default: the preset's)")
    parser.add_argument("--b", type=int, default=None, help="resim --b, rollouts per tree (default: the preset's)")
    parser.add_argument("--d", type=int, default=None, help="resim --d, depth of each rollout (default: the preset's)")
    parser.add_argument("--value", default=None, help="resim --value, the value function V (default: the preset's)")
    parser.add_argument("--max-steps", type=int, default=1745, help="SFT optimiser steps at most")
    parser.add_argument("--base", default=None, help="base model folder (default: the preset's, data/models/tiny-base)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="SFT peak learning rate (default: the preset's, 2e-3)")
    parser.add_argument("--grad-accum", type=int, default=None,
                        help="SFT micro-batches per optimiser step (default: the preset's, 4 of 2 examples)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [line for spec in args.levels for line in select_levels(spec)]
    if len(args.levels) > 1:
        random.Random(0).shuffle(lines)
    (out / "levels.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"{len(lines)} training levels -> {out / 'levels.jsonl'}", flush=True)

    from dynamind_lite.config import get_preset

    tiny = get_preset("tiny")
    explore = tiny.resim_explore if args.explore is None else args.explore
    order = tiny.resim_rollout_order if args.rollout_order is None else args.rollout_order
    b = tiny.b if args.b is None else args.b
    d = tiny.d if args.d is None else args.d
    value = tiny.value_fn if args.value is None else args.value
    python = sys.executable
    run([python, "-m", "dynamind_lite", "resim", "--levels", str(out / "levels.jsonl"), "--out",
         str(out / "train.jsonl"), "--seed", str(args.seed), "--b", str(b), "--d", str(d),
         "--value", value, "--explore", str(explore), "--refine", str(tiny.resim_refine),
         "--rollout-order", order, "--no-progress"],
        out / "resim.log")
    base = tiny.model_name_or_path if args.base is None else args.base
    learning_rate = tiny.sft_learning_rate if args.learning_rate is None else args.learning_rate
    grad_accum = tiny.sft_grad_accum if args.grad_accum is None else args.grad_accum
    run([python, "-m", "dynamind_lite", "sft", "--model", base, "--data", str(out / "train.jsonl"),
         "--out", str(out / "sft"), "--preset", "tiny", "--seed", str(args.seed),
         "--set", f"sft_max_steps={args.max_steps}", "--set", f"sft_learning_rate={learning_rate}",
         "--set", f"sft_grad_accum={grad_accum}"], out / "sft.log")
    heldout = Path(__file__).resolve().parent / "heldout_styles.py"
    return subprocess.call([python, str(heldout), "--models", str(out / "sft" / "final"),
                            "--out", str(out / "heldout.json")])


if __name__ == "__main__":
    sys.exit(main())

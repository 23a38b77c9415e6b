"""Remake the mini-ALFWorld level files of ``data/alfworld/`` (byte for byte).

    python scripts/make_mini_alfworld.py [--verify]

Writes ``id_train.jsonl`` (30 games per task type), ``id_test.jsonl`` and
``ood_test.jsonl`` (10 per task type), one game spec per line
(``envs.mini_alfworld.make_split``, seed 0). ``--verify`` also plays the
planner's solution of every game to a win (needs ``pip install -e ".[alfworld]"``;
about a second per game).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dynamind_lite.envs.mini_alfworld import make_split, tw_pddl  # noqa: E402
from dynamind_lite.io import write_text_atomic  # noqa: E402

GAMES_PER_TYPE = {"id_train": 30, "id_test": 10, "ood_test": 10, "ood_types_test": 10}
SEED = 0


def split_text(split: str) -> str:
    """The exact bytes of ``data/alfworld/<split>.jsonl``."""
    return "".join(json.dumps(game, sort_keys=True) + "\n" for game in make_split(split, GAMES_PER_TYPE[split], SEED))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="store_true", help="play every game's planner solution to a win")
    parser.add_argument("--out", default=str(ROOT / "data" / "alfworld"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in GAMES_PER_TYPE:
        text = split_text(split)
        write_text_atomic(out / f"{split}.jsonl", text)
        print(f"{split}: {text.count(chr(10))} games -> {out / f'{split}.jsonl'}")
        if args.verify:
            from dynamind_lite.envs.alfworld import AlfWorldEnv, play

            env = AlfWorldEnv(expert=True)
            for line in text.splitlines():
                game = tw_pddl(json.loads(line))
                _, info = env.reset(game)
                _, won, _ = play(env, game, info["expert_plan"])
                if not won:
                    print(f"error: {json.loads(line)['id']}: the planner's solution does not win", file=sys.stderr)
                    return 1
            print(f"{split}: every planner solution wins")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

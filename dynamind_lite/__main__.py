"""Command line: ``python -m dynamind_lite <command> [options]``.

Each command lives in the module that defines it and exposes ``main(argv)``;
this file only dispatches, so importing it stays cheap.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "resim": ("dynamind_lite.collect", "run the RESIM agent over a level file and write SFT data"),
    "evaluate": ("dynamind_lite.evaluate", "play a level file with a model and write metrics JSON"),
    "sft": ("dynamind_lite.training", "distil RESIM data into a policy with TRL's SFTTrainer (Stage 1)"),
    "rl": ("dynamind_lite.dyna_grpo", "GRPO or Dyna-GRPO from a distilled policy (Stage 2)"),
    "pipeline": ("dynamind_lite.pipeline", "run notebooks 01-07 over seeds with papermill (resumable; --dry-run)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: python -m dynamind_lite <command> [options]", "", "commands:"]
        lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("\n".join(lines), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())

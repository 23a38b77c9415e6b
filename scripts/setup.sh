#!/usr/bin/env bash
# Idempotent set-up of dynamind-lite in the current Python environment.
#   bash scripts/setup.sh         # the package and its runtime stack
#   bash scripts/setup.sh --dev   # plus the test tools and the alfworld extra the tests play
# torch is installed only when none is importable, pinned to 2.13.0 (on the
# project's CPU machines a local CPU wheel; any other version pulls GBs of CUDA
# packages). An existing torch (Colab, a CUDA workstation) is left untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev,alfworld]"; fi

if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "setup: no torch found, installing torch==2.13.0"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".${extras}"
"$PYTHON" - <<'PY'
import torch, transformers, trl, peft, dynamind_lite
print(f"setup: dynamind_lite {dynamind_lite.__version__} | torch {torch.__version__} | "
      f"transformers {transformers.__version__} | trl {trl.__version__} | peft {peft.__version__}")
PY

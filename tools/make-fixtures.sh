#!/usr/bin/env bash
# Regenerates tests/fixtures/*.json from the PyTorch reference scripts (Debian: apt-get install python3-torch).
set -euo pipefail
cd "$(dirname "$0")/fixtures"
for f in *.py; do
  [ "$f" = common.py ] && continue
  /usr/bin/python3 "$f"
done

#!/usr/bin/env bash
# Regenerates tests/fixtures/ from the reference scripts. The kernel references need only torch (Debian:
# apt-get install python3-torch); the rest need the project's virtual environment (transformers, peft, trl,
# datasets: python3 -m venv .venv && .venv/bin/pip install torch transformers peft trl; WEBTUNE_VENV_PYTHON
# to use another interpreter), and some of them run node (tsx) to write the files webtune reads.
set -euo pipefail
cd "$(dirname "$0")/fixtures"
venv="${WEBTUNE_VENV_PYTHON:-../../.venv/bin/python}"
# Scripts that need the virtual environment; peft_interop.py is a check, not a fixture.
VENV=(tokenizer.py models.py trl_sft.py sft_data.py parquet.py collator.py)
for f in *.py; do
  case " common.py peft_interop.py ${VENV[*]} " in *" $f "*) continue ;; esac
  /usr/bin/python3 "$f"
done
for f in "${VENV[@]}"; do "$venv" "$f"; done

#!/usr/bin/env bash
# Regenerates tests/fixtures/*.json from the PyTorch reference scripts (Debian: apt-get install python3-torch).
set -euo pipefail
cd "$(dirname "$0")/fixtures"
for f in *.py; do
  [ "$f" = common.py ] || [ "$f" = models.py ] && continue
  [ "$f" = tokenizer.py ] && continue
  [ "$f" = trl_sft.py ] && continue
  /usr/bin/python3 "$f"
done
# tokenizer.py needs transformers, tokenizers and jinja2 (not Debian's torch): the project's virtual
# environment (WEBTUNE_VENV_PYTHON to use another interpreter). It also runs node to write the fixture files.
"${WEBTUNE_VENV_PYTHON:-../../.venv/bin/python}" tokenizer.py
# Whole-model references need transformers + peft (the project's .venv) and node_modules (tsx).
"${WEBTUNE_VENV_PYTHON:-../../.venv/bin/python}" models.py
# TRL's own SFTTrainer, 5 LoRA steps on the tiny llama (transformers + peft + trl + datasets, and tsx).
"${WEBTUNE_VENV_PYTHON:-../../.venv/bin/python}" trl_sft.py

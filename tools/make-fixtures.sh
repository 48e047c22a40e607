#!/usr/bin/env bash
# Regenerates tests/fixtures/ from the reference scripts. The kernel references need only torch (Debian:
# apt-get install python3-torch); the rest need the project's virtual environment (transformers, peft, trl,
# datasets: python3 -m venv .venv && .venv/bin/pip install torch transformers peft trl; WEBTUNE_VENV_PYTHON
# to use another interpreter), and some of them run node (tsx) to write the files webtune reads.
set -euo pipefail
cd "$(dirname "$0")/fixtures"
venv="${WEBTUNE_VENV_PYTHON:-../../.venv/bin/python}"
# Scripts that need the virtual environment (transformers, peft, trl, gguf). peft_interop.py records that
# Python PEFT loads webtune's adapters (tests/fixtures/peft_interop.json).
VENV=(tokenizer.py models.py trl_sft.py sft_data.py parquet.py collator.py peft_interop.py trl_templates.py
  cross_entropy_softcap.py swiglu_geglu.py rope_phi3.py quant.py lora_gguf.py gguf_models.py quantized.py
  trl_config.py tensorboard_events.py hub_datasets.py)
for f in *.py; do
  case " common.py ${VENV[*]} " in *" $f "*) continue ;; esac
  /usr/bin/python3 "$f"
done
for f in "${VENV[@]}"; do "$venv" "$f"; done

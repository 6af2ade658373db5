#!/usr/bin/env bash
# CNVSRC fixed track (CNVSRC-Multi dev/eval), the paper's main setting. Corpus roots: db.sh.
# Training-set composition (S1/S2/S3) and other data options: local/data.sh --help.
# Run: ./run.sh [--stage N --stop-stage M] [--llm_model /path/to/Qwen3-4B-Instruct-2507] [...]; see ./vsr.sh --help
set -euo pipefail

./vsr.sh \
  --train_set train --valid_set dev --test_sets "dev test" \
  --vsr_config conf/train_vsr_dual.yaml --char_config conf/train_vsr_char.yaml \
  --decode_config conf/decode_vsr.yaml \
  --llm_model "${LLM_MODEL:-downloads/Qwen3-4B-Instruct-2507}" --llm_sft_config conf/llm_sft.yaml \
  --paper_results conf/paper_results.yaml \
  --local_data_opts "--train_set_composition S3" \
  "$@"

#!/usr/bin/env bash
# The embedded default: a synthetic lip-reading corpus rendered from real Mandarin sentences and a tiny
# locally built LLM, running every stage of the real recipe on a CPU (`make demo` runs it).
# See README.md here for what is synthetic. Options: ./vsr.sh --help; corpus size: local/data.sh --help.
set -euo pipefail
. ./db.sh

nproc=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)  # every core: jobs of stages 1, 5, 6 and 9 (results do not depend on it)
./vsr.sh \
  --nj "${nproc}" --roi_size 32 --roi_opts "--mouth-width-frac 0.7" --train_in_parallel true --frame_targets pose.scp --frame_labels visemes.scp \
  --train_set train --valid_set dev --test_sets "dev test" \
  --vsr_config conf/train_vsr_dual.yaml --char_config conf/train_vsr_char.yaml \
  --use_lm true --lm_train_text "${MINI_CNVSRC}/lm_text.txt" \
  --decode_config conf/decode_vsr.yaml --nbest_inference_args "--beam_size 5 --nbest 5" \
  --llm_model "${TINY_LLM}" --llm_sft_config conf/llm_sft.yaml \
  --llm_refine_opts "--mode rescore --rescore-vsr-weight 1" --llm_tune_fusion true --llm_refine_nj "${nproc}" --nbest_train_subset 1200 \
  "$@"

# Corpus roots of egs/mini_cnvsrc/vsr1. The corpus is rendered here by local/data.sh (nothing is downloaded);
# the tiny LLM is built here from lm_text.txt (local/data.sh says what it holds). Both can be overridden from
# the environment.
MINI_CNVSRC=${MINI_CNVSRC:-downloads/mini_cnvsrc}
TINY_LLM=${TINY_LLM:-downloads/tiny_qwen3}

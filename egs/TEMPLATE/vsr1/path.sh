# Sourced by run.sh / vsr.sh: the toolkit's environment (tools/venv, utils/, offline hubs, C collation).
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [ ! -f "$MAIN_ROOT/tools/venv/.installed" ]; then
  echo "path.sh: $MAIN_ROOT/tools/venv is not installed: run 'make install' in $MAIN_ROOT first" >&2
  return 1 2>/dev/null || exit 1
fi
export PATH=$MAIN_ROOT/tools/venv/bin:$PWD/utils:$PATH
# Kaldi data dirs are sorted in C (byte) order; C.UTF-8 sorts by code point, which is the same order, and keeps
# Python's and sort's handling of Hanzi UTF-8.
export LC_ALL=C.UTF-8
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
# Models and corpora come from local paths only (no hub downloads at run time).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# One thread per job: parallelism comes from nj jobs (run.pl / slurm.pl), not from intra-op threads.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

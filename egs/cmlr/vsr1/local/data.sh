#!/usr/bin/env bash
# Stage 0 of egs/cmlr/vsr1: CMLR -> data/{train,dev,test} (Kaldi data dirs) following the official
# train.csv / val.csv / test.csv lists. Corpus root from ./db.sh; layout in vallr_pin/corpora/cmlr.py.
# Re-running rewrites the dirs (atomic writes), never appends.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

cmlr_lists_dir=           # folder with train.csv/val.csv/test.csv (default: the corpus root ${CMLR})
allow_missing=false       # true: skip utterances with a missing video/transcript instead of failing
data_dir=data
python=python3

log "$0 $*"
. ./db.sh
[ -f ./path.sh ] && . ./path.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: no positional arguments are required."
    exit 2
fi

for root in CMLR; do  # the first thing a user without the corpus should read
    [ -d "${!root}" ] || { log "Error: corpus root ${root}=${!root} not found: set ${root} in db.sh or the environment"; exit 1; }
done

args=(--corpus cmlr --data-dir "${data_dir}" --cmlr-root "${CMLR}")
[ -n "${cmlr_lists_dir}" ] && args+=(--cmlr-lists-dir "${cmlr_lists_dir}")
[ "${allow_missing}" = true ] && args+=(--allow-missing)

log "Preparing ${data_dir}/{train,dev,test} from ${CMLR}"
${python} -m vallr_pin.bin.prepare_corpus "${args[@]}"

for x in train dev test; do
    utils/fix_data_dir.sh "${data_dir}/${x}"
    utils/validate_data_dir.sh "${data_dir}/${x}"
done
log "Successfully finished. [elapsed=${SECONDS}s]"

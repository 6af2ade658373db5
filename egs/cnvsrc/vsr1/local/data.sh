#!/usr/bin/env bash
# Stage 0 of egs/cnvsrc/vsr1: CNVSRC fixed-track data -> data/{train,dev,test} (Kaldi data dirs).
# Corpus roots come from ./db.sh; layouts and the S1/S2/S3 compositions are documented in
# vallr_pin/corpora/cnvsrc.py. Re-running rewrites the dirs (atomic writes), never appends.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

train_set_composition=S3  # S1 = CN-CVS + CNVSRC.Dev; S2 = S1 + CN-CVS2-P1; S3 = S2 + CN-CVS3
dev_set=multi_dev         # part for data/dev (none to skip)
test_set=multi_eval       # part for data/test (none to skip)
dev_list=auto             # held-out utterances of dev_set (removed from training; a file, or none). auto: for
                          #   multi_dev conf/cnvsrc-multi_valid.list, the CNVSRC 2023/2024 baselines' valid.csv
                          #   (5,097 of Multi.Dev's 20,450, the set of their dev CER); none for other dev sets
test_list=                # utterances of test_set to score (default: all of them; one without a video is an error)
label_csvs=               # space-separated PART=FILE baseline list files used instead of scanning folders
char_units=               # baseline datamodule/char_units.txt, to decode token-id labels of label_csvs
allow_missing=false       # true: skip train/dev utterances with a missing video/transcript instead of failing
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

for root in CNVSRC CNCVS; do  # the first thing a user without the corpus should read
    [ -d "${!root}" ] || { log "Error: corpus root ${root}=${!root} not found: set ${root} in db.sh or the environment"; exit 1; }
done

args=(--corpus cnvsrc --data-dir "${data_dir}" --train-set-composition "${train_set_composition}"
      --dev-set "${dev_set}" --test-set "${test_set}"
      --cncvs-root "${CNCVS}" --cncvs2-p1-root "${CNCVS2_P1}" --cncvs3-root "${CNCVS3}" --cnvsrc-root "${CNVSRC}")
if [ "${dev_list}" = auto ]; then
    dev_list=none; [ "${dev_set}" = multi_dev ] && dev_list=conf/cnvsrc-multi_valid.list
fi
[ "${dev_list}" != none ] && [ -n "${dev_list}" ] && args+=(--dev-list "${dev_list}")
[ -n "${test_list}" ] && args+=(--test-list "${test_list}")
[ -n "${char_units}" ] && args+=(--char-units "${char_units}")
for x in ${label_csvs}; do args+=(--label-csv "${x}"); done
[ "${allow_missing}" = true ] && args+=(--allow-missing)

log "Preparing ${data_dir}/{train,dev,test} (training set ${train_set_composition})"
${python} -m vallr_pin.bin.prepare_corpus "${args[@]}"

sets=train
[ "${dev_set}" != none ] && sets+=" dev"
[ "${test_set}" != none ] && sets+=" test"
for x in ${sets}; do
    utils/fix_data_dir.sh "${data_dir}/${x}"
    utils/validate_data_dir.sh "${data_dir}/${x}"
done
log "Successfully finished. [elapsed=${SECONDS}s]"

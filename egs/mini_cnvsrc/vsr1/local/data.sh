#!/usr/bin/env bash
# Stage 0 of egs/mini_cnvsrc/vsr1: render the synthetic corpus (real Mandarin sentences from the PyPI package
# hsk-sentences-audio, CC-BY-SA-4.0, drawn as lip video by vallr_pin/synth) into a CNVSRC-like raw layout
# under ${MINI_CNVSRC}, then write data/{train,dev,test}; then build the tiny LLM ${TINY_LLM} (it stands in
# for the Qwen3-4B a real recipe loads from disk) from the sentences of the package (all HSK levels) that the
# corpus never speaks, nor near copies of them (${MINI_CNVSRC}/lm_text.txt): like a real LLM, it knows Mandarin
# the VSR model never saw, and neither the evaluation sentences nor, by default, the training transcripts. An
# LLM that has memorised the training sentences learns from their N-best (stages 6-8) to recall a known sentence
# instead of correcting errors, and that fails on unseen test sentences (RESULTS.md); llm_train_text=true
# pre-trains on the training transcripts as well.
# Train/dev/test are disjoint in sentences and speakers (test speakers unseen, as in CNVSRC-Multi).
# Re-running skips videos already rendered and an LLM already built.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (data.sh:${BASH_LINENO[0]}) $*" >&2; }

num_train_speakers=48
num_dev_speakers=6
num_test_speakers=6
utts_per_speaker=25
num_train_utts=4800       # total training utterances (empty: num_train_speakers x utts_per_speaker)
generated_train_sentences=2200  # extra training sentences recombined from the training sentences' words
                          #   (render_corpus --help); dev/test stay real, unseen sentences
extra_train_sentences=1400  # real training sentences drawn from the HSK levels above hsk_max_level (dev/test
                          #   unchanged); they leave lm_text.txt, so the tiny LLM keeps the other ~1,400
                          #   (RESULTS.md: 0 / 1,400 / all 2,803 measured)
max_chars=16              # longest sentence rendered (characters)
hsk_max_level=3           # sentences of HSK 3.0 levels 1-3 (1,545 sentences, ~900 characters)
size=160                  # rendered frame side (pixels)
seed=2026
# every core (nproc obeys OMP_NUM_THREADS, which path.sh sets to 1 for the jobs: ask without it)
render_nj=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)  # videos do not depend on it
use_landmarks=true        # false: no landmarks.scp, stage 1 runs mediapipe FaceMesh on the drawn faces
llm_opts=                 # extra options for vallr_pin.bin.make_tiny_llm
llm_train_text=false      # true: the tiny LLM also pre-trains on the training transcripts (see above)
context=false             # true: write data/<set>/context, each utterance's preceding sentence of the same speaker
                          #   (python -m vallr_pin.bin.make_context), for the context-aware prompts of vsr.sh
                          #   --llm_context true
data_dir=data
log_dir=exp               # the tiny LLM's build log (it runs in the background while the videos render)
python=python3

. ./db.sh
[ -f ./path.sh ] && . ./path.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { log "Error: no positional arguments are required."; exit 2; }

render_args=(--out "${MINI_CNVSRC}" --sentences-from hsk
  --num-train-speakers "${num_train_speakers}" --num-dev-speakers "${num_dev_speakers}"
  --num-test-speakers "${num_test_speakers}" --utts-per-speaker "${utts_per_speaker}"
  --max-chars "${max_chars}" --hsk-max-level "${hsk_max_level}" --size "${size}" --seed "${seed}"
  --generated-train-sentences "${generated_train_sentences}" --extra-train-sentences "${extra_train_sentences}")
[ -n "${num_train_utts}" ] && render_args+=(--num-train-utts "${num_train_utts}")
[ "${llm_train_text}" = true ] && render_args+=(--lm-text-with-train)

# The LLM is rebuilt whenever its text or its options change: one built from another split could have seen
# today's dev/test sentences.
llm_text=("${MINI_CNVSRC}/lm_text.txt")
[ "${llm_train_text}" = true ] && llm_text+=("${data_dir}/train/text")
llm_log=${log_dir}/make_tiny_llm.log
llm_pid=
llm_key=
start_llm() {  # build ${TINY_LLM} from ${llm_text[@]} in the background (unless up to date); finish_llm waits
  llm_key=$({ cat "${llm_text[@]}"; echo "${llm_opts}"; } | sha1sum | cut -d' ' -f1)
  if [ -f "${TINY_LLM}/config.json" ] && [ "$(cat "${TINY_LLM}/built_from.sha1" 2>/dev/null)" = "${llm_key}" ]; then
    log "Tiny LLM ${TINY_LLM} is up to date with ${llm_text[*]}; skipping"
    return 0
  fi
  log "Building the tiny LLM ${TINY_LLM} from ${llm_text[*]} (never dev/test); log: ${llm_log}"
  mkdir -p "${log_dir}"
  # shellcheck disable=SC2086
  ${python} -m vallr_pin.bin.make_tiny_llm --text "${llm_text[@]}" --out "${TINY_LLM}" ${llm_opts} \
    > "${llm_log}" 2>&1 &
  llm_pid=$!
}
finish_llm() {
  [ -n "${llm_pid}" ] || return 0
  local pid=${llm_pid}
  llm_pid=
  if ! wait "${pid}"; then
    tail -n 20 "${llm_log}" >&2
    log "Error: building the tiny LLM failed; see ${llm_log}"
    exit 1
  fi
  echo "${llm_key}" > "${TINY_LLM}/built_from.sha1"
  log "Tiny LLM ${TINY_LLM} built ($(grep -o 'tiny Qwen3: .*' "${llm_log}" | head -1))"
}
trap '[ -z "${llm_pid}" ] || kill "${llm_pid}" 2>/dev/null || true' EXIT  # no orphan build after an error

if [ "${llm_train_text}" = false ]; then
  # The tiny LLM needs the corpus plan's text only, not the videos: write lm_text.txt first and pre-train the
  # LLM (one thread) while the videos render (stage 0: 168 -> 150 s on 2 cores, RESULTS.md).
  ${python} -m vallr_pin.bin.render_corpus "${render_args[@]}" --lm-text-only
  start_llm
fi

log "Rendering the synthetic corpus into ${MINI_CNVSRC}"
${python} -m vallr_pin.bin.render_corpus "${render_args[@]}" --lm-text --nj "${render_nj}" --no-progress

args=(--corpus mini_cnvsrc --mini-root "${MINI_CNVSRC}" --data-dir "${data_dir}")
[ "${use_landmarks}" = true ] || args+=(--no-landmarks)
${python} -m vallr_pin.bin.prepare_corpus "${args[@]}"
for x in train dev test; do
  utils/fix_data_dir.sh "${data_dir}/${x}"
  utils/validate_data_dir.sh "${data_dir}/${x}"
done
if [ "${context}" = true ]; then
  ${python} -m vallr_pin.bin.make_context --data-dir "${data_dir}/train" "${data_dir}/dev" "${data_dir}/test"
fi

# with llm_train_text=true the LLM's text includes data/train/text, written just above
[ "${llm_train_text}" = true ] && start_llm
finish_llm
log "Successfully finished. [elapsed=${SECONDS}s]"

#!/usr/bin/env bash
# vsr.sh: the VALLR-Pin recipe stages, shared by every egs/<corpus>/vsr1 (like ESPnet's asr.sh).
# A recipe's run.sh sets its options and calls ./vsr.sh (a symlink to egs/TEMPLATE/vsr1/vsr.sh).
#
# Usage: ./run.sh [--stage N] [--stop-stage M] [--nj 4] [--ngpu 0] [--gpu_inference false] [--option value ...]
#   stage 0  local/data.sh: corpus -> data/{train,dev,test}
#   stage 1  lip ROI extraction -> dump/roi/<set>/feats.scp (nj jobs)
#   stage 2  text normalisation, toneless pinyin, token lists (use_lm: the character LM's text)
#   stage 3  ESPnet collect-stats (shape files)
#   stage 4  train the dual-decoder model (and the char-only baseline; use_lm: the character LM)
#   stage 5  decode dev/test (char N-best + pinyin; use_lm: LM shallow fusion), score CER, error analysis
#   stage 6  N-best dumping on the training set (and dev) from early/mid/late checkpoints
#   stage 7  LLM instruction data from those N-best lists
#   stage 8  ms-swift LoRA SFT of the LLM
#   stage 9  LLM refinement of dev/test (fine-tuned and zero-shot), scoring, RESULTS.md
#            (beyond the paper, all options: llm_refine_opts "--mode constrained" / "--polish-rounds K",
#            llm_gate, llm_context; external_nbest refines another recogniser's N-best in stages 7-9;
#            llm_noise_text adds synthetic N-best lists to stage 7; llm_grpo adds GRPO after the SFT of stage 8)
# Every stage can be re-run alone (--stage N --stop-stage N) and redoes only that stage; stages 1, 5 and 6
# skip jobs that already finished, so a re-run after a crash continues.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (vsr.sh:${BASH_LINENO[0]}) $*" >&2; }
min() { local a=$1 b=$2; [ "$a" -lt "$b" ] && echo "$a" || echo "$b"; }
bg_pids=()
run_bg() {  # run_bg <max at once> <command...>: run it in the background; at <max> running, wait for them all
  "${@:2}" &
  bg_pids+=($!)
  [ "${#bg_pids[@]}" -lt "$1" ] || wait_bg
}
wait_bg() {  # wait for every run_bg command; exit if one failed (each names its own log)
  local pid failed=0
  for pid in "${bg_pids[@]}"; do wait "${pid}" || failed=1; done
  bg_pids=()
  [ "${failed}" -eq 0 ] || { log "Error: a parallel step failed (its log is named above)"; exit 1; }
}

# General
stage=0
stop_stage=9
nj=4                     # parallel jobs for stages 1, 5, 6 (local: processes; slurm: array tasks)
ngpu=0                   # GPUs for training (ESPnet DDP when > 1)
python=python3
dumpdir=dump
expdir=exp

# Data
train_set=train
valid_set=dev
test_sets="dev test"
local_data_opts=         # passed to local/data.sh

# Stage 1: lip ROI
roi_size=96
detector=mediapipe       # landmark detector when data/<set>/landmarks.scp is absent (or use_landmarks=false)
use_landmarks=auto       # auto: use data/<set>/landmarks.scp when present; true: require it; false: detect
detect_every=3           # the detector runs on every 3rd frame, landmarks interpolated between: 381 vs 177 frames
                         #   per CPU-second on 640x480 video, the crop within 0.10 px (max 0.32) of the crop from
                         #   every frame (test/bench/bench_lip_roi.py); 1: every frame
roi_opts=                # extra options for vallr_pin.bin.lip_roi

# Stage 2: text
token_list_dir=data/token_list
pinyin_extra_syllables=gb2312   # add unseen GB2312 syllables to the pinyin list so dev/test pinyin is never <unk>
traditional_to_simplified=true # OpenCC t2s in the normaliser (銀行 -> 银行); false keeps traditional tokens

# Stages 3-4: VSR model
vsr_tag=dual
vsr_config=conf/train_vsr_dual.yaml
char_tag=char            # the char-only baseline (a = 1); empty to skip it
char_config=conf/train_vsr_char.yaml
train_args=              # extra options for vallr_pin.bin.vsr_train
train_in_parallel=false  # true: train the dual model and the char-only baseline at the same time (CPU cores)
train_launcher=espnet    # espnet: one process (ESPnet spawns one per GPU itself when ngpu > 1);
                         # torchrun: `python -m torch.distributed.run` starts train_nproc processes on this node, ESPnet
                         #   trains in DDP with one GPU per process (ngpu > 0, nccl) or on CPU (ngpu 0, gloo)
train_nproc=             # torchrun: processes on this node (default: ngpu, or 2 on CPU)
train_launcher_opts=     # torchrun: more of its options, e.g. multi-node
                         #   "--nnodes 2 --rdzv_backend c10d --rdzv_endpoint host1:29500 --rdzv_id exp1"
frame_targets=           # e.g. pose.scp: per-frame targets data/<set>/<file> (float32 (T, D) .npy) fed to training as
                         #   'frame_targets', for model_conf.frame_target_weight > 0 (the mini recipe's renderer
                         #   poses; off in the paper's recipes)
frame_labels=            # e.g. visemes.scp: per-frame class labels data/<set>/<file> (int64 (T,) .npy) fed to training
                         #   as 'frame_labels', for model_conf.frame_label_weight > 0 (the mini recipe's renderer
                         #   alignment; off in the paper's recipes)
frame_align=             # e.g. align.scp: per-frame character index data/<set>/<file> (int64 (T,) .npy, -1 = none) fed
                         #   to training as 'frame_align', for the splice augmentation (train config splice_prob > 0;
                         #   the mini recipe's renderer timing, or any forced alignment of a real corpus)

# Character LM (ESPnet's lm_train, as asr.sh --use_lm): text in stage 2, collect-stats in stage 3, training in
# stage 4, shallow fusion in the character beam search of stages 5-6 with decode_config's lm_weight
use_lm=false
lm_tag=char
lm_config=conf/train_lm.yaml
lm_args=                 # extra options for ESPnet's lm_train (vallr_pin.bin.lm_train), e.g. "--max_epoch 1"
lm_train_text=           # extra plain text files for the LM (cut into clauses; dev/test sentences and near copies are
                         #   dropped), besides the training transcripts
lm_inference_model=valid.loss.best.pth  # the LM checkpoint stages 5-6 decode with (file under exp/lm_<tag>)

# Stages 5-6: decoding
decode_config=conf/decode_vsr.yaml
inference_model=valid.acc_char.ave.pth  # checkpoint decoded in stage 5 (file under exp/vsr_<tag>)
nbest_ckpts=             # stage 6: kept checkpoints to decode, e.g. "2epoch 10epoch 20epoch"
                         #   (default: all of exp/vsr_<tag>/ckpt_keep/, i.e. keep_epochs of the train config)
nbest_sets="train dev"   # stage 6: sets decoded with them (dev: LLM validation data)
nbest_train_subset=      # stage 6: decode only this many training utterances (a count, or a fraction like 0.2),
                         #   speaker-stratified and deterministic (python -m vallr_pin.bin.subset_data_dir);
                         #   empty: all of them. Stage 7 builds the LLM data from the same subset.
gpu_inference=false      # stages 5, 6 and 9 on GPUs (as ESPnet's asr.sh): jobs go through cuda_cmd --gpu 1 and decode
                         #   with --device cuda; false: decode_cmd --gpu 0, --device cpu. true without a CUDA device
                         #   visible to a cuda_cmd job is an error before any job starts
inference_ngpu=1         # gpu_inference=true: decode jobs of stages 5 and 6 (one GPU each; nj counts CPU jobs)
inference_args=          # extra options for vallr_pin.bin.vsr_inference (stages 5 and 6)
nbest_inference_args=    # extra options for stage 6 only, e.g. "--beam_size 5 --nbest 5" when the prompt shows 5

# Stages 7-9: LLM
llm_model=               # local model directory (Qwen3-4B-Instruct-2507 for the paper's recipes)
llm_tag=lora
llm_data_opts=
llm_sft_config=conf/llm_sft.yaml
llm_sft_args=            # extra `swift sft` flags (override the config), e.g. "--max_steps 100"
llm_noise_text=          # stage 7: text file(s) to make synthetic N-best lists from, with the errors measured on the
                         #   training N-best (error-noise augmentation, vallr_pin/llm/noise.py); e.g. the mini recipe's
                         #   downloads/mini_cnvsrc/lm_text.txt; their sentences must not be dev/test ones (the dev and
                         #   test sets' data/<set>/text are excluded, near copies too); empty: off
llm_noise_ratio=1.0      # stage 7: synthetic samples per real one (choose on dev)
llm_grpo=false           # true: stage 8 goes on after the SFT with GRPO (ms-swift `swift rlhf --rlhf_type grpo`, reward
                         #   CER(1-best) - CER(answer) + a one-line-of-Hanzi format term) -> ${llm_exp}/grpo/adapter,
                         #   and stage 9 also refines with that adapter (the "fine-tuned LLM + GRPO" row)
llm_grpo_config=conf/llm_grpo.yaml
llm_grpo_args=           # extra `swift rlhf` flags (override the config), e.g. "--max_steps 20"
llm_refine_opts=
llm_backend=auto         # stage 9's ms-swift engine: auto (vllm when it is importable and the job sees CUDA, else
                         #   transformers; rescore mode always transformers), transformers or vllm
llm_refine_nj=1          # stage 9: LLM refinements run at once (each process loads the LLM; mind GPU memory)
llm_tune_fusion=false    # true (needs llm_refine_opts "--mode rescore"): tune the LLM/VSR fusion weights on
                         #   valid_set (vallr_pin.bin.tune_fusion), apply them to every test set
paper_results=           # conf/paper_results.yaml: the paper's figures shown beside ours in RESULTS.md
llm_context=false        # true: stages 7 and 9 show data/<set>/context ('<utt> <text>', e.g. the speaker's preceding
                         #   sentence: python -m vallr_pin.bin.make_context) in the prompt; optional: as true, but
                         #   utterances missing from it get no context instead of an error
llm_gate=false           # true: stage 9 chooses a confidence gate on valid_set (vallr_pin.bin.tune_gate: no LLM call
                         #   where Stage I is sure), applies it to every set, draws figures/gate_curve_<mode>.png
external_nbest=          # stage II for another recogniser: a directory with <set>/ per set holding its N-best
                         #   (ESPnet's {k}best_recog/text, or nbest.jsonl); stages 7 and 9 read it (imported into
                         #   exp/nbest_external/<set> by vallr_pin.bin.import_nbest) instead of this recipe's decodes

help_message=$(sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d')
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { log "Error: unexpected arguments: $*"; exit 2; }
case "${nj}" in ''|*[!0-9]*|0) log "Error: --nj ${nj}: the number of parallel jobs must be a whole number >= 1"; exit 2 ;; esac
case "${llm_context}" in false|true|optional) ;; *) log "Error: --llm_context ${llm_context}: false, true or optional"; exit 2 ;; esac

vsr_exp=${expdir}/vsr_${vsr_tag}
char_exp=${expdir}/vsr_${char_tag}
stats_dir=${expdir}/vsr_stats
lm_exp=${expdir}/lm_${lm_tag}
lm_stats_dir=${expdir}/lm_stats
lm_dump=${dumpdir}/lm
llm_exp=${expdir}/llm_${llm_tag}
decode_tag=$(basename "${decode_config}" .yaml); decode_tag=${decode_tag#decode_}  # decode_<conf>_<ckpt>
all_sets=$(echo "${train_set} ${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
nbest_train=${train_set}${nbest_train_subset:+_sub${nbest_train_subset}}  # the training set stages 6-7 use
mkdir -p "${expdir}"
timing=${expdir}/stage_times.txt

# Where inference runs (stages 5, 6 and 9), as asr.sh decides it from gpu_inference.
if [ "${gpu_inference}" = true ]; then
  infer_cmd=${cuda_cmd}; infer_ngpu=1; infer_nj=${inference_ngpu}; infer_device=cuda
else
  infer_cmd=${decode_cmd}; infer_ngpu=0; infer_nj=${nj}; infer_device=cpu
fi
if [ "${gpu_inference}" = true ] && { { [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 5 ]; } ||
                                      { [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; }; }; then
  # one probe job through the same launcher, so a CPU-only node or partition fails now, not after stage 4
  mkdir -p "${expdir}/decode_logs"
  ${infer_cmd} --gpu 1 "${expdir}/decode_logs/check_cuda.log" \
    ${python} -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { log "Error: --gpu_inference true, but a job of '${infer_cmd} --gpu 1' sees no CUDA device (torch.cuda.is_available() is False; ${expdir}/decode_logs/check_cuda.log): run on a GPU machine or partition, or use --gpu_inference false"; exit 1; }
fi

run_stage() {  # run_stage N title: true when N is selected; logs and times it
  [ "$1" -ge "${stage}" ] && [ "$1" -le "${stop_stage}" ] || return 1
  log "Stage $1: $2"
  stage_start=$SECONDS
}
# Input checks: the first lines of every stage say what it reads, so that a stage run alone without its
# inputs stops with one line naming the missing file and the stage that writes it.
need() {  # need <stage that writes them> <file>...
  local s=$1 f; shift
  for f in "$@"; do
    [ -e "${f}" ] || { log "Error: ${f} is missing: run stage ${s} first (./run.sh --stage ${s})"; exit 1; }
  done
}
need_ckpts() {  # stages 6 and 7 read the checkpoints stage 4 kept
  [ -n "$(kept_ckpts)" ] || { log "Error: no checkpoints in ${vsr_exp}/ckpt_keep (keep_epochs in ${vsr_config}): run stage 4 first (./run.sh --stage 4)"; exit 1; }
}
frame_files_in() {  # frame_files_in <dir>: those of the per-frame files (--frame_targets/labels/align) in <dir>
  local f out=""
  for f in ${frame_targets} ${frame_labels} ${frame_align}; do
    if [ -f "$1/${f}" ]; then out+=" ${f}"; fi
  done
  echo "${out# }"
}
end_stage() {  # record "stage N seconds" (latest run wins) for RESULTS.md
  local n=$1 t=$((SECONDS - stage_start))
  { [ -f "${timing}" ] && grep -v "^stage $n " "${timing}"; echo "stage $n $t"; } | sort -n -k2 > "${timing}.tmp" || true
  mv "${timing}.tmp" "${timing}"
  log "Stage $n done in ${t}s"
}

if run_stage 0 "data preparation (local/data.sh)"; then
  # shellcheck disable=SC2086
  local/data.sh ${local_data_opts}
  end_stage 0
fi

if run_stage 1 "lip ROI extraction -> ${dumpdir}/roi"; then
  for dset in ${all_sets}; do need 0 "data/${dset}/video.scp" "data/${dset}/text" "data/${dset}/utt2spk"; done
  for dset in ${all_sets}; do
    src=data/${dset}; dir=${dumpdir}/roi/${dset}
    mkdir -p "${dir}/log"
    _nj=$(min "${nj}" "$(wc -l < "${src}/video.scp")")
    split_scps=""
    for n in $(seq "${_nj}"); do split_scps+=" ${dir}/split${_nj}/${n}/video.scp"; done
    # shellcheck disable=SC2086
    utils/split_scp.pl "${src}/video.scp" ${split_scps}
    lm_opts="--detector ${detector} --detect-every ${detect_every}"
    if [ "${use_landmarks}" = true ] || { [ "${use_landmarks}" = auto ] && [ -f "${src}/landmarks.scp" ]; }; then
      lm_opts="--landmarks-scp ${src}/landmarks.scp"
    fi
    log "  ${dset}: ${_nj} jobs, ${lm_opts}"
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${_nj}" "${dir}/log/lip_roi.JOB.log" \
      ${python} -m vallr_pin.bin.lip_roi --video-scp "${dir}/split${_nj}/JOB/video.scp" --text "${src}/text" \
        ${lm_opts} --roi-size "${roi_size}" --out-dir "${dir}" --job-id JOB ${roi_opts}
    ${python} -m vallr_pin.bin.lip_roi --merge --out-dir "${dir}" --nj "${_nj}"
    # The dump dir is the data dir training reads: utterances that failed ROI extraction drop out here,
    # data/<set> keeps everything so stage 1 can be re-run from it. The per-frame training files go with
    # them: ESPnet's collect-stats reads every file of a set line by line together and stops on a key that
    # one file has and the others not (an utterance that failed here).
    for f in $(frame_files_in "${src}"); do cp "${src}/${f}" "${dir}/"; done
    cp "${src}/text" "${src}/utt2spk" "${dir}/"
    utils/fix_data_dir.sh --utt-extra-files "$(frame_files_in "${dir}")" "${dir}"
    [ -s "${dir}/failed" ] && log "  ${dset}: $(wc -l < "${dir}/failed") utterance(s) failed, see ${dir}/failed"
  done
  end_stage 1
fi

if run_stage 2 "text normalisation, toneless pinyin, token lists"; then
  for dset in ${all_sets}; do need 0 "data/${dset}/text"; need 1 "${dumpdir}/roi/${dset}/feats.scp"; done
  data_dirs=""; for dset in ${all_sets}; do data_dirs+=" data/${dset}"; done
  # shellcheck disable=SC2086
  ${python} -m vallr_pin.bin.prepare_text --data-dirs ${data_dirs} --train-dir "data/${train_set}" \
    --token-list-dir "${token_list_dir}" --pinyin-extra-syllables "${pinyin_extra_syllables}" \
    --traditional-to-simplified "${traditional_to_simplified}"
  for dset in ${all_sets}; do
    dir=${dumpdir}/roi/${dset}
    cp "data/${dset}/text" "data/${dset}/text_pinyin" "data/${dset}/utt2spk" "${dir}/"
    utils/fix_data_dir.sh --utt-extra-files "$(frame_files_in "${dir}")" "${dir}"
  done
  if [ "${use_lm}" = true ]; then
    held_out=""
    for dset in $(echo "${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++'); do held_out+=" data/${dset}/text"; done
    # shellcheck disable=SC2086
    ${python} -m vallr_pin.bin.prepare_lm_text --out-dir "${lm_dump}" --transcripts "data/${train_set}/text" \
      --valid "data/${valid_set}/text" --held-out ${held_out} ${lm_train_text:+--text ${lm_train_text}}
  fi
  end_stage 2
fi

# The data options every ESPnet call of the task shares.
data_opts() {  # data_opts train|valid <set>
  local d=${dumpdir}/roi/$2
  echo "--$1_data_path_and_name_and_type ${d}/feats.scp,video,kaldi_ark" \
       "--$1_data_path_and_name_and_type ${d}/text,text,text" \
       "--$1_data_path_and_name_and_type ${d}/text_pinyin,text_pinyin,text"
  # the dump dir's copies (stage 1), which have only the utterances of its feats.scp
  [ -z "${frame_targets}" ] || echo "--$1_data_path_and_name_and_type ${d}/${frame_targets},frame_targets,npy"
  [ -z "${frame_labels}" ] || echo "--$1_data_path_and_name_and_type ${d}/${frame_labels},frame_labels,npy"
  [ -z "${frame_align}" ] || echo "--$1_data_path_and_name_and_type ${d}/${frame_align},frame_align,npy"
}
token_opts="--token_list ${token_list_dir}/char/tokens.txt --pinyin_token_list ${token_list_dir}/pinyin/tokens.txt"
lm_opts() {  # the options every ESPnet lm_train call shares: stage 2's text, the VSR model's characters as tokens
  echo "--token_type char --token_list ${token_list_dir}/char/tokens.txt --non_linguistic_symbols none" \
       "--cleaner none --g2p none --use_preprocessor true --bpemodel none" \
       "--train_data_path_and_name_and_type ${lm_dump}/train.txt,text,text" \
       "--valid_data_path_and_name_and_type ${lm_dump}/valid.txt,text,text"
}

check_frame_files() {  # the per-frame training data named by --frame_targets / --frame_labels / --frame_align must exist
  local f dset
  for f in ${frame_targets} ${frame_labels} ${frame_align}; do
    for dset in ${train_set} ${valid_set}; do
      [ -f "data/${dset}/${f}" ] || { log "Error: data/${dset}/${f} missing (--frame_targets/--frame_labels/--frame_align): re-run stage 0, or drop the option and the frame losses (or splice_prob) of the train config"; exit 1; }
      [ -f "${dumpdir}/roi/${dset}/${f}" ] || { log "Error: ${dumpdir}/roi/${dset}/${f} missing: run stage 1 again (./run.sh --stage 1 --stop-stage 2: it copies data/${dset}/${f} there, less the utterances that failed; finished jobs are skipped)"; exit 1; }
    done
  done
}

if run_stage 3 "ESPnet collect-stats -> ${stats_dir}"; then
  need 2 "${token_list_dir}/char/tokens.txt" "${token_list_dir}/pinyin/tokens.txt"
  for dset in ${train_set} ${valid_set}; do need 1 "${dumpdir}/roi/${dset}/feats.scp"; need 2 "${dumpdir}/roi/${dset}/text_pinyin"; done
  check_frame_files
  mkdir -p "${stats_dir}/log"
  # In collect-stats mode ESPnet takes the key lists as shape files and writes the real shapes.
  # shellcheck disable=SC2046,SC2086
  ${train_cmd} "${stats_dir}/log/stats.log" \
    ${python} -m vallr_pin.bin.vsr_train --collect_stats true --config "${vsr_config}" ${token_opts} \
      $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
      --train_shape_file "${dumpdir}/roi/${train_set}/feats.scp" \
      --valid_shape_file "${dumpdir}/roi/${valid_set}/feats.scp" \
      --output_dir "${stats_dir}" --ngpu 0 --num_workers 0
  if [ "${use_lm}" = true ]; then
    need 2 "${lm_dump}/train.txt" "${lm_dump}/valid.txt"
    # shellcheck disable=SC2046
    ${train_cmd} "${lm_stats_dir}/log/stats.log" \
      ${python} -m vallr_pin.bin.lm_train --collect_stats true --config "${lm_config}" $(lm_opts) \
        --train_shape_file "${lm_dump}/train.txt" --valid_shape_file "${lm_dump}/valid.txt" \
        --output_dir "${lm_stats_dir}" --ngpu 0 --num_workers 0
  fi
  end_stage 3
fi

train_model() {  # train_model <exp dir> <config>
  local launch="" dist_opts="--ngpu ${ngpu}" nproc=${train_nproc:-$([ "${ngpu}" -gt 0 ] && echo "${ngpu}" || echo 2)}
  case "${train_launcher}" in
    espnet) ;;
    torchrun)  # ESPnet reads RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* from torchrun (external-launcher mode)
      launch="-m torch.distributed.run --nproc_per_node ${nproc} ${train_launcher_opts}"
      [ "${train_launcher_opts}" = "${train_launcher_opts/--nnodes/}" ] && launch+=" --standalone"
      launch+=" --max_restarts 0"
      dist_opts="--multiprocessing_distributed false --ngpu $([ "${ngpu}" -gt 0 ] && echo 1 || echo 0)"
      dist_opts+=" --dist_backend $([ "${ngpu}" -gt 0 ] && echo nccl || echo gloo)" ;;
    *) log "Error: --train_launcher ${train_launcher}: espnet or torchrun"; exit 2 ;;
  esac
  mkdir -p "$1"
  log "  training $1 with $2 (resumes from $1/checkpoint.pth if present)${launch:+; ${nproc} torchrun processes}"
  # shellcheck disable=SC2046,SC2086
  ${cuda_cmd} --gpu "${ngpu}" "$1/train.log" \
    ${python} ${launch} -m vallr_pin.bin.vsr_train --config "$2" ${token_opts} \
      $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
      --train_shape_file "${stats_dir}/train/video_shape" --valid_shape_file "${stats_dir}/valid/video_shape" \
      --resume true --output_dir "$1" ${dist_opts} ${train_args}
}

train_lm() {  # the character LM (ESPnet's lm_train; resumes like the VSR models)
  [ "${use_lm}" = true ] || return 0
  mkdir -p "${lm_exp}"
  log "  training ${lm_exp} with ${lm_config} on ${lm_dump}/train.txt ($(wc -l < "${lm_dump}/train.txt") lines)"
  # shellcheck disable=SC2046,SC2086
  ${train_cmd} "${lm_exp}/train.log" \
    ${python} -m vallr_pin.bin.lm_train --config "${lm_config}" $(lm_opts) \
      --train_shape_file "${lm_stats_dir}/train/text_shape" --valid_shape_file "${lm_stats_dir}/valid/text_shape" \
      --fold_length 150 --resume true --output_dir "${lm_exp}" --ngpu 0 --num_workers 0 ${lm_args}
}

if run_stage 4 "train ${vsr_exp}${char_tag:+ and ${char_exp}}$([ "${use_lm}" = true ] && echo " and ${lm_exp}")"; then
  need 3 "${stats_dir}/train/video_shape" "${stats_dir}/valid/video_shape"
  [ "${use_lm}" = true ] && need 3 "${lm_stats_dir}/train/text_shape"
  check_frame_files
  if [ "${train_in_parallel}" = true ] && [ -n "${char_tag}" ]; then
    # the LM follows the char-only baseline, which finishes first, on the core it leaves
    train_model "${vsr_exp}" "${vsr_config}" & pid=$!
    { train_model "${char_exp}" "${char_config}" && train_lm; } || { kill "${pid}" 2>/dev/null; exit 1; }
    wait "${pid}"
  else
    train_model "${vsr_exp}" "${vsr_config}"
    [ -n "${char_tag}" ] && train_model "${char_exp}" "${char_config}"
    train_lm
  fi
  end_stage 4
fi

# Stages 5 and 6 queue their decodes (queue_decode), then run_decodes runs them all as nj jobs: job n is one
# process that decodes the n-th split of every queued (checkpoint, set), from a decode list
# (vsr_inference --decode_list). One process per job, not per decode: importing ESPnet + FunASR costs 15-20 s
# per process on a CPU, more than decoding a mini set takes. Each decode keeps its own directory, key splits and
# .done markers, so a re-run skips what finished.
# With the LM every decode fuses it (decode_config's lm_weight); without it, none does, whatever the config says.
if [ "${use_lm}" = true ]; then
  lm_decode_opts="--lm_train_config ${lm_exp}/config.yaml --lm_file ${lm_exp}/${lm_inference_model}"
else
  lm_decode_opts="--lm_weight 0"
fi
need_lm() {  # stages 5 and 6 with --use_lm true read the LM of stage 4
  [ "${use_lm}" = true ] || return 0
  need 4 "${lm_exp}/config.yaml" "${lm_exp}/${lm_inference_model}"
  grep -q '^lm_weight: *[0-9.]*[1-9]' "${decode_config}" \
    || log "Warning: --use_lm true, but ${decode_config} sets no lm_weight > 0: the LM is not used"
}

decodes=()
queue_decode() {  # queue_decode <model exp> <checkpoint file> <set> <decode dir> [extra vsr_inference options]
  decodes+=("$1|$2|$3|$4|${5:-}")
}

run_decodes() {  # run_decodes <log dir>: decode, merge and score everything queued; logs in <log dir>
  local logdir=$1 spec mexp ckpt dset dir extra data _nj max_nj=1 n key_files
  mkdir -p "${logdir}"
  for n in $(seq "${infer_nj}"); do : > "${logdir}/decode_list.${n}"; done
  for spec in "${decodes[@]}"; do
    IFS='|' read -r mexp ckpt dset dir extra <<< "${spec}"
    data=${dumpdir}/roi/${dset}
    _nj=$(min "${infer_nj}" "$(wc -l < "${data}/feats.scp")")
    [ "${_nj}" -gt "${max_nj}" ] && max_nj=${_nj}
    mkdir -p "${dir}/logdir"
    key_files=""
    for n in $(seq "${_nj}"); do key_files+=" ${dir}/logdir/keys.${n}.scp"; done
    # shellcheck disable=SC2086
    utils/split_scp.pl "${data}/feats.scp" ${key_files}
    for n in $(seq "${_nj}"); do
      echo "--train_config ${mexp}/config.yaml --model_file ${ckpt}" \
        "--data_path_and_name_and_type ${data}/feats.scp,video,kaldi_ark --ref_text ${data}/text" \
        "--key_file ${dir}/logdir/keys.${n}.scp --output_dir ${dir}/logdir/output.${n} ${extra}" \
        >> "${logdir}/decode_list.${n}"
    done
  done
  log "  ${#decodes[@]} decodes in ${max_nj} jobs on ${infer_device} (logs: ${logdir}/inference.*.log)"
  # shellcheck disable=SC2086
  ${infer_cmd} --gpu "${infer_ngpu}" JOB=1:"${max_nj}" "${logdir}/inference.JOB.log" \
    ${python} -m vallr_pin.bin.vsr_inference --config "${decode_config}" --device "${infer_device}" \
      --decode_list "${logdir}/decode_list.JOB" ${lm_decode_opts} ${inference_args}
  for spec in "${decodes[@]}"; do
    IFS='|' read -r mexp ckpt dset dir extra <<< "${spec}"
    _nj=$(min "${infer_nj}" "$(wc -l < "${dumpdir}/roi/${dset}/feats.scp")")
    run_bg "${nj}" merge_and_score "${dir}" "${dset}" "${_nj}"
  done
  wait_bg
  decodes=()
}

merge_and_score() {  # merge_and_score <decode dir> <set> <jobs>
  local dir=$1 dset=$2 n job_dirs="" ref=data/$2/text
  for n in $(seq "$3"); do job_dirs+=" ${dir}/logdir/output.${n}"; done
  # shellcheck disable=SC2086
  ${python} -m vallr_pin.bin.vsr_inference --output_dir "${dir}" --merge ${job_dirs}
  # Scored against data/<set>/text, every utterance of the set: one that stage 1 dropped (no face, too few
  # frames) has no hypothesis and counts as all deletions, as CNVSRC scores its whole eval list. Stage 6's
  # training subset exists only as a dump dir, drawn from the utterances that have features.
  [ "${dset}" != "${nbest_train}" ] || [ -f "${ref}" ] || ref=${dumpdir}/roi/${dset}/text
  score_dir "${ref}" "${dir}"
}

score_dir() {  # score_dir <ref text> <dir with text>
  ${python} -m vallr_pin.bin.score --ref "$1" --hyp "$2/text" --out-dir "$2/score_cer"
  ${python} -m vallr_pin.bin.error_analysis --ref "$1" --hyp "$2/text" --out-dir "$2/score_cer" >/dev/null
}

if run_stage 5 "decode ${test_sets} with ${inference_model}, score CER"; then
  for mexp in ${vsr_exp} ${char_tag:+${char_exp}}; do need 4 "${mexp}/config.yaml" "${mexp}/${inference_model}"; done
  need_lm
  for dset in ${test_sets}; do need 1 "${dumpdir}/roi/${dset}/feats.scp"; need 2 "${dumpdir}/roi/${dset}/text_pinyin"; done
  for mexp in ${vsr_exp} ${char_tag:+${char_exp}}; do
    for dset in ${test_sets}; do
      dir=${mexp}/decode_${decode_tag}_${inference_model%.pth}/${dset}
      # the char-only baseline has no pinyin branch to rescore or search with (decode_config's
      # pinyin_rescore_weight, pinyin_search_weight)
      extra=""; [ "${mexp}" = "${char_exp}" ] && extra="--pinyin_rescore_weight 0 --pinyin_search_weight 0"
      queue_decode "${mexp}" "${mexp}/${inference_model}" "${dset}" "${dir}" "${extra}"
    done
  done
  run_decodes "${expdir}/decode_logs/stage5"
  end_stage 5
fi

kept_ckpts() {  # the early/mid/late checkpoints stage 6 decodes (names without .pth), in epoch order
  if [ -n "${nbest_ckpts}" ]; then echo "${nbest_ckpts}"; return; fi
  [ -d "${vsr_exp}/ckpt_keep" ] || return 0  # (find would fail, and pipefail end the script with no message)
  find "${vsr_exp}/ckpt_keep" -maxdepth 1 -name '*epoch.pth' 2>/dev/null | xargs -r -n1 basename | sort -n | sed 's/\.pth$//' | tr '\n' ' '
}

if run_stage 6 "N-best dumping on ${nbest_sets} from the kept checkpoints"; then
  need 4 "${vsr_exp}/config.yaml"; need_ckpts; need_lm
  for dset in ${nbest_sets}; do need 1 "${dumpdir}/roi/${dset}/feats.scp"; need 2 "${dumpdir}/roi/${dset}/text_pinyin"; done
  ckpts=$(kept_ckpts)
  log "  checkpoints: ${ckpts}"
  if [ -n "${nbest_train_subset}" ]; then
    ${python} -m vallr_pin.bin.subset_data_dir --src "${dumpdir}/roi/${train_set}" \
      --dst "${dumpdir}/roi/${nbest_train}" --size "${nbest_train_subset}"
  fi
  for ckpt in ${ckpts}; do
    [ -f "${vsr_exp}/ckpt_keep/${ckpt}.pth" ] || { log "Error: ${vsr_exp}/ckpt_keep/${ckpt}.pth missing"; exit 1; }
    for dset in ${nbest_sets}; do
      [ "${dset}" = "${train_set}" ] && dset=${nbest_train}
      dir=${vsr_exp}/decode_${decode_tag}_${ckpt}/${dset}
      queue_decode "${vsr_exp}" "${vsr_exp}/ckpt_keep/${ckpt}.pth" "${dset}" "${dir}" "${nbest_inference_args}"
    done
  done
  run_decodes "${expdir}/decode_logs/stage6"
  end_stage 6
fi

ext_dir=${expdir}/nbest_external
import_external() {  # import_external <set>: the external recogniser's N-best of <set> -> ${ext_dir}/<set>
  [ -e "${external_nbest}/$1" ] || { log "Error: ${external_nbest}/$1 is missing: external_nbest needs <dir>/<set>/ ({k}best_recog/text or nbest.jsonl) for every set of stages 7 and 9"; exit 1; }
  ${python} -m vallr_pin.bin.import_nbest --src "${external_nbest}/$1" --out-dir "${ext_dir}/$1" \
    $([ -f "data/$1/text" ] && echo "--text data/$1/text")
}
need_context() {  # need_context <set>...: with llm_context, data/<set>/context must exist
  [ "${llm_context}" = false ] || for dset in "$@"; do need 0 "data/${dset}/context"; done
}
context_opts() {  # context_opts <set>...: the llm_context options of build_llm_data / llm_refine
  [ "${llm_context}" != false ] || return 0
  local dset files=""
  for dset in "$@"; do files+=" data/${dset}/context"; done
  echo "--context${files}$([ "${llm_context}" = optional ] && echo " --context-optional")"
}

if run_stage 7 "LLM instruction data -> ${expdir}/llm_data"; then
  need_context "${train_set}" "${valid_set}"
  if [ -n "${external_nbest}" ]; then
    for dset in ${train_set} ${valid_set}; do import_external "${dset}"; done
    train_nbest="external=${ext_dir}/${train_set}/nbest.jsonl"; dev_nbest="external=${ext_dir}/${valid_set}/nbest.jsonl"
  else
    need_ckpts
    for ckpt in $(kept_ckpts); do
      need 6 "${vsr_exp}/decode_${decode_tag}_${ckpt}/${nbest_train}/nbest.jsonl" "${vsr_exp}/decode_${decode_tag}_${ckpt}/${valid_set}/nbest.jsonl"
    done
    train_nbest=""; dev_nbest=""
    for ckpt in $(kept_ckpts); do
      train_nbest+=" ${ckpt}=${vsr_exp}/decode_${decode_tag}_${ckpt}/${nbest_train}/nbest.jsonl"
      dev_nbest+=" ${ckpt}=${vsr_exp}/decode_${decode_tag}_${ckpt}/${valid_set}/nbest.jsonl"
    done
  fi
  noise_opts=""
  if [ -n "${llm_noise_text}" ]; then
    for f in ${llm_noise_text}; do need 0 "${f}"; done
    noise_opts="--noise-text ${llm_noise_text} --noise-ratio ${llm_noise_ratio} --noise-exclude"
    for dset in $(echo "${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++'); do
      if [ -f "data/${dset}/text" ]; then noise_opts+=" data/${dset}/text"; fi  # no evaluation sentence becomes a sample
    done
  fi
  # shellcheck disable=SC2086
  ${python} -m vallr_pin.bin.build_llm_data --train ${train_nbest} --dev ${dev_nbest} \
    --out-dir "${expdir}/llm_data" $(context_opts "${train_set}" "${valid_set}") ${noise_opts} ${llm_data_opts}
  end_stage 7
fi

if run_stage 8 "ms-swift LoRA SFT -> ${llm_exp}"; then
  [ -n "${llm_model}" ] || { log "Error: set llm_model= (a local model directory) in run.sh or --llm_model"; exit 1; }
  need 7 "${expdir}/llm_data/train.jsonl"
  mkdir -p "${llm_exp}"
  ${cuda_cmd} --gpu "${ngpu}" "${llm_exp}/sft.log" \
    ${python} -m vallr_pin.bin.llm_sft --config "${llm_sft_config}" --model "${llm_model}" \
      --train "${expdir}/llm_data/train.jsonl" --val "${expdir}/llm_data/dev.jsonl" --output-dir "${llm_exp}" \
      ${llm_sft_args:+-- ${llm_sft_args}}
  if [ "${llm_grpo}" = true ]; then
    # RL with a verifiable reward, continuing the SFT adapter (vallr_pin/llm/grpo.py)
    mkdir -p "${llm_exp}/grpo"
    ${cuda_cmd} --gpu "${ngpu}" "${llm_exp}/grpo/grpo.log" \
      ${python} -m vallr_pin.bin.llm_sft --rlhf grpo --config "${llm_grpo_config}" --model "${llm_model}" \
        --init-adapter "${llm_exp}/adapter" --train "${expdir}/llm_data/train.jsonl" \
        --val "${expdir}/llm_data/dev.jsonl" --output-dir "${llm_exp}/grpo" ${llm_grpo_args:+-- ${llm_grpo_args}}
  fi
  end_stage 8
fi

if run_stage 9 "LLM refinement of ${test_sets}, scoring, RESULTS.md"; then
  [ -n "${llm_model}" ] || { log "Error: set llm_model= (a local model directory) in run.sh or --llm_model"; exit 1; }
  need 8 "${llm_exp}/adapter"
  llm_modes="finetuned zeroshot"
  if [ "${llm_grpo}" = true ]; then need 8 "${llm_exp}/grpo/adapter"; llm_modes="finetuned grpo zeroshot"; fi
  tune_on_dev=$([ "${llm_tune_fusion}" = true ] || [ "${llm_gate}" = true ] && echo true || echo false)
  [ -n "${external_nbest}" ] || for dset in ${test_sets} $([ "${tune_on_dev}" = true ] && echo "${valid_set}"); do
    need 5 "${vsr_exp}/decode_${decode_tag}_${inference_model%.pth}/${dset}/nbest.jsonl"
  done
  decode_dir=decode_${decode_tag}_${inference_model%.pth}
  refine_sets=${test_sets}
  if [ "${llm_tune_fusion}" = true ]; then
    case " ${llm_refine_opts} " in *" --mode rescore "*) ;;
      *) log "Error: llm_tune_fusion=true needs llm_refine_opts with --mode rescore"; exit 1 ;; esac
  fi
  if [ "${tune_on_dev}" = true ]; then
    # fusion weights and gate are tuned on the validation set, so it is refined even when it is not a test set
    refine_sets=$(echo "${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
  fi
  need_context ${refine_sets}
  stage2_in() { echo "${vsr_exp}/${decode_dir}/$1/nbest.jsonl"; }  # stage2_in <set>: the N-best stage 9 refines
  ref_of() { echo "data/$1/text"; }  # every utterance of the set: one stage 1 could not crop counts as deletions
  if [ -n "${external_nbest}" ]; then  # another recogniser's N-best; its 1-best scored as its Stage I
    stage2_in() { echo "${ext_dir}/$1/nbest.jsonl"; }
    for dset in ${refine_sets}; do import_external "${dset}"; score_dir "$(ref_of "${dset}")" "${ext_dir}/${dset}"; done
  fi
  # every (mode, set) refinement is its own process; llm_refine_nj of them run at once
  for mode in ${llm_modes}; do
    adapter_opt=""; [ "${mode}" = finetuned ] && adapter_opt="--adapter ${llm_exp}/adapter"
    [ "${mode}" = grpo ] && adapter_opt="--adapter ${llm_exp}/grpo/adapter"
    for dset in ${refine_sets}; do
      out=${llm_exp}/refine_${mode}/${dset}
      # shellcheck disable=SC2086
      run_bg "${llm_refine_nj}" ${infer_cmd} --gpu "${infer_ngpu}" "${out}/refine.log" \
        ${python} -m vallr_pin.bin.llm_refine --model "${llm_model}" ${adapter_opt} --backend "${llm_backend}" \
          --nbest "$(stage2_in "${dset}")" --out-dir "${out}" $(context_opts "${dset}") ${llm_refine_opts}
    done
  done
  wait_bg
  for mode in ${llm_modes}; do
    apply_dirs=()
    for dset in ${refine_sets}; do apply_dirs+=("${llm_exp}/refine_${mode}/${dset}"); done
    if [ "${llm_tune_fusion}" = true ]; then
      # LLM weight and length bonus chosen on the validation set only, then applied unchanged to every set
      ${python} -m vallr_pin.bin.tune_fusion --tune-dir "${llm_exp}/refine_${mode}/${valid_set}" \
        --ref "$(ref_of "${valid_set}")" --apply-dir "${apply_dirs[@]}" \
        2>&1 | tee "${llm_exp}/refine_${mode}/tune_fusion.log"
    fi
    if [ "${llm_gate}" = true ]; then
      # the gate (feature, threshold) chosen on the validation set only, then applied unchanged to every set
      ${python} -m vallr_pin.bin.tune_gate --tune-dir "${llm_exp}/refine_${mode}/${valid_set}" \
        --ref "$(ref_of "${valid_set}")" --apply-dir "${apply_dirs[@]}" \
        2>&1 | tee "${llm_exp}/refine_${mode}/tune_gate.log"
    fi
    for dset in ${refine_sets}; do
      score_dir "$(ref_of "${dset}")" "${llm_exp}/refine_${mode}/${dset}"  # every utterance, as in stage 5
    done
  done
  valid_uses="model selection (${inference_model}), LLM validation (stage 7)"
  [ "${llm_tune_fusion}" = true ] && valid_uses+=", fusion tuning (stage 9)"
  results_opts=(--out RESULTS.md --sets ${test_sets} --title "$(basename "$(dirname "$PWD")")/$(basename "$PWD")"
    --system "char-only (stage I)=${char_exp}/${decode_dir}/{set}/score_cer"
    --system "dual decoder (stage I)=${vsr_exp}/${decode_dir}/{set}/score_cer"
    --system "dual + zero-shot LLM=${llm_exp}/refine_zeroshot/{set}/score_cer"
    --system "dual + fine-tuned LLM=${llm_exp}/refine_finetuned/{set}/score_cer"
    --ordering "char-only (stage I) > dual decoder (stage I)"
    --ordering "dual decoder (stage I) > dual + fine-tuned LLM"
    --ordering "dual + zero-shot LLM >= dual + fine-tuned LLM"
    --meta "VSR model: ${vsr_config} (${vsr_exp}/${inference_model}); decoding: ${decode_config}$([ "${use_lm}" = true ] && echo " with the character LM ${lm_exp}/${lm_inference_model} (${lm_config})")"
    --meta "LLM: ${llm_model} + LoRA (${llm_sft_config}); instruction data from checkpoints: $(kept_ckpts)"
    --failed "${dumpdir}/roi/{set}/failed"
    --set-note "${valid_set}=validation set: ${valid_uses} use it, so its CERs are not held-out figures")
  if [ "${llm_grpo}" = true ]; then
    results_opts+=(--system "dual + fine-tuned LLM + GRPO=${llm_exp}/refine_grpo/{set}/score_cer"
      --ordering "dual + fine-tuned LLM > dual + fine-tuned LLM + GRPO"
      --meta "GRPO after SFT: ${llm_grpo_config} (reward CER(1-best) - CER(answer) + format; ${llm_exp}/grpo/adapter)")
  fi
  if [ -n "${external_nbest}" ]; then
    results_opts=(--out RESULTS.md --sets ${test_sets} --title "$(basename "$(dirname "$PWD")")/$(basename "$PWD")"
      --system "external (stage I)=${ext_dir}/{set}/score_cer"
      --system "external + zero-shot LLM=${llm_exp}/refine_zeroshot/{set}/score_cer"
      --system "external + fine-tuned LLM=${llm_exp}/refine_finetuned/{set}/score_cer"
      --ordering "external (stage I) > external + fine-tuned LLM"
      --ordering "external + zero-shot LLM >= external + fine-tuned LLM"
      --meta "Stage I: the external recogniser's N-best in ${external_nbest}"
      --meta "LLM: ${llm_model} + LoRA (${llm_sft_config}); instruction data from ${external_nbest}/${train_set}"
      --set-note "${valid_set}=validation set: ${valid_uses} use it, so its CERs are not held-out figures")
    [ "${llm_grpo}" = true ] && results_opts+=(
      --system "external + fine-tuned LLM + GRPO=${llm_exp}/refine_grpo/{set}/score_cer"
      --ordering "external + fine-tuned LLM > external + fine-tuned LLM + GRPO")
  fi
  # after the external-N-best branch, which starts results_opts afresh
  [ -n "${llm_noise_text}" ] && results_opts+=(--meta "instruction data: + synthetic N-best lists from ${llm_noise_text} (ratio ${llm_noise_ratio}, ${expdir}/llm_data/stats.json)")
  [ -n "${paper_results}" ] && results_opts+=(--paper-ref "${paper_results}")
  end_stage 9
  results_opts+=(--meta "time per stage (s, latest run): $(awk '{printf "%s%s=%s", sep, $2, $3; sep=", "}' "${timing}")")
  ${python} -m vallr_pin.bin.show_results "${results_opts[@]}" > /dev/null
  # Pictures beside RESULTS.md: ESPnet's training curves (use_matplotlib: true) and the viseme confusions of
  # the error analysis, so the figures a reader sees are the ones of this run.
  mkdir -p figures
  for mexp in ${vsr_exp} ${char_tag:+${char_exp}}; do
    for f in loss acc_char cer_ctc_char acc_pinyin cer_ctc_pinyin; do
      [ -f "${mexp}/images/${f}.png" ] && cp "${mexp}/images/${f}.png" "figures/train_$(basename "${mexp}")_${f}.png"
    done
    for dset in ${test_sets}; do
      f=${mexp}/${decode_dir}/${dset}/score_cer/viseme_confusion.png
      [ -f "${f}" ] && cp "${f}" "figures/viseme_confusion_$(basename "${mexp}")_${dset}.png"
    done
  done
  [ "${use_lm}" = true ] && [ -f "${lm_exp}/images/loss.png" ] && cp "${lm_exp}/images/loss.png" "figures/train_$(basename "${lm_exp}")_loss.png"
  for mode in ${llm_modes}; do
    f=${llm_exp}/refine_${mode}/${valid_set}/gate_curve.png
    [ "${llm_gate}" = true ] && [ -f "${f}" ] && cp "${f}" "figures/gate_curve_${mode}.png"
  done
  cat RESULTS.md
fi
log "Finished stages ${stage}-${stop_stage} [elapsed=${SECONDS}s]"

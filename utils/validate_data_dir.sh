#!/usr/bin/env bash
# Check a Kaldi-style data directory (data/<set>/) and report every problem, one line each.
#
# Usage: utils/validate_data_dir.sh [--no-text] [--no-check-paths] <data-dir>
#
# Checks: utt2spk and spk2utt exist and agree; text exists unless --no-text, and video.scp or feats.scp
# exists; every file is valid UTF-8, sorted by key in C order (LC_ALL=C) with unique keys and no blank
# lines; every per-utterance file (video.scp, text, text_pinyin, landmarks.scp, feats.scp, utt2num_frames,
# feats_shape) holds the same utterances as utt2spk; no file starts with a UTF-8 byte-order mark; utterance ids start with their speaker id; no
# utterance has empty text (unless --no-text); every video.scp path (the rest of the line after the key, so it
# may hold spaces) exists (unless --no-check-paths; relative paths are taken from the current directory).
# Exits 0 printing "Successfully validated data-directory <dir>", or 1 after listing the problems; most
# are repaired by utils/fix_data_dir.sh.
#
# Options:
#   --no-text          text is optional and may have empty transcripts
#   --no-check-paths   do not check that the video.scp paths exist
set -u
export LC_ALL=C

prog=validate_data_dir.sh
no_text=false
no_check_paths=false
utils=$(dirname "$0")
# The two flags take no value, unlike parse_options.sh options, so they are read here.
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-text) no_text=true; shift ;;
    --no-check-paths) no_check_paths=true; shift ;;
    --help|-h) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "$prog: unknown option $1" >&2
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ "$#" -ne 1 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 1
fi
data=${1%/}
[ -d "$data" ] || { echo "$prog: no such directory: $data" >&2; exit 1; }

problems=0
problem() { echo "$prog: $*"; problems=$((problems + 1)); }

per_utt_files="utt2spk video.scp text text_pinyin landmarks.scp feats.scp utt2num_frames feats_shape"

for f in utt2spk spk2utt; do
  [ -f "$data/$f" ] || problem "$data/$f is missing (make spk2utt with utils/utt2spk_to_spk2utt.pl)"
done
if ! $no_text && [ ! -f "$data/text" ]; then
  problem "$data/text is missing (use --no-text for a directory without transcripts)"
fi
if [ ! -f "$data/video.scp" ] && [ ! -f "$data/feats.scp" ]; then
  problem "$data has neither video.scp nor feats.scp"
fi

# Format, UTF-8, order and uniqueness of every file keyed by utterance or speaker.
for f in $per_utt_files spk2utt spk2gender; do
  [ -f "$data/$f" ] || continue
  [ "$(head -c 3 "$data/$f" | od -An -tx1 | tr -d ' \n')" = efbbbf ] &&
    problem "$data/$f starts with a UTF-8 byte-order mark (its first key reads as U+FEFF + the id); run utils/fix_data_dir.sh"
  bad=$(perl -MEncode -ne 'my $l = $_; unless (eval { Encode::decode("UTF-8", $l, Encode::FB_CROAK); 1 }) {
           my ($k) = split; print "line $. (key \x27", ($k // ""), "\x27)"; exit }' "$data/$f")
  [ -n "$bad" ] && problem "$data/$f is not valid UTF-8 at $bad"
  # text may hold an utterance with an empty transcript, reported separately below.
  while IFS= read -r line; do problem "$line"; done < <(awk -v f="$data/$f" -v needval="$([ "$f" = text ] && echo 0 || echo 1)" -v q="'" '
    NF == 0 { if (!blank++) print f ": line " NR " is blank"; next }
    { k = $1 "" }
    needval && NF < 2 && !noval++ { print f ": line " NR " (" q k q ") has a key but no value" }
    (k in seen) && !dup++ { print f ": duplicate key " q k q " (line " NR "); run utils/fix_data_dir.sh" }
    NR > 1 && havep && k < prev && !unsorted++ {
      print f ": not sorted by key in C order: " q k q " (line " NR ") comes after " q prev q \
            "; run utils/fix_data_dir.sh (or sort with LC_ALL=C sort -k1,1)" }
    { seen[k]; prev = k; havep = 1 }' "$data/$f")
done

if [ -f "$data/utt2spk" ]; then
  # Same utterances in every per-utterance file as in utt2spk.
  for f in $per_utt_files; do
    [ "$f" = utt2spk ] || [ ! -f "$data/$f" ] && continue
    msg=$(awk -v f="$data/$f" -v q="'" '
      NR == FNR { if (NF) ref[$1 ""]; next }
      NF { k = $1 ""; have[k]; if (!(k in ref)) { extra++; if (fe == "" || k < fe) fe = k } }
      END {
        for (k in ref) if (!(k in have)) { miss++; if (fm == "" || k < fm) fm = k }
        if (miss) print f ": " miss " utterance(s) of utt2spk missing, first " q fm q "; run utils/fix_data_dir.sh"
        if (extra) print f ": " extra " utterance(s) not in utt2spk, first " q fe q "; run utils/fix_data_dir.sh"
      }' "$data/utt2spk" "$data/$f")
    [ -n "$msg" ] && while IFS= read -r line; do problem "$line"; done <<< "$msg"
  done

  msg=$(awk -v q="'" 'NF >= 2 && index($1, $2) != 1 {
          n++; if (n == 1) first = q $1 q " (speaker " q $2 q ")" }
        END { if (n) print n " utterance id(s) do not start with their speaker id, first " first \
                           "; run utils/fix_data_dir.sh (renames them to <spk>-<utt>)" }' "$data/utt2spk")
  [ -n "$msg" ] && problem "$data/utt2spk: $msg"

  if [ -f "$data/spk2utt" ]; then
    first=$(diff <("$utils/utt2spk_to_spk2utt.pl" "$data/utt2spk" | sort -s -k1,1) <(sort -s -k1,1 "$data/spk2utt") |
              awk '/^[<>]/ { print $2; exit }')
    [ -n "$first" ] && problem "$data/spk2utt does not match utt2spk, first at speaker '$first'; run utils/fix_data_dir.sh"
  fi
fi

if ! $no_text && [ -f "$data/text" ]; then
  msg=$(awk -v q="'" 'NF == 1 { n++; if (n == 1) first = $1 }
        END { if (n) print n " utterance(s) with empty text, first " q first q \
                           "; drop them with utils/fix_data_dir.sh --drop-empty-text true" }' "$data/text")
  [ -n "$msg" ] && problem "$data/text: $msg"
fi

if ! $no_check_paths && [ -f "$data/video.scp" ]; then
  # the path is the rest of the line after the key (it may hold spaces), as stage 1 reads it
  msg=$(perl -MCwd -lne 'my ($k, $p) = split(" ", $_, 2); next unless defined $p; $p =~ s/\s+$//;
        next if $p eq "" || $p =~ /\|$/; if (!-e $p) { $n++; $first //= "\x27$k\x27 -> $p" }
        END { print "$n video path(s) do not exist (relative to ", getcwd(), "), first $first;",
                    " fix the paths or drop them with utils/fix_data_dir.sh --drop-missing-videos true" if $n }' \
        "$data/video.scp")
  [ -n "$msg" ] && problem "$data/video.scp: $msg"
fi

if [ "$problems" -gt 0 ]; then
  echo "$prog: $problems problem(s) in data-directory $data" >&2
  exit 1
fi
echo "Successfully validated data-directory $data"

#!/usr/bin/env bash
# Repair a Kaldi-style data directory in place so that utils/validate_data_dir.sh accepts it.
#
# Usage: utils/fix_data_dir.sh [options] <data-dir>
#
# Sorts every file by key in C order, drops blank lines, a UTF-8 byte-order mark and repeated keys (keeping the first line), renames
# utterances whose id does not start with their speaker id to <spk>-<utt>, keeps only the utterances present
# in every per-utterance file (utt2spk, video.scp, text, text_pinyin, landmarks.scp, feats.scp,
# utt2num_frames, feats_shape and --utt-extra-files, those that exist), regenerates spk2utt and filters
# spk2gender. Reports how many utterances were removed and from which file they were missing. Every file it
# changes is first copied to <data-dir>/.backup/. Nothing is changed if every utterance would be removed.
#
# Options:
#   --utt-extra-files "a b"     more per-utterance files to filter (default "")
#   --rename-unprefixed BOOL    rename <utt> to <spk>-<utt> where <utt> does not start with <spk> (default true)
#   --drop-missing-videos BOOL  drop utterances whose video.scp path (the rest of the line, spaces and all)
#                               does not exist, relative to the current directory (default false)
#   --drop-empty-text BOOL      drop utterances with an empty transcript (default false)
set -u
export LC_ALL=C

utt_extra_files=
rename_unprefixed=true
drop_missing_videos=false
drop_empty_text=false
utils=$(dirname "$0")
. "$utils/parse_options.sh" || exit 1

prog=fix_data_dir.sh
if [ "$#" -ne 1 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 1
fi
data=${1%/}
[ -f "$data/utt2spk" ] || { echo "$prog: $data/utt2spk not found; a data directory needs one" >&2; exit 1; }

files=(utt2spk)
for f in video.scp text text_pinyin landmarks.scp feats.scp utt2num_frames feats_shape $utt_extra_files; do
  case " ${files[*]} " in *" $f "*) continue ;; esac
  if [ -f "$data/$f" ]; then files+=("$f");
  elif [[ " $utt_extra_files " == *" $f "* ]]; then echo "$prog: warning: $data/$f (--utt-extra-files) not found"; fi
done

# Work next to the data so the final moves are renames on one file system. A run killed with SIGKILL (which
# runs no EXIT trap) left its temporary directory behind: remove those first (one fix_data_dir.sh at a time
# per directory, as ever).
rm -rf "$data"/.fix_data_dir.??????
tmp=$(mktemp -d "$data/.fix_data_dir.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# Drop blank lines and a UTF-8 byte-order mark (it would make the first key U+FEFF + the id), sort by key
# (stable, so the first of repeated keys stays first), keep the first per key.
clean() {
  sed '1s/^\xEF\xBB\xBF//' "$1" | sort -s -k1,1 | awk 'NF > 0 && !seen[$1 ""]++'
}

for f in "${files[@]}"; do
  [ "$(head -c 3 "$data/$f" | od -An -tx1 | tr -d ' \n')" = efbbbf ] &&
    echo "$prog: $data/$f: removed the UTF-8 byte-order mark at its start"
  clean "$data/$f" > "$tmp/$f"
  dups=$(awk 'NF > 0 { if (seen[$1 ""]++ == 1) { n++; if (n == 1) first = $1 } }
              END { if (n) print n " key(s) repeated, first '\''" first "'\''" }' "$data/$f")
  [ -n "$dups" ] && echo "$prog: $data/$f: $dups; kept the first line of each"
done

if $rename_unprefixed; then
  awk 'NF >= 2 && index($1, $2) != 1 { print $1, $2 "-" $1 }' "$tmp/utt2spk" > "$tmp/rename"
  if [ -s "$tmp/rename" ]; then
    echo "$prog: renamed $(wc -l < "$tmp/rename") utterance(s) whose id does not start with the speaker id" \
         "to <spk>-<utt>, first: $(head -n 1 "$tmp/rename" | sed 's/ / -> /')"
    for f in "${files[@]}"; do
      # Replace the key only: the rest of the line is kept byte for byte.
      awk 'NR == FNR { to[$1 ""] = $2; next }
           NF > 0 && (($1 "") in to) { $0 = to[$1 ""] substr($0, length($1) + 1) } { print }' \
        "$tmp/rename" "$tmp/$f" > "$tmp/renamed"
      clean "$tmp/renamed" > "$tmp/$f"
    done
  fi
fi

# Utterances to drop for a reason other than being missing from a file.
: > "$tmp/drop_reasons"
if $drop_missing_videos && [ -f "$tmp/video.scp" ]; then
  # the path is the rest of the line after the key (it may hold spaces), as stage 1 reads it
  perl -lne 'my ($k, $p) = split(" ", $_, 2); next unless defined $p; $p =~ s/\s+$//;
    print "$k video path does not exist" if $p ne "" && $p !~ /\|$/ && !-e $p' \
    "$tmp/video.scp" >> "$tmp/drop_reasons"
  if [ -s "$tmp/video.scp" ] && [ "$(grep -c 'video path' "$tmp/drop_reasons")" -eq "$(wc -l < "$tmp/video.scp")" ]; then
    echo "$prog: none of the video.scp paths exist from $(pwd); run from the directory they are relative to." \
         "Nothing changed." >&2
    exit 1
  fi
fi
if $drop_empty_text && [ -f "$tmp/text" ]; then
  awk 'NF == 1 { print $1, "text is empty" }' "$tmp/text" >> "$tmp/drop_reasons"
fi

# Keep what every file has, minus the dropped; report the rest by reason.
for f in "${files[@]}"; do awk 'NF { print $1 }' "$tmp/$f"; done | sort | uniq -c |
  awk -v n="${#files[@]}" '{ print $2 > (($1 == n) ? "'"$tmp/common"'" : "'"$tmp/partial"'") }'
touch "$tmp/common" "$tmp/partial"
"$utils/filter_scp.pl" --exclude "$tmp/drop_reasons" "$tmp/common" > "$tmp/keep"
n_all=$(( $(wc -l < "$tmp/common") + $(wc -l < "$tmp/partial") ))
n_keep=$(wc -l < "$tmp/keep")
if [ "$n_keep" -eq 0 ]; then
  echo "$prog: every utterance of $data would be removed (they are in no file together); nothing changed." \
       "Check that the files use the same utterance ids." >&2
  exit 1
fi
if [ "$n_keep" -lt "$n_all" ]; then
  echo "$prog: $data: removed $((n_all - n_keep)) of $n_all utterances, kept $n_keep:"
  for f in "${files[@]}"; do
    "$utils/filter_scp.pl" --exclude "$tmp/$f" "$tmp/partial" > "$tmp/missing"
    [ -s "$tmp/missing" ] && echo "  $(wc -l < "$tmp/missing") missing from $f, first '$(head -n 1 "$tmp/missing")'"
  done
  "$utils/filter_scp.pl" "$tmp/common" "$tmp/drop_reasons" | cut -d' ' -f2- | sort | uniq -c |
    while read -r count reason; do
      echo "  $count dropped: $reason, first '$(grep " $reason\$" "$tmp/drop_reasons" | head -n 1 | cut -d' ' -f1)'"
    done
fi

for f in "${files[@]}"; do
  "$utils/filter_scp.pl" "$tmp/keep" "$tmp/$f" > "$tmp/$f.kept" && mv "$tmp/$f.kept" "$tmp/$f"
done
"$utils/utt2spk_to_spk2utt.pl" "$tmp/utt2spk" | sort -s -k1,1 > "$tmp/spk2utt"
outputs=("${files[@]}" spk2utt)
if [ -f "$data/spk2gender" ]; then
  clean "$data/spk2gender" | "$utils/filter_scp.pl" "$tmp/spk2utt" > "$tmp/spk2gender"
  outputs+=(spk2gender)
fi

changed=()
for f in "${outputs[@]}"; do
  if ! cmp -s "$tmp/$f" "$data/$f"; then
    mkdir -p "$data/.backup"
    [ -f "$data/$f" ] && cp -p "$data/$f" "$data/.backup/$f"
    mv "$tmp/$f" "$data/$f"
    changed+=("$f")
  fi
done
if [ "${#changed[@]}" -gt 0 ]; then
  echo "$prog: $data: rewrote ${changed[*]} (originals in $data/.backup/)"
else
  echo "$prog: $data: nothing to fix"
fi

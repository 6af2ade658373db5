# Command-line option parser for recipe scripts; source it after setting defaults:
#
#     nj=4; use_gpu=false; help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#
# Then `--nj 8` or `--nj=8` sets nj=8 (dashes become underscores). Only variables that already exist can be
# set, so a typo is an error instead of a silently ignored option. A variable whose default is true/false only
# takes true/false. `--config FILE` sources FILE (lines like `nj=8`) before any other option is applied, so
# command-line options win over the file. `--help`/`-h` prints $help_message, or the calling script's header
# comment block, and exits 0. Parsing stops at the first argument not starting with `--` (or after `--`);
# the positional arguments are left in "$@".

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run directly instead of sourced: show the header above.
  awk '/^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  case "${1:-}" in --help|-h) exit 0 ;; esac
  echo "parse_options.sh: this file is sourced by scripts (. utils/parse_options.sh), not run" >&2
  exit 1
fi

__po_print_help() {
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message"
    return
  fi
  # The header comment block of the calling script: the leading '#' lines after the shebang.
  awk 'NR == 1 && /^#!/ { next }
       /^#/ { sub(/^# ?/, ""); print; seen = 1; next }
       /^[ \t]*$/ && !seen { next }
       { exit }' "$0"
}

# Pass 1: find --help and --config without touching anything, so that config files are sourced before any
# command-line option is applied, whatever their position.
__po_configs=()
__po_i=1
while [ "$__po_i" -le "$#" ]; do
  __po_arg=${!__po_i}
  case "$__po_arg" in
    --help|-h) __po_print_help; exit 0 ;;
    --) break ;;
    --config=*) __po_configs+=("${__po_arg#--config=}"); __po_i=$((__po_i + 1)) ;;
    --config)
      __po_i=$((__po_i + 1))
      if [ "$__po_i" -gt "$#" ]; then
        echo "$0: option --config needs a value (a file of name=value lines)" >&2; exit 1
      fi
      __po_configs+=("${!__po_i}"); __po_i=$((__po_i + 1)) ;;
    --*=*) __po_i=$((__po_i + 1)) ;;
    --*) __po_i=$((__po_i + 2)) ;;
    *) break ;;
  esac
done
for __po_file in "${__po_configs[@]}"; do
  if [ ! -r "$__po_file" ]; then
    echo "$0: cannot read config file '$__po_file' (given with --config)" >&2; exit 1
  fi
  # shellcheck disable=SC1090
  . "$__po_file" || { echo "$0: error while sourcing config file '$__po_file'" >&2; exit 1; }
done

# Pass 2: apply the options.
while [ "$#" -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --config=*) shift; continue ;;
    --config) shift 2; continue ;;
    --*=*) __po_opt=${1%%=*}; __po_val=${1#*=}; shift ;;
    --*)
      __po_opt=$1
      if [ "$#" -lt 2 ]; then
        echo "$0: option $__po_opt needs a value" >&2; exit 1
      fi
      __po_val=$2; shift 2 ;;
    *) break ;;
  esac
  __po_name=${__po_opt#--}
  __po_name=${__po_name//-/_}
  if ! [[ "$__po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_name+set}" ]; then
    echo "$0: unknown option $__po_opt (see $0 --help)" >&2; exit 1
  fi
  __po_old=${!__po_name}
  if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
    if [ "$__po_val" != true ] && [ "$__po_val" != false ]; then
      echo "$0: option $__po_opt takes true or false, got '$__po_val'" >&2; exit 1
    fi
  fi
  printf -v "$__po_name" '%s' "$__po_val"
done

unset __po_configs __po_i __po_arg __po_file __po_opt __po_val __po_name __po_old
unset -f __po_print_help
true

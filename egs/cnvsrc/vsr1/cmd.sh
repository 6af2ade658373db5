# Job launchers (Kaldi form: $cmd JOB=1:N exp/log/x.JOB.log command ...).
#   local: utils/run.pl runs jobs in parallel on this machine (default)
#   slurm: utils/slurm.pl submits Slurm job arrays; edit conf/slurm.conf for partitions/time limits
cmd_backend=${cmd_backend:-local}

if [ "$cmd_backend" = local ]; then
  export train_cmd="run.pl"
  export cuda_cmd="run.pl"
  export decode_cmd="run.pl"
elif [ "$cmd_backend" = slurm ]; then
  export train_cmd="slurm.pl --config conf/slurm.conf"
  export cuda_cmd="slurm.pl --config conf/slurm.conf --gpu 1"
  export decode_cmd="slurm.pl --config conf/slurm.conf"
else
  echo "cmd.sh: unknown cmd_backend=$cmd_backend (local|slurm)" >&2
  return 1 2>/dev/null || exit 1
fi

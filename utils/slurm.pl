#!/usr/bin/env perl
# Run a command, or an array of jobs, as a Slurm job array; the cluster backend of `cmd` in cmd.sh.
#
# Usage: slurm.pl [options] [JOB=1:N] <log-file> <command> [<args>...]
#   e.g. slurm.pl --config conf/slurm.conf --gpu 1 --mem 8G JOB=1:8 exp/log/decode.JOB.log python -m x JOB
#
# Same calling form and log format as run.pl. Writes a submission script to <log-dir>/q/<name>.sh, submits
# it with `sbatch --wait --array=1-N`, waits for all tasks, then reads the exit code each task wrote to
# <log-dir>/q/<name>.<id>.rc and exits 1 if any task failed or never ran, naming the failed logs on stderr.
# Each task cd's to the current directory and sources ./path.sh if it exists.
#
# Options (a value is given as `--mem 4G` or `--mem=4G`):
#   --mem M            memory per job            -> --mem=M
#   --gpu N            GPUs per job (0: none)     -> --gres=gpu:N
#   --num-threads N    CPUs per job               -> --cpus-per-task=N
#   --time T           time limit                 -> --time=T
#   --partition P      partition                  -> --partition=P
#   --max-jobs-run N   at most N tasks at once    -> --array=1-N%M
#   --config FILE      Kaldi slurm.conf-style rules, replacing the built-in rules above line by line:
#                        command sbatch --export=ALL        (submit command and fixed arguments)
#                        option NAME=VALUE ARGS...          (arguments for one exact value)
#                        option NAME=* ARGS with $0         (any other value; $0 is the value)
#                        default NAME=VALUE                 (value used when the option is not given)
#                      any --NAME a rule exists for is accepted (e.g. --account with `option account=*`).
#   --dry-run          write the script and print the sbatch command instead of running it
#                      (also when the environment has SLURM_PL_DRY_RUN=1)
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use POSIX qw(strftime);

my $prog = "slurm.pl";
$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

# Prints the header comment above: to stdout and exit 0 for --help, to stderr and exit 1 for wrong arguments.
sub usage {
    my ($rc) = @_;
    open(my $fh, "<", $0) or die "$prog: cannot read $0\n";
    my $out = $rc ? \*STDERR : \*STDOUT;
    <$fh>;
    while (my $line = <$fh>) {
        last unless $line =~ s/^# ?//;
        print $out $line;
    }
    exit $rc;
}

sub shell_quote {
    my ($s) = @_;
    return $s if $s =~ m{^[\w./:=%+,@-]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

# Same joining rule as run.pl: one argument is a script, several are words (whitespace ones quoted).
sub shell_command {
    my @args = @_;
    return $args[0] if @args == 1;
    return join(" ", map { /^\S+$/ ? $_ : shell_quote($_) } @args);
}

# Rules: "command" -> [words]; "NAME=VALUE" and "NAME=*" -> [words]; defaults NAME -> VALUE.
my @command = qw(sbatch --export=ALL);
my %rule = (
    "mem=*" => ['--mem=$0'], "mem=0" => [],
    "gpu=*" => ['--gres=gpu:$0'], "gpu=0" => [],
    "num_threads=*" => ['--cpus-per-task=$0'],
    "time=*" => ['--time=$0'],
    "partition=*" => ['--partition=$0'],
);
my %default;

sub read_config {
    my ($file) = @_;
    open(my $fh, "<", $file) or die "$prog: cannot read config $file: $!\n";
    while (my $line = <$fh>) {
        $line =~ s/#.*//;
        my @w = split(" ", $line);
        next unless @w;
        my $kind = shift @w;
        if ($kind eq "command") {
            @w or die "$prog: $file line $.: 'command' needs the submit command\n";
            @command = @w;
        } elsif ($kind eq "option" && @w && $w[0] =~ /^(\w+)=(\S+)$/) {
            shift @w;
            $rule{"$1=$2"} = [@w];
        } elsif ($kind eq "default" && @w == 1 && $w[0] =~ /^(\w+)=(\S+)$/) {
            $default{$1} = $2;
        } else {
            die "$prog: $file line $.: cannot parse '$line' (expected command/option/default lines)\n";
        }
    }
}

my %given;
my ($max_jobs_run, $num_threads) = (0, 1);
my $dry_run = ($ENV{SLURM_PL_DRY_RUN} // "") =~ /^(1|true|yes)$/;
while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    usage(0) if $opt eq "--help" || $opt eq "-h";
    if ($opt eq "--dry-run") { $dry_run = 1; next; }
    my $val;
    if ($opt =~ /^(--[^=]+)=(.*)$/s) { ($opt, $val) = ($1, $2); }
    else {
        @ARGV or die "$prog: option $opt needs a value\n";
        $val = shift @ARGV;
    }
    (my $name = $opt) =~ s/^--?//;
    $name =~ tr/-/_/;
    $name =~ /^\w+$/ or die "$prog: bad option $opt\n";
    if ($name eq "config") { read_config($val); next; }
    if ($name eq "max_jobs_run") {
        $val =~ /^\d+$/ && $val > 0 or die "$prog: --max-jobs-run needs a positive integer, got '$val'\n";
        $max_jobs_run = $val;
        next;
    }
    if ($name eq "num_threads") {
        $val =~ /^\d+$/ && $val > 0 or die "$prog: --num-threads needs a positive integer, got '$val'\n";
        $num_threads = $val;
    }
    $given{$name} = $val;
}

my ($jobname, $first, $last) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
    ($jobname, $first, $last) = ($1, $2, defined $3 ? $3 : $2);
    shift @ARGV;
    $first <= $last or die "$prog: empty job range $jobname=$first:$last\n";
} elsif (@ARGV && $ARGV[0] =~ /^\w+=/) {
    die "$prog: cannot parse job range '$ARGV[0]'; expected e.g. JOB=1:4\n";
}
usage(1) if @ARGV < 2;
my $logpat = shift @ARGV;
if (defined $jobname && $last > $first && index($logpat, $jobname) < 0) {
    my $n = $last - $first + 1;
    die "$prog: $n jobs would all write to one log '$logpat'; put $jobname in the log name\n";
}
my $cmdpat = shell_command(@ARGV);

# Sbatch arguments from the options (given or defaulted) and the rules.
my @opt_args;
my %value = (%default, %given);
for my $name (sort keys %value) {
    my $val = $value{$name};
    my $words = $rule{"$name=$val"} // $rule{"$name=*"};
    defined $words or die "$prog: no rule for option --$name in the config; add a line 'option $name=* ...'\n";
    push @opt_args, map { (my $w = $_) =~ s/\$0/$val/g; $w } @$words;
}

# The q/ directory sits beside the logs (above any directory named after the job variable).
my $logdir = dirname($logpat);
if (defined $jobname && index($logdir, $jobname) >= 0) {
    my @parts = split m{/}, $logdir;
    my @keep;
    for my $p (@parts) { last if index($p, $jobname) >= 0; push @keep, $p; }
    $logdir = @keep ? join("/", @keep) : ".";
    $logdir = "/" if $logdir eq "";
}
my $qdir = "$logdir/q";
my $base = basename($logpat);
$base =~ s/\.?\Q$jobname\E//g if defined $jobname;
$base =~ s/\.log$//;
$base = "job" if $base eq "";
make_path($qdir, { error => \my $err });
die "$prog: cannot create $qdir\n" if @$err;
my $script = "$qdir/$base.sh";

my $array = "$first-$last" . ($max_jobs_run ? "%$max_jobs_run" : "");
my @sbatch = (@command, "--job-name=$base", "--output=$qdir/$base.%a.out", @opt_args,
              "--array=$array", "--wait", $script);
my $sbatch_line = join(" ", map { shell_quote($_) } @sbatch);

my $jobvar = defined $jobname ? $jobname : "JOB";
my $now = strftime("%Y-%m-%d %H:%M:%S", localtime);
my $q_cmd = shell_quote($cmdpat);
my $q_log = shell_quote($logpat);
my $q_rc = shell_quote("$qdir/$base.") . '"$JOB"' . ".rc";
my $q_cwd = shell_quote(getcwd());
my $subst = defined $jobname ? "cmd=\${cmd//$jobname/\$JOB}\nlog=\${log//$jobname/\$JOB}\n" : "";
open(my $fh, ">", $script) or die "$prog: cannot write $script: $!\n";
print $fh <<"EOF";
#!/usr/bin/env bash
# Generated by slurm.pl at $now; one task of the array per job ($jobvar=$first:$last).
# Submitted with: $sbatch_line
cd $q_cwd || exit 1
[ -f ./path.sh ] && . ./path.sh
JOB=\${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
cmd=$q_cmd
log=$q_log
${subst}rcfile=$q_rc
mkdir -p "\$(dirname "\$log")" || { echo 1 > "\$rcfile"; exit 1; }
{ printf '# %s \\n' "\$cmd"; echo "# Started at \$(date) on \$(hostname)"; echo "#"; } > "\$log"
start=\$(date +%s)
bash -c "\$cmd" < /dev/null >> "\$log" 2>&1
rc=\$?
elapsed=\$((\$(date +%s) - start))
echo "# Accounting: time=\$elapsed threads=$num_threads" >> "\$log"
echo "# Ended (code \$rc) at \$(date), elapsed time \$elapsed seconds" >> "\$log"
echo "\$rc" > "\$rcfile"
exit "\$rc"
EOF
close $fh;
chmod 0755, $script;

if ($dry_run) {
    print "$sbatch_line\n";
    exit 0;
}

my @ids = ($first .. $last);
sub rcfile { return "$qdir/$base.$_[0].rc"; }
unlink map { rcfile($_) } @ids;    # stale codes from an earlier run must not count

# Read sbatch's output as it comes so that Ctrl-C can cancel the submitted job.
my $jobid;
$SIG{INT} = $SIG{TERM} = sub {
    system("scancel", $jobid) if defined $jobid;
    print STDERR "$prog: interrupted" . (defined $jobid ? "; cancelled Slurm job $jobid\n" : "\n");
    exit 1;
};
# sbatch's stderr goes to a file as well, so that a refused submission's reason ends up in our one-line error.
my $errfile = "$qdir/$base.sbatch.err";
open(my $saved_err, ">&", \*STDERR) or die "$prog: cannot dup stderr\n";
open(STDERR, ">", $errfile) or die "$prog: cannot write $errfile: $!\n";
my $sb_ok = open(my $sb, "-|", @sbatch);
my $open_err = $!;
open(STDERR, ">&", $saved_err) or die "$prog: cannot restore stderr\n";
$sb_ok or die "$prog: cannot run $command[0]: $open_err\n";
while (my $line = <$sb>) {
    $jobid //= $1 if $line =~ /Submitted batch job (\d+)/ || $line =~ /^(\d+)(?:;|$)/;
}
close $sb;
my $sbatch_status = $? >> 8;
my $sbatch_err = "";
if (open(my $ef, "<", $errfile)) { local $/; $sbatch_err = <$ef> // ""; close $ef; }
unlink $errfile;
print STDERR $sbatch_err;
print STDERR "$prog: Slurm job $jobid ($logpat) finished\n" if defined $jobid;

my (@failed, @never_ran);
for my $id (@ids) {
    my $rcf = rcfile($id);
    my $log = defined $jobname ? do { (my $l = $logpat) =~ s/\Q$jobname\E/$id/g; $l } : $logpat;
    if (!-f $rcf) { push @failed, $log; push @never_ran, $id; next; }
    open(my $r, "<", $rcf) or die "$prog: cannot read $rcf\n";
    my $code = <$r> // "";
    chomp $code;
    push @failed, $log if $code ne "0";
}
if (@never_ran == @ids && $sbatch_status != 0) {
    my @why = grep { /\S/ } split /\n/, $sbatch_err;
    my ($reason) = reverse(grep { /error/i } @why);
    $reason //= $why[-1] // "no message";
    $reason =~ s/^\s*\S*sbatch: (?:error: )?//;
    die "$prog: submission failed ($command[0] exit code $sbatch_status: $reason): $sbatch_line\n";
}
if (@failed) {
    my ($n, $total) = (scalar @failed, scalar @ids);
    print STDERR "$prog: $n / $total failed, log(s): @failed\n";
    print STDERR "$prog: task(s) @never_ran never reported an exit code (killed, timed out or not started);"
        . " see $qdir/$base.<id>.out\n" if @never_ran;
    exit 1;
}
exit 0;

#!/usr/bin/env perl
# Run a command, or an array of jobs, on this machine; the local backend of `cmd` in cmd.sh.
#
# Usage: run.pl [options] [JOB=1:N] <log-file> <command> [<args>...]
#   e.g. run.pl --max-jobs-run 4 JOB=1:8 exp/log/decode.JOB.log python -m x --part JOB
#
# The name before '=' (JOB here; any name works, e.g. SPLIT) is replaced by the job number everywhere in the
# log name and the command. N=1 jobs may also be written JOB=3 (only job 3). Each job's log gets the command
# and start time as a header, then the job's stdout+stderr, then "# Accounting: time=<s> threads=<n>" and
# "# Ended (code <rc>) at <date>, elapsed time <s> seconds".
# The command runs through bash: one argument is run as a script (`run.pl x.log 'a | b > c'`); several
# arguments are joined Kaldi-style, arguments without whitespace as they are (so '|' and '>' act as shell
# syntax) and arguments with whitespace quoted so they stay one word.
# Exits 1 if any job failed, naming the failed logs on stderr.
#
# Options:
#   --max-jobs-run N   run at most N jobs at once (default: all of them)
#   --num-threads N    threads per job; recorded in the log (default 1)
#   --mem M, --gpu N, --time T, --partition P, --config F
#                      accepted for compatibility with slurm.pl and ignored here
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(strftime);

my $prog = "run.pl";
# Errors exit 1 (not Perl's 255), as every Kaldi-style tool does; dies inside eval are left to the eval.
$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

# Prints the header comment above: to stdout and exit 0 for --help, to stderr and exit 1 for wrong arguments.
sub usage {
    my ($rc) = @_;
    open(my $fh, "<", $0) or die "$prog: cannot read $0\n";
    my $out = $rc ? \*STDERR : \*STDOUT;
    <$fh>;    # shebang
    while (my $line = <$fh>) {
        last unless $line =~ s/^# ?//;
        print $out $line;
    }
    exit $rc;
}

my %ignored = map { $_ => 1 } qw(--mem --gpu --time --partition --config);
my ($max_jobs_run, $num_threads) = (0, 1);
while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    if ($opt eq "--help" || $opt eq "-h") { usage(0); }
    my $val;
    if ($opt =~ /^(--[^=]+)=(.*)$/s) { ($opt, $val) = ($1, $2); }
    else {
        @ARGV or die "$prog: option $opt needs a value\n";
        $val = shift @ARGV;
    }
    (my $name = $opt) =~ tr/_/-/;    # ESPnet scripts write --num_threads, Kaldi ones --num-threads
    $opt = $name;
    if ($opt eq "--max-jobs-run") {
        $val =~ /^\d+$/ && $val > 0 or die "$prog: --max-jobs-run needs a positive integer, got '$val'\n";
        $max_jobs_run = $val;
    } elsif ($opt eq "--num-threads") {
        $val =~ /^\d+$/ && $val > 0 or die "$prog: --num-threads needs a positive integer, got '$val'\n";
        $num_threads = $val;
    } elsif (!$ignored{$opt}) {
        die "$prog: unknown option $opt (see $prog --help)\n";
    }
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

sub shell_command {
    my @args = @_;
    return $args[0] if @args == 1;
    my @words;
    for my $a (@args) {
        if ($a =~ /^\S+$/) { push @words, $a; }
        else { (my $q = $a) =~ s/'/'\\''/g; push @words, "'$q'"; }
    }
    return join(" ", @words);
}

sub subst {
    my ($s, $id) = @_;
    $s =~ s/\Q$jobname\E/$id/g if defined $jobname;
    return $s;
}

sub now { return strftime("%a %b %e %H:%M:%S %Z %Y", localtime); }

# Runs in a forked child: the job's whole life, log header and footer included.
sub run_job {
    my ($id) = @_;
    my $log = subst($logpat, $id);
    my $cmd = subst($cmdpat, $id);
    make_path(dirname($log), { error => \my $err });
    die "$prog: cannot create the directory of log $log\n" if @$err;
    open(my $fh, ">", $log) or die "$prog: cannot write log $log: $!\n";
    print $fh "# $cmd \n# Started at " . now() . "\n#\n";
    close $fh;
    my $start = time();
    my $pid = fork();
    die "$prog: fork failed: $!\n" unless defined $pid;
    if ($pid == 0) {
        open(STDIN, "<", "/dev/null");
        open(STDOUT, ">>", $log) or die "$prog: cannot append to $log: $!\n";
        open(STDERR, ">&", \*STDOUT);
        exec("bash", "-c", $cmd) or die "$prog: cannot run bash: $!\n";
    }
    waitpid($pid, 0);
    my $status = $?;
    my $code = $status & 127 ? 128 + ($status & 127) : $status >> 8;
    my $elapsed = time() - $start;
    open($fh, ">>", $log) or die "$prog: cannot append to $log: $!\n";
    print $fh "# Accounting: time=$elapsed threads=$num_threads\n";
    print $fh "# Ended (code $code) at " . now() . ", elapsed time $elapsed seconds\n";
    close $fh;
    return $code;
}

my @ids = ($first .. $last);
$max_jobs_run = @ids if !$max_jobs_run || $max_jobs_run > @ids;
my (%running, %code);
my $next = 0;
while ($next < @ids || %running) {
    while ($next < @ids && keys(%running) < $max_jobs_run) {
        my $id = $ids[$next++];
        my $pid = fork();
        die "$prog: fork failed: $!\n" unless defined $pid;
        if ($pid == 0) {
            my $code = eval { run_job($id) };
            if (!defined $code) { print STDERR $@; $code = 1; }
            exit($code > 255 ? 255 : $code);
        }
        $running{$pid} = $id;
    }
    my $pid = waitpid(-1, 0);
    last if $pid < 0;
    next unless exists $running{$pid};
    $code{ delete $running{$pid} } = $? >> 8 || ($? & 127 ? 1 : 0);
}

my @failed = grep { $code{$_} } @ids;
if (@failed) {
    my $n = @failed;
    my $total = @ids;
    print STDERR "$prog: $n / $total failed, log(s): " . join(" ", map { subst($logpat, $_) } @failed) . "\n";
    exit 1;
}
exit 0;

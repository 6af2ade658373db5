#!/usr/bin/env perl
# Split a Kaldi key-value file into N contiguous, near-equal parts.
#
# Usage: split_scp.pl [--utt2spk=<utt2spk>] <in.scp> <out1.scp> <out2.scp> ... <outN.scp>
#   e.g. split_scp.pl data/train/video.scp data/train/split2/1/video.scp data/train/split2/2/video.scp
#
# Without --utt2spk the first (lines mod N) parts get one line more than the others. With --utt2spk
# every speaker's lines go to one part (the input must list each speaker's lines together, as a sorted data
# dir does) and part sizes are balanced as well as whole speakers allow. Refuses to make an empty part:
# more outputs than lines (or than speakers) is an error. Parent directories of the outputs are created.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);

my $prog = "split_scp.pl";
$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

sub usage {
    my ($rc) = @_;
    open(my $fh, "<", $0) or die "$prog: cannot read $0\n";
    my $out = $rc ? \*STDERR : \*STDOUT;
    <$fh>;
    while (my $line = <$fh>) { last unless $line =~ s/^# ?//; print $out $line; }
    exit $rc;
}

my $utt2spk_file;
while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    usage(0) if $opt eq "--help" || $opt eq "-h";
    if ($opt =~ /^--utt2spk=(.+)$/) { $utt2spk_file = $1; }
    elsif ($opt eq "--utt2spk" && @ARGV) { $utt2spk_file = shift @ARGV; }
    else { print STDERR "$prog: unknown option $opt\n"; usage(1); }
}
usage(1) if @ARGV < 2;
my ($in, @outs) = @ARGV;
my $n = @outs;

open(my $fh, "<", $in) or die "$prog: cannot read $in: $!\n";
my @lines = grep { /\S/ } <$fh>;
close $fh;
$_ .= "\n" for grep { !/\n$/ } @lines;
my $nl = @lines;
die "$prog: refusing to split $in ($nl lines) into $n parts: a part would be empty\n" if $n > $nl;

# @sizes: number of lines each output gets, in order.
my @sizes;
if (!defined $utt2spk_file) {
    my ($q, $r) = (int($nl / $n), $nl % $n);
    @sizes = map { $q + ($_ < $r ? 1 : 0) } 0 .. $n - 1;
} else {
    open(my $u, "<", $utt2spk_file) or die "$prog: cannot read $utt2spk_file: $!\n";
    my %spk_of;
    while (<$u>) { my ($utt, $spk) = split; $spk_of{$utt} = $spk if defined $spk; }
    close $u;
    # Runs of equal speaker: @count[i] lines for the i-th speaker.
    my (@count, %seen);
    my $prev;
    for my $i (0 .. $#lines) {
        my ($key) = split(" ", $lines[$i]);
        my $spk = $spk_of{$key};
        defined $spk or die "$prog: utterance '$key' of $in is not in $utt2spk_file\n";
        if (defined $prev && $spk eq $prev) { $count[-1]++; next; }
        die "$prog: speaker '$spk' is not contiguous in $in (at '$key'); sort it (utils/fix_data_dir.sh)\n"
            if $seen{$spk}++;
        push @count, 1;
        $prev = $spk;
    }
    my $ns = @count;
    die "$prog: refusing to split $in ($ns speakers) into $n parts keeping speakers whole\n" if $n > $ns;
    # Part k ends at the speaker boundary whose cumulative line count is closest to k/n of the total,
    # leaving at least one speaker for each later part.
    my @cum = (0);
    push @cum, $cum[-1] + $_ for @count;
    my @bound = (0);
    for my $k (1 .. $n - 1) {
        my $target = $nl * $k / $n;
        my $best;
        for my $j ($bound[-1] + 1 .. $ns - ($n - $k)) {
            $best = $j if !defined $best || abs($cum[$j] - $target) < abs($cum[$best] - $target);
        }
        push @bound, $best;
    }
    push @bound, $ns;
    @sizes = map { $cum[$bound[$_ + 1]] - $cum[$bound[$_]] } 0 .. $n - 1;
}

my $pos = 0;
for my $k (0 .. $n - 1) {
    make_path(dirname($outs[$k]));
    open(my $o, ">", $outs[$k]) or die "$prog: cannot write $outs[$k]: $!\n";
    print $o @lines[$pos .. $pos + $sizes[$k] - 1];
    close $o or die "$prog: cannot write $outs[$k]: $!\n";
    $pos += $sizes[$k];
}

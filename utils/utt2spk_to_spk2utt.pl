#!/usr/bin/env perl
# Turn utt2spk lines (<utt> <spk>) into spk2utt lines (<spk> <utt1> <utt2> ...).
#
# Usage: utt2spk_to_spk2utt.pl [<utt2spk>] > <spk2utt>     (reads stdin without a file)
#
# Speakers come out in order of first appearance and utterances in input order, so a sorted utt2spk whose
# utterance ids start with the speaker id gives a sorted spk2utt.
use strict;
use warnings;

if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ /^-./)) {
    open(my $fh, "<", $0) or die;
    <$fh>;
    my $help = @ARGV == 1 && $ARGV[0] =~ /^(--help|-h)$/;
    while (my $line = <$fh>) { last unless $line =~ s/^# ?//; print { $help ? *STDOUT : *STDERR } $line; }
    exit($help ? 0 : 1);
}
my (@spks, %utts);
while (<>) {
    my @f = split;
    next unless @f;
    if (@f != 2) { print STDERR "utt2spk_to_spk2utt.pl: line $. is not '<utt> <spk>': $_"; exit 1; }
    push @spks, $f[1] unless exists $utts{ $f[1] };
    push @{ $utts{ $f[1] } }, $f[0];
}
print join(" ", $_, @{ $utts{$_} }), "\n" for @spks;

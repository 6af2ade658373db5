#!/usr/bin/env perl
# Turn spk2utt lines (<spk> <utt1> <utt2> ...) into utt2spk lines (<utt> <spk>), in input order.
#
# Usage: spk2utt_to_utt2spk.pl [<spk2utt>] > <utt2spk>     (reads stdin without a file)
use strict;
use warnings;

if (@ARGV > 1 || (@ARGV && $ARGV[0] =~ /^-./)) {
    open(my $fh, "<", $0) or die;
    <$fh>;
    my $help = @ARGV == 1 && $ARGV[0] =~ /^(--help|-h)$/;
    while (my $line = <$fh>) { last unless $line =~ s/^# ?//; print { $help ? *STDOUT : *STDERR } $line; }
    exit($help ? 0 : 1);
}
while (<>) {
    my ($spk, @utts) = split;
    next unless defined $spk;
    print "$_ $spk\n" for @utts;
}

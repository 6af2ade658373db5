#!/usr/bin/env perl
# Keep (or, with --exclude, drop) the lines of a Kaldi file whose key is listed in an id list.
#
# Usage: filter_scp.pl [--exclude] [-f <field>] <id-list> [<in.scp>] > <out.scp>
#   e.g. filter_scp.pl data/dev/utt2spk data/all/text > data/dev/text
#
# The ids are the first field of each line of <id-list>. -f N compares field N of <in.scp> (default 1)
# instead of the key. Reads stdin without <in.scp>; output keeps the input order.
use strict;
use warnings;

sub usage {
    my ($rc) = @_;
    open(my $fh, "<", $0) or die;
    <$fh>;
    while (my $line = <$fh>) { last unless $line =~ s/^# ?//; print { $rc ? *STDERR : *STDOUT } $line; }
    exit $rc;
}
my ($exclude, $field) = (0, 1);
while (@ARGV && $ARGV[0] =~ /^-./) {
    my $opt = shift @ARGV;
    if ($opt eq "--help" || $opt eq "-h") { usage(0); }
    elsif ($opt eq "--exclude") { $exclude = 1; }
    elsif ($opt eq "-f" && @ARGV && $ARGV[0] =~ /^[1-9]\d*$/) { $field = shift @ARGV; }
    else { print STDERR "filter_scp.pl: bad option $opt\n"; usage(1); }
}
usage(1) if @ARGV < 1 || @ARGV > 2;
my $list = shift @ARGV;
open(my $fh, "<", $list) or do { print STDERR "filter_scp.pl: cannot read $list: $!\n"; exit 1; };
my %keep;
while (<$fh>) { my ($id) = split; $keep{$id} = 1 if defined $id; }
close $fh;
while (<>) {
    my @f = split;
    next unless @f;
    my $hit = defined $f[$field - 1] && $keep{ $f[$field - 1] };
    print if $exclude ? !$hit : $hit;
}

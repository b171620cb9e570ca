# t/stress/scale.t (`make stress`: 10,000 organizations) with 500, for every run of the tests: load, resume spread
# over time, quiet retries, a reload and a kill -9 with commands answered throughout, QUIT.
use strict;
use warnings;
$ENV{WA_SCALE_ORGS} ||= 500;
do './t/stress/scale.t';
die $@ if $@;

#!/usr/bin/env perl
# Benchmark (not a test) of linking, against t/wa-sim on this machine:
#   - helper RSS with 0, 1, 100 and 1,000 linked idle organizations (VmRSS from /proc)
#   - time to link 100 organizations at once by QR (start-session, /api/qr, the simulator's /scan)
#   - time to relink 1,000 organizations after an nginx restart (credentials imported, not scanned)
#   - the helper's longest event-loop stall (GET /api/health loop_lag_max_ms) during those
# Prints a Markdown table and writes bench/out/link.md.   ORGS=1000 LINK=100 perl bench/link.pl
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../t/lib";
use Time::HiRes qw(time sleep);
use POSIX ();
use WaTest qw(wait_until);

my $ORGS = $ENV{ORGS} || 1000;
my $LINK = $ENV{LINK} || 100;
my $root = "$Bin/..";
my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
my $conf = "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n    whatsapp_max_sessions " . ($ORGS + 100) . ";";
$t->write_conf(http => $conf, zone => 'whatsapp_zone wa 64m;', connections => $ORGS + 400, level => 'notice');
$t->start;

sub rss_kib {
    my ($pid) = $t->helper_pids;
    open(my $f, '<', "/proc/$pid/status") or return 0;
    while (<$f>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}
sub connected {
    my $h = $t->health;
    return $h->{sessions}{connected} // 0;
}
sub lag { my $h = $t->health; return $h->{helper}{loop_lag_max_ms} // 'n/a' }

my %r;
$r{rss0} = rss_kib();

# ---- link LINK at once by QR
my $t0 = time;
$t->api(POST => '/api/start-session', body => { organization_id => "q$_" }) for 1 .. $LINK;
my %qr;
wait_until(sub {
    for my $i (1 .. $LINK) {
        next if $qr{$i};
        my (undef, undef, $q) = $t->api(GET => "/api/qr/q$i");
        $qr{$i} = $q->{qr_text} if $q && $q->{success};
    }
    keys(%qr) == $LINK;
}, 60);
# 100 phones scanning at once: the scans go to the simulator from 10 processes in parallel.
my @kids;
for my $k (0 .. 9) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        for (my $i = 1 + $k; $i <= $LINK; $i += 10) { $sim->control(POST => '/scan', body => { qr => $qr{$i}, phone => 573200000000 + $i }, timeout => 60) }
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
wait_until(sub { connected() >= $LINK }, 120) or die "only " . connected() . " linked";
$r{link_s} = time - $t0;
$r{link_lag} = lag();
sleep 2;
$r{rss_link} = rss_kib();

# ---- import the rest, restart, relink all
my $more = $ORGS - $LINK;
$t->quit;
system("$root/build/tools/wa_import gen $t->{state_dir} imp $more 573300000000 > $t->{dir}/import.json") == 0 or die "wa_import gen";
my ($st, undef, $res) = $sim->control(POST => '/accounts/import', body => WaTest::json_dec(WaTest::slurp("$t->{dir}/import.json")), timeout => 600);
die "import: $st" unless $st == 200;
WaTest::spew("$t->{dir}/import.out.json", WaTest::json_enc($res));
system("$root/build/tools/wa_import finish $t->{state_dir} $t->{dir}/import.out.json") == 0 or die "wa_import finish";
my $t1 = time;
$t->start;
wait_until(sub { connected() >= $ORGS }, 300) or die "only " . connected() . " logged in";
$r{first_s} = time - $t1;    # includes generating and uploading 812 prekeys for each imported organization
$r{first_lag} = lag();
sleep 3;
$t->quit;
my $t2 = time;
$t->start;
wait_until(sub { connected() >= $ORGS }, 300) or die "only " . connected() . " relinked";
$r{relink_s} = time - $t2;
$r{relink_lag} = lag();
sleep 3;
$r{rss_all} = rss_kib();
$t->stop;

my $per = ($r{rss_all} - $r{rss0}) / $ORGS;
my $md = sprintf(<<'MD', $LINK, $r{link_s}, $r{link_lag}, $more, $r{first_s}, $r{first_lag}, $ORGS, $r{relink_s}, $r{relink_lag}, $r{rss0}, $LINK, $r{rss_link}, $ORGS, $r{rss_all}, $per);
| what | figure |
|---|---|
| link %d organizations at once (QR, scan, 515, login, 812 prekeys each) | %.2f s (longest event-loop stall %s ms) |
| first login of %d imported organizations (812 prekeys generated and uploaded each) | %.2f s (longest stall %s ms) |
| relink %d linked organizations after an nginx restart | %.2f s (longest event-loop stall %s ms) |
| helper RSS, no organization | %d KiB |
| helper RSS, %d linked idle | %d KiB |
| helper RSS, %d linked idle | %d KiB (%.0f KiB per organization) |
MD
print $md;
mkdir "$root/bench/out";
WaTest::spew("$root/bench/out/link.md", $md);
Test::More::done_testing();

# 50 organizations linked at once, each independent; linked sessions survive 20 reloads and a kill -9 of the
# helper with no conflict and never two connections for one device.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);

my $N = $ENV{WA_LINK_ORGS} || 50;
my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_reconnect_backoff 1s 2s;", zone => 'whatsapp_zone wa 4m;');
$t->start;

sub count_state {
    my ($want) = @_;
    return scalar grep { ($t->status("m$_")->{status} // '') eq $want } 1 .. $N;
}

# ---------------------------------------------------------------------------------------------- link 50 at once
my $t0 = time;
$t->api(POST => '/api/start-session', body => { organization_id => "m$_" }) for 1 .. $N;
my %qr;
wait_until(sub {
    for my $i (1 .. $N) {
        next if $qr{$i};
        my (undef, undef, $q) = $t->api(GET => "/api/qr/m$i");
        $qr{$i} = $q->{qr_text} if $q && $q->{success};
    }
    keys(%qr) == $N;
}, 30);
is(scalar keys %qr, $N, sprintf('%d QR codes in %.2f s', $N, time - $t0));
my $t1 = time;
my $scanned = 0;
for my $i (1 .. $N) {
    my ($st) = $sim->control(POST => '/scan', body => { qr => $qr{$i}, phone => 573100000000 + $i });
    $scanned++ if $st == 200;
}
is($scanned, $N, "the phone scanned all $N");
ok(wait_until(sub { count_state('connected') == $N }, 60), sprintf('all %d connected %.2f s after the first scan', $N, time - $t1))
    or diag 'connected: ' . count_state('connected');
my $wrong = grep { ($t->status("m$_")->{phone_number} // '') ne 573100000000 + $_ } 1 .. $N;
is($wrong, 0, 'each organization has its own phone number');
my $keys = 0;
wait_until(sub { $keys = $t->db("SELECT COUNT(*) AS n FROM prekeys WHERE uploaded = 1")->[0]{n}; $keys == 812 * $N }, 20);
is($keys, 812 * $N, "812 prekeys uploaded per organization ($keys; generated in slices after the login)");

# independent: a fault on one leaves the others alone
{
    my $logins = $sim->stats->{logins};
    my ($st) = $sim->control(POST => '/devices/573100000001:1/fault', body => { type => 'stream_error', code => 503 });
    is($st, 200, 'stream error 503 on m1');
    ok(wait_until(sub { ($t->status('m1')->{status} // '') eq 'reconnecting' }, 3), 'm1 reconnecting');
    is(count_state('connected'), $N - 1, 'the other organizations stay connected');
    ok(wait_until(sub { ($t->status('m1')->{status} // '') eq 'connected' }, 6), 'm1 back');
    is($sim->stats->{logins}, $logins + 1, 'exactly one new login (m1)');
}

# ---------------------------------------------------------------------------------------------- 20 reloads
$sim->reset;
my $regs = $sim->stats->{registrations};
my $rounds = $ENV{WA_RELOADS} || 20;
my ($ok, @bad) = (0);
my $t2 = time;
for my $r (1 .. $rounds) {
    eval { $t->reload(timeout => 10) };
    if ($@) { push @bad, "round $r: $@"; next }
    if (wait_until(sub { count_state('connected') == $N }, 20)) { $ok++ } else { push @bad, "round $r: " . count_state('connected') . " connected" }
}
is($ok, $rounds, sprintf('%d reloads: all %d linked organizations connected again after each (%.1f s)', $rounds, $N, time - $t2))
    or diag join "\n", @bad;
my $s = $sim->stats;
is($s->{registrations}, $regs, 'no new registration (no QR) across the reloads');
is($s->{conflicts_sent}, 0, 'the simulator sent no conflict');
is($s->{device_max_concurrent}, 1, 'no device ever had two connections at once');

# ---------------------------------------------------------------------------------------------- kill -9
{
    my ($hp) = $t->helper_pids;
    my $t3 = time;
    kill 'KILL', $hp;
    ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 5), 'the master respawned the helper');
    ok(wait_until(sub { count_state('connected') == $N }, 20), sprintf('all %d connected again %.2f s after kill -9', $N, time - $t3));
    $s = $sim->stats;
    is($s->{conflicts_sent}, 0, 'still no conflict');
    is($s->{device_max_concurrent}, 1, 'still never two connections for one device');
}

$t->stop(allow => $WaTest::KILLED);
done_testing;

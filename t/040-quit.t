# QUIT closes the WebSockets and persists the sessions; the next start brings the wanted ones back by itself.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until alive proc_list);

my $t = WaTest->new;
my $d = $t->{dir};
my $sd = $t->{state_dir};
my $sim = WaTest::Sim->start($d);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_handshake_timeout 60s;\n    whatsapp_reconnect_backoff 1s 2s;");
$t->start;

for my $org (qw(q1 q2)) {
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => $org });
    is($st, 200, "start $org");
}
ok(wait_until(sub { $sim->stats->{ws_open} == 2 }, 5), 'two WebSockets open');
my ($st, undef, $j) = $t->api(POST => '/api/logout', body => { organization_id => 'q2' });
is($j->{status}, 'logged_out', 'q2 logged out');
ok(wait_until(sub { $sim->stats->{ws_open} == 1 }, 5), 'logout closed the WebSocket of q2');
ok(wait_until(sub { $t->status('q1')->{status} eq 'qr_ready' }, 5), 'q1 shows a QR (linked to nothing yet)');

# ---------------------------------------------------------------------------------------------- QUIT
my $master = $t->master_pid;
my @kids = ($t->worker_pids, $t->helper_pids);
is(scalar @kids, 3, 'two workers and one helper before QUIT');
my $el = $t->quit(timeout => 10);
ok(defined $el, 'nginx exited on QUIT');
cmp_ok($el // 99, '<', 4, sprintf('nginx exited within 4 s (%.2f s)', $el // 99));
ok(!alive($_), "process $_ is gone") for $master, @kids;
ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'the simulator sees ws_open drop to 0');
is($sim->stats->{ws_total}, 2, 'no reconnect during shutdown');

my $db = "$sd/whatsapp.db";
ok(-f $db, 'the store whatsapp.db exists');
is((stat $db)[2] & 07777, 0600, 'whatsapp.db mode 0600');
is((stat $sd)[2] & 07777, 0700, 'state directory mode 0700');
my $row = $t->org_row('q1');
ok($row, 'q1 has its row in the store');
is($row->{wanted}, 1, 'q1 is wanted');
my $q2 = $t->org_row('q2');
is($q2 && $q2->{wanted}, 0, 'the logged-out q2 is not wanted');
is(scalar @{ $t->db("SELECT org FROM credentials WHERE org = 'q2'") }, 0, 'the logged-out q2 has no credentials');
is(scalar @{ $t->db("SELECT org FROM prekeys WHERE org = 'q2'") }, 0, 'nor prekeys');
ok(!-e "$sd/q1" && !-e "$sd/q2", 'no per-organization directories (everything is in the store)');
like($t->error_log, qr/whatsapp helper \d+: shutting down; closed and saved \d+ sessions/, 'error.log: helper closed and saved its sessions');
$t->check_log;

# ---------------------------------------------------------------------------------------------- restart, same state
$t->start;
my $s = wait_until(sub { my $s = $t->status('q1'); ($s->{status} // 'disconnected') ne 'disconnected' ? $s : undef }, 5);
ok($s, 'q1 is running again after the restart without a start-session call');
like($s->{status}, qr/^(connecting|qr_ready)$/, 'q1 connecting again');
is($s->{retry_count}, 0, 'a restored session starts counting retries afresh');
ok(!defined $s->{last_error}, 'and carries no last_error over from the previous run');
ok(wait_until(sub { my $x = $sim->stats; $x->{ws_total} == 3 && $x->{ws_open} == 1 }, 5),
    'the simulator sees the new WebSocket (ws_total 3, ws_open 1)');
sleep 0.5;
my $x = $sim->stats;
is($x->{ws_open}, 1, 'only q1 reconnected (q2 was logged out)');
is($x->{ws_max_concurrent}, 2, 'max concurrent is still the two of the first run');
isnt($t->status('q2')->{status}, 'connecting', 'q2 not started');
my $h = $t->health;
is($h->{helper}{generation}, 1, 'fresh master: generation 1');
like($t->error_log, qr/owns the sessions \(previous owner released cleanly\)/, 'fresh start, clean');
is($t->org_row('q1')->{wanted}, 1, 'still wanted');

# ---------------------------------------------------------------------------------------------- master killed
{
    my $m = $t->master_pid;
    my @hp = $t->helper_pids;
    my @wp = $t->worker_pids;
    is(scalar @hp, 1, 'one helper before kill -9 of the master');
    my $t0 = time;
    kill 'KILL', $m;
    waitpid($m, 0);
    delete $t->{pid};
    ok(wait_until(sub { !alive($hp[0]) }, 5), 'the helper does not outlive its master');
    my $el = time - $t0;
    cmp_ok($el, '<', 3, sprintf('helper gone %.2f s after the master', $el));
    ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'its WebSocket was closed');
    is($t->org_row('q1')->{wanted}, 1, 'q1 is still wanted on disk');
    kill 'KILL', grep { alive($_) } @wp;    # plain nginx workers do not watch their master
    ok(wait_until(sub { !grep { alive($_) } @wp }, 3), 'orphaned HTTP workers cleaned up');
    $t->check_log(allow => qr/the master process is gone/);
    $t->start;
    ok(wait_until(sub { ($t->status('q1')->{status} // '') =~ /^(connecting|qr_ready)$/ && $sim->stats->{ws_open} == 1 }, 5),
        'q1 resumes after the master was killed and nginx started again');
}

# ---------------------------------------------------------------------------------------------- TERM (fast shutdown)
{
    my $m = $t->master_pid;
    my $t0 = time;
    kill 'TERM', $m;
    my $st = WaTest::wait_exit($m, 5);
    my $el = time - $t0;
    ok(defined $st, 'nginx exits on TERM');
    cmp_ok($el, '<', 2, sprintf('fast shutdown within 2 s (%.2f s)', $el));
    delete $t->{pid} if defined $st;
    ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'TERM closed the WebSocket too');
    is($t->org_row('q1')->{wanted}, 1, 'q1 still wanted after TERM');
    $t->check_log(allow => qr/the master process is gone/);
    $t->start;
    ok(wait_until(sub { ($t->status('q1')->{status} // '') =~ /^(connecting|qr_ready)$/ && $sim->stats->{ws_open} == 1 }, 5),
        'q1 resumes after a fast shutdown');
}

$t->stop(allow => qr/the master process is gone/);
ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'closed again after the second QUIT');

# ---------------------------------------------------------------------------------------------- close codes
# An exact WebSocket endpoint records the close code of every close frame: 1000 when the session ends
# (handshake timeout, logout, clear-session), 1001 "going away" when nginx shuts down.
{
    my $ctr = WaTest::WsCounter->start($d);
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server $ctr->{url};\n    whatsapp_handshake_timeout 1s;\n    whatsapp_reconnect_backoff 30s 60s;");
    $u->start;
    $u->api(POST => '/api/start-session', body => { organization_id => "c$_" }) for 1 .. 4;
    ok(wait_until(sub { $ctr->stats->{total} == 4 }, 5), 'four WebSockets');
    $u->api(POST => '/api/logout', body => { organization_id => 'c2' });
    $u->api(POST => '/api/clear-session', body => { organization_id => 'c3' });
    ok(wait_until(sub { ($ctr->stats->{close_codes}{1000} // 0) == 2 }, 2), 'logout and clear-session close with 1000')
        or diag explain $ctr->stats;
    ok(wait_until(sub { ($ctr->stats->{close_codes}{1000} // 0) == 4 }, 3),
        'the handshake timeout closes the other two with 1000') or diag explain $ctr->stats;
    # A reload with a long handshake timeout brings back the wanted sessions (c1, c4) for good, so the QUIT below
    # is what closes them however slow the machine is.
    $u->write_conf(http => "whatsapp_server $ctr->{url};\n    whatsapp_handshake_timeout 60s;\n    whatsapp_reconnect_backoff 30s 60s;");
    $u->reload;
    ok(wait_until(sub { $ctr->stats->{open} == 2 }, 5), 'c1 and c4 connected again after the reload');
    $u->stop;
    ok(wait_until(sub { $ctr->stats->{open} == 0 }, 2), 'QUIT closed them');
    is_deeply($ctr->stats->{close_codes}, { 1000 => 4, 1001 => 2 }, 'QUIT closes with 1001; nothing was just dropped');
}
done_testing;

# The helper holds one connection per session out of its worker_connections: without whatsapp_max_sessions the
# limit follows worker_connections / the open-file limit minus a reserve, /api/health says it, start-session
# beyond it answers 503 too_many_sessions, and the sessions within it all connect. A connection that cannot be
# made for lack of free connections says so (not a stale errno).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $closed = free_port();

# ---------------------------------------------------------------------------------------------- derived limit
{
    my $t = WaTest->new;
    my $ctr = WaTest::WsCounter->start($t->{dir});
    $t->write_conf(connections => 40, http => "whatsapp_server $ctr->{url};\n    whatsapp_handshake_timeout 60s;");
    $t->start;
    my $l = $t->health->{limits};
    is($l->{max_sessions}, 20, 'worker_connections 40: max_sessions 20 (half kept for the helper itself)') or diag explain $l;
    is($l->{max_sessions_from}, 'worker_connections', 'health says where the limit comes from');
    is($l->{worker_connections}, 40, 'and the worker_connections it was derived from');
    ok($l->{open_files} >= 40, "and the open-file limit ($l->{open_files})");
    my @refused;
    for my $i (1 .. 20) {
        my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => "l$i" });
        push @refused, "l$i: $st " . ($j->{code} // '') if $st != 200;
    }
    is(scalar @refused, 0, '20 sessions start') or diag join "\n", @refused;
    ok(wait_until(sub { $ctr->stats->{open} == 20 }, 5), 'and all 20 hold a WebSocket') or diag explain $ctr->stats;
    my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'l21' });
    is("$st " . ($j->{code} // ''), '503 too_many_sessions', 'the 21st: 503 too_many_sessions');
    is($t->status('l21')->{status}, 'disconnected', 'and it does not run');
    my @stuck = grep { ($t->status("l$_")->{status} // '') ne 'connecting' } 1 .. 20;
    is(scalar @stuck, 0, 'none of the 20 is left reconnecting') or diag "@stuck";
    $t->stop;
}

# ---------------------------------------------------------------------------------------------- explicit limit
{
    my $t = WaTest->new;
    $t->write_conf(connections => 40, http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_sessions 5;");
    $t->start;
    my $l = $t->health->{limits};
    is("$l->{max_sessions} $l->{max_sessions_from}", '5 whatsapp_max_sessions', 'an explicit whatsapp_max_sessions below the limit is used');
    $t->stop;
}

# ---------------------------------------------------------------------------------------------- no free connection
# master_process off: HTTP clients and WebSockets share one process's worker_connections. Clients that sent
# half a request hold connections nginx cannot reuse; the sessions' next retries find none free.
{
    my $t = WaTest->new;
    $t->write_conf(master => 'off', connections => 24,
        http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 1s 1s;");
    $t->start;
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'starved' });
    is($st, 200, 'start-session');
    ok(wait_until(sub { ($t->status('starved')->{retry_count} // 0) >= 1 }, 5), 'the session retries every second');
    my @hold;
    for (1 .. 30) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->{port}, Timeout => 2) or last;
        syswrite($s, "GET /api/health HTTP/1.1\r\nHost: x\r\n");    # no end of headers
        push @hold, $s;
    }
    my $t0 = time;
    my $failures = sub { $t->error_log =~ /whatsapp org=starved: connect\(\) to \S+ failed: ([^\n]*)/g };
    my $seen = wait_until(sub { (grep { /free connection/ } $failures->())[0] }, 5, 0.1);
    close $_ for @hold;
    ok($seen, sprintf('a retry without a free connection is reported as such (%.1f s): %s', time - $t0, $seen // 'not seen'));
    my @stale = grep { !/Connection refused|free connection/ } $failures->();
    is(scalar @stale, 0, 'no connect() failure names an unrelated errno') or diag join "\n", @stale;
    ok(wait_until(sub { my ($s) = $t->api(GET => '/api/health'); ($s // 0) == 200 }, 5), 'HTTP is served again once the clients left');
    $t->stop(allow => qr/worker_connections are not enough/);
}
done_testing;

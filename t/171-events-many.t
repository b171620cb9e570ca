# Many event streams on one worker all receive a state change (WA_SSE_CLIENTS, default 1,000, about 3 s here;
# `make stress` runs 5,000): the time from start-session to the last stream's event, the worker's memory per open stream, and the
# helper's CPU time for the change (it rings the worker once, whatever the number of streams). whatsapp_events_max
# bounds the streams of a worker (503 too_many_streams beyond it).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Poll qw(POLLIN);
use IO::Socket::INET;
use POSIX qw(EAGAIN);
use lib 't/lib';
use WaTest qw(wait_until free_port);
use WaSse;

my $N = $ENV{WA_SSE_CLIENTS} || 1000;
my $t = WaTest->new;
my $dead = free_port();    # nothing listens: the session goes connecting -> reconnecting
$t->write_conf(workers => 1, connections => $N + 256, main => 'worker_rlimit_nofile ' . (2 * $N + 1024) . ';',
    http => "whatsapp_server ws://127.0.0.1:$dead/ws/chat;\n    whatsapp_reconnect_backoff 60s 60s;\n"
        . '    whatsapp_events_max ' . ($N + 1) . ';',
    locations => "location /api/ { whatsapp_api; }\n        location = /metrics { whatsapp_metrics; }");
sub streams_gauge { my (undef, undef, undef, $b) = $t->http(GET => '/metrics'); $b =~ /^whatsapp_event_streams (\d+)$/m ? $1 : -1 }
$t->start;
my ($worker) = $t->worker_pids;
my ($helper) = $t->helper_pids;

sub rss_kb { my $s = WaTest::slurp("/proc/$_[0]/status"); $s =~ /^VmRSS:\s+(\d+)/m ? $1 : 0 }
sub cpu_ticks { my $s = WaTest::slurp("/proc/$_[0]/stat"); my @f = split ' ', substr($s, rindex($s, ')') + 2); $f[11] + $f[12] }

my $req = "GET /api/events/many HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nAccept: text/event-stream\r\n\r\n";
my $rss0 = rss_kb($worker);
my (@c, %by_fd);
my $t_open = time;
for my $i (1 .. $N) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->{port}, Proto => 'tcp', Timeout => 5)
        or BAIL_OUT("connect $i: $!");
    $s->blocking(0);
    syswrite($s, $req);
    my $c = { s => $s, buf => '', ready => 0, got => 0 };
    push @c, $c;
    $by_fd{ fileno $s } = $c;
}
# Reads whatever is readable until $done->() or the deadline.
sub pump_all {
    my ($done, $timeout) = @_;
    my $end = time + $timeout;
    my $poll = IO::Poll->new;
    $poll->mask($_->{s} => POLLIN) for grep { $_->{s} } @c;
    while (!$done->() && time < $end) {
        $poll->poll(0.2) > 0 or next;
        for my $s ($poll->handles(POLLIN)) {
            my $c = $by_fd{ fileno $s };
            my $n = sysread($s, my $buf, 65536);
            if (!$n) { next if !defined $n && $! == EAGAIN; $poll->remove($s); $c->{eof} = 1; next }
            $c->{buf} .= $buf;
            $c->{ready} ||= $c->{buf} =~ /"status":"disconnected"/;
            if (!$c->{got} && $c->{buf} =~ /"status":"(?:connecting|reconnecting)"/) { $c->{got} = time }
        }
    }
    return $done->();
}
ok(pump_all(sub { !grep { !$_->{ready} } @c }, 30), sprintf("$N streams open, each with the current state (%.2f s)", time - $t_open))
    or diag scalar(grep { $_->{ready} } @c) . " ready; " . substr($c[-1]{buf}, 0, 300);
ok(!grep({ $_->{buf} !~ m{^HTTP/1\.1 200} } @c), 'every one answered 200');
sleep 0.3;
my $rss1 = rss_kb($worker);
my $per = ($rss1 - $rss0) * 1024 / $N;
ok(1, sprintf('worker memory: %d kB before, %d kB with %d streams: %.1f kB per stream', $rss0, $rss1, $N, $per / 1024));
cmp_ok($per, '<', 64 * 1024, 'less than 64 kB per stream');
my (undef, undef, $h) = $t->api(GET => '/api/health');

# One more fits (whatsapp_events_max N+1); the next one gets 503.
my $extra = WaSse->open($t->{port}, '/api/events/many', headers => { 'X-API-Key' => $WaTest::KEY });
is($extra->status, 200, 'stream N+1: 200 (whatsapp_events_max ' . ($N + 1) . ')');
my $over = WaSse->open($t->{port}, '/api/events/many', headers => { 'X-API-Key' => $WaTest::KEY });
$over->wait_eof(2);
is($over->status, 503, 'stream N+2: 503');
like($over->body, qr/"code":"too_many_streams"/, 'too_many_streams');
is($over->headers->{'retry-after'}, '1', 'Retry-After: 1');
$extra->close;
$over->close;

my ($hcpu0, $wcpu0) = (cpu_ticks($helper), cpu_ticks($worker));
my $t0 = time;
my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'many' });
is($st, 200, 'start-session');
ok(pump_all(sub { !grep { !$_->{got} } @c }, 30), 'every stream received the change')
    or diag scalar(grep { $_->{got} } @c) . " of $N";
my @lat = sort { $a <=> $b } map { $_->{got} - $t0 } grep { $_->{got} } @c;
my ($hcpu, $wcpu) = (cpu_ticks($helper) - $hcpu0, cpu_ticks($worker) - $wcpu0);
ok(@lat && $lat[-1] < 3 * ($N >= 1000 ? 2 : 1),
    sprintf('start-session to the first stream %.3f s, median %.3f s, the last (%d) %.3f s', $lat[0] // -1,
        $lat[ $#lat / 2 ] // -1, scalar @lat, $lat[-1] // -1));
ok(1, sprintf('CPU during the fan-out: helper %d ms, worker %d ms (%.1f us per stream)', $hcpu * 10, $wcpu * 10,
    $wcpu * 10000 / $N));
cmp_ok($hcpu * 10, '<', 200, 'the helper spends no time per stream (< 200 ms for the change, whatever N)');
ok(!grep({ $_->{eof} } @c), 'no stream ended');

# Streams count in the metrics' gauge until they close.
is(streams_gauge(), $N, "whatsapp_event_streams $N");
close $_->{s} for @c;
ok(wait_until(sub { streams_gauge() == 0 }, 5), 'whatsapp_event_streams 0 once the clients left');
$t->stop;
done_testing;

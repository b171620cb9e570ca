# Many concurrent clients: every command is answered exactly once, by the right response, quickly,
# and nothing stays queued.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc);

my $closed = free_port();
my $t = WaTest->new;
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 30s 60s;");
$t->start;
my $N = 150;

# Sends all requests at once (one connection each), then collects every response.
sub burst {
    my (@reqs) = @_;
    my (%conn, %out);
    for my $i (0 .. $#reqs) {
        my $s = WaTest::http_raw($t->{port}, $reqs[$i], no_read => 1) or do { $out{$i} = 'connect failed'; next };
        $conn{ fileno $s } = [ $i, $s, '' ];
    }
    my $end = time + 15;
    while (%conn && time < $end) {
        my $sel = IO::Select->new(map { $_->[1] } values %conn);
        for my $s ($sel->can_read(0.5)) {
            my $c = $conn{ fileno $s };
            my $n = sysread($s, my $buf, 65536);
            if ($n) { $c->[2] .= $buf; next }
            $out{ $c->[0] } = $c->[2];
            delete $conn{ fileno $s };
            close $s;
        }
    }
    $out{ $_->[0] } = 'no answer' for values %conn;
    return map { $out{$_} } 0 .. $#reqs;
}

sub post_req {
    my ($path, $body) = @_;
    my $b = json_enc($body);
    return "POST $path HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
}

my $t0 = time;
my @resp = burst(map { post_req('/api/start-session', { organization_id => "c$_" }) } 1 .. $N);
my $el = time - $t0;
my $ok = grep { (WaTest::parse_response($_))[0] == 200 && (WaTest::parse_response($_))[2]{status} eq 'connecting' } @resp;
is($ok, $N, "$N concurrent start-session: all 200 connecting") or diag explain [ grep { !/ 200 OK/ } @resp ]->[0];
diag sprintf('%d concurrent start-session answered in %.2f s', $N, $el);
cmp_ok($el, '<', 15, sprintf('answered in %.2f s (target 5 s; allowed 15 s: every start fsyncs its state)', $el));

my @conns = $t->connections;
is(scalar @conns, $N, "$N organizations known");
my %ids = map { $_->{organization_id} => 1 } @conns;
is(scalar(grep { $ids{"c$_"} } 1 .. $N), $N, 'each of them');

# every response belongs to its own request: the error names the organization it was sent for
@resp = burst(map { post_req('/api/send-message', { organization_id => "c$_", phone => '3001234567', message => "m$_" }) } 1 .. $N);
my $right = 0;
for my $i (0 .. $N - 1) {
    my ($st, undef, $j) = WaTest::parse_response($resp[$i]);
    $right++ if $st == 409 && $j->{code} eq 'not_connected' && ($j->{error} // '') =~ /organization c@{[ $i + 1 ]} /;
}
is($right, $N, "$N concurrent send-message: each answered 409 for its own organization");

@resp = burst(map { "GET /api/status/c$_ HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n\r\n" } 1 .. $N);
is(scalar(grep { (WaTest::parse_response($_))[0] == 200 } @resp), $N, "$N concurrent status reads: 200");

# mixed burst: commands and reads together
my @mixed = map { $_ % 3 == 0 ? post_req('/api/logout', { organization_id => "c$_" })
                : $_ % 3 == 1 ? post_req('/api/start-session', { organization_id => "c$_" })
                : "GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n\r\n" } 1 .. $N;
@resp = burst(@mixed);
is(scalar(grep { (WaTest::parse_response($_))[0] == 200 } @resp), $N, "$N mixed concurrent requests: 200");
is(scalar(grep { $t->status("c$_")->{status} eq 'logged_out' } grep { $_ % 3 == 0 } 1 .. $N), int($N / 3),
    'every logout took effect');

my $h = $t->health;
is($h->{shared_memory}{queue_length}, 0, 'nothing left in the queue');
is($h->{helper}{generation}, 1, 'the helper never restarted');
$t->stop;
done_testing;

# kill -9 of the helper while 200 message.received events are being delivered (2 runs): every event is
# delivered at least once, duplicates only with the same id, seq without gaps per organization.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use lib 't/lib';
use WaTest qw(wait_until);

my $RUNS = $ENV{WA_WEBHOOK_CRASH_RUNS} // 2;
my $N = 200;

for my $run (1 .. $RUNS) {
    my $t = WaTest->new;
    my $dir = $t->{dir};
    my $port = WaTest::free_port();
    my $log = "$dir/recv.log";
    # 15 ms per request: delivering 200+ events takes seconds, so the kill lands in the middle.
    WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 128, ReuseAddr => 1) or die;
        while (my $c = $srv->accept) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); last unless $r; }
            my ($head, $body) = split /\r\n\r\n/, $buf, 2;
            my ($len) = ($head // '') =~ /^Content-Length:\s*(\d+)/mi;
            while (length($body // '') < ($len // 0)) { my $r = sysread($c, $body, 65536, length $body); last unless $r; }
            next unless $body;
            sleep 0.015;
            open(my $fh, '>>', $log) or die; print $fh "$body\n"; close $fh;
            print $c "HTTP/1.1 204 No Content\r\n\r\n";
            close $c;
        }
    });
    my $sim = WaTest::Sim->start($dir);
    $t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_webhook http://127.0.0.1:$port/in;\n"
        . "    whatsapp_webhook_concurrency 1;\n    whatsapp_webhook_backoff 100ms 500ms;");
    $t->start;
    my $ACCOUNT = '573001112233';
    $t->api(POST => '/api/start-session', body => { organization_id => 'o1' });
    my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o1'); $q && $q->{success} ? $q : undef }, 10);
    $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
    wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10) or BAIL_OUT('not connected');
    my $C = '573009990001';
    $sim->control(POST => '/contacts', body => { phone => $C, devices => 1 });
    my %sent;
    for my $i (1 .. $N) {
        my ($s, undef, $j) = $sim->control(POST => "/contacts/$C/send", body => { to => $ACCOUNT, text => "m$i" });
        $sent{ $j->{id} } = 1 if $s == 200 && $j->{id};
    }
    is(scalar keys %sent, $N, "run $run: the contact sent $N messages");
    wait_until(sub { ($t->db("SELECT count(*) AS n FROM messages WHERE direction = 'in'")->[0]{n} // 0) >= $N }, 15);
    my $before = scalar(grep { length } split /\n/, WaTest::slurp($log) // '');
    my ($hp) = $t->helper_pids;
    kill 'KILL', $hp;
    cmp_ok($before, '<', $N, "run $run: kill -9 of the helper after $before of $N+ deliveries");
    ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 5), "run $run: a new helper");
    my $t0 = time;
    my $all = wait_until(sub {
        my @ev = map { WaTest::json_dec($_) } grep { length } split /\n/, WaTest::slurp($log) // '';
        my %got = map { ($_->{data}{id} // '') => 1 } grep { $_->{type} eq 'message.received' } @ev;
        (grep { $got{$_} } keys %sent) == $N ? \@ev : undef }, 40);
    ok($all, sprintf("run $run: every message.received delivered at least once (%.1f s after the restart)", time - $t0));
    my (%by_id, %seqs);
    for my $e (@{ $all // [] }) {
        push @{ $by_id{ $e->{id} } }, $e;
        $seqs{ $e->{seq} }{ $e->{id} } = 1;
    }
    my $dups = grep { @{ $by_id{$_} } > 1 } keys %by_id;
    my @bad = grep { my $l = $by_id{$_}; grep { $_->{seq} != $l->[0]{seq} || ($_->{data}{id} // '') ne ($l->[0]{data}{id} // '') } @$l } keys %by_id;
    is(scalar @bad, 0, "run $run: $dups events delivered more than once, each time with the same id, seq and data");
    is(scalar(grep { keys %{ $seqs{$_} } > 1 } keys %seqs), 0, "run $run: one event per seq");
    my @s = sort { $a <=> $b } keys %seqs;
    is_deeply(\@s, [ 1 .. $s[-1] ], "run $run: seq 1..$s[-1] without gaps") if @s;
    $t->stop(allow => qr/worker process \d+ exited on signal 9/);
    $sim->stop;
}
done_testing;

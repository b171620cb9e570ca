# kill -9 of the helper at random points while message.received events flow: every event is delivered at
# least once, duplicates only with the same id, seq without gaps per organization, and the webhook counters in
# /metrics (shm) survive the restarts.
# Each run kills the helper twice: once after a random number of the contact's messages (the rest wait in the
# simulator's offline queue), once after a random number of deliveries.
#   WA_HOOK_CRASH_RUNS (default 5), WA_HOOK_CRASH_EVENTS (default 500); `make stress` runs 20.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX ();
use lib 't/lib';
use WaTest qw(wait_until);

my $RUNS = $ENV{WA_HOOK_CRASH_RUNS} // 5;
my $N = $ENV{WA_HOOK_CRASH_EVENTS} // 500;
my $SEED = $ENV{WA_HOOK_CRASH_SEED} // time ^ $$;
srand($SEED);
diag("WA_HOOK_CRASH_SEED=$SEED ($RUNS runs of $N events)");

sub lines { grep { length } split /\n/, WaTest::slurp($_[0]) // '' }

for my $run (1 .. $RUNS) {
    my $t = WaTest->new;
    my $dir = $t->{dir};
    my $port = WaTest::free_port();
    my $log = "$dir/recv.log";
    # A keep-alive receiver (one child per connection), 2 ms per request: the delivery takes long enough for the
    # second kill to land in the middle of it.
    my $receiver = WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 128, ReuseAddr => 1) or die;
        $SIG{CHLD} = 'IGNORE';
        while (my $c = $srv->accept) {
            next if fork;
            my $buf = '';
            while (1) {
                while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); POSIX::_exit(0) unless $r }
                my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
                my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
                while (length($rest) < ($len // 0)) { my $r = sysread($c, $rest, 65536, length $rest); POSIX::_exit(0) unless $r }
                my $body = substr($rest, 0, $len // 0);
                $buf = substr($rest, $len // 0);
                sleep 0.002;
                open(my $fh, '>>', $log) or die; print $fh "$body\n"; close $fh;
                print $c "HTTP/1.1 204 No Content\r\n\r\n";
            }
        }
    });
    my $sim = WaTest::Sim->start($dir);
    $t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_reconnect_backoff 200ms 500ms;\n    whatsapp_webhook http://127.0.0.1:$port/in;\n"
        . "    whatsapp_webhook_concurrency 2;\n    whatsapp_webhook_backoff 100ms 500ms;",
        locations => "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }\n"
                   . "        location = /metrics { whatsapp_metrics; }");
    $t->start;
    my $ACCOUNT = '573001112233';
    $t->api(POST => '/api/start-session', body => { organization_id => 'o1' });
    my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o1'); $q && $q->{success} ? $q : undef }, 10);
    $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
    wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10) or BAIL_OUT('not connected');
    my $C = '573009990001';
    $sim->control(POST => '/contacts', body => { phone => $C, devices => 1 });
    my $kill = sub {
        my ($what) = @_;
        my ($hp) = $t->helper_pids;
        kill 'KILL', $hp;
        ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 10), "run $run: kill -9 $what, a new helper");
    };
    my $t0 = time;
    my $k1 = 1 + int(rand($N));
    my %sent;
    for my $i (1 .. $N) {
        my ($s, undef, $j) = $sim->control(POST => "/contacts/$C/send", body => { to => $ACCOUNT, text => "m$i" });
        $sent{ $j->{id} } = 1 if $s == 200 && $j->{id};
        $kill->("after message $i of $N") if $i == $k1;
    }
    is(scalar keys %sent, $N, "run $run: the contact sent $N messages");
    my $k2 = int(rand($N));
    my $at = wait_until(sub { my $n = lines($log); $n >= $k2 ? $n : undef }, 60);
    $kill->(sprintf('after %d deliveries (aimed at %d)', $at // -1, $k2));
    my $all = wait_until(sub {
        my @ev = map { WaTest::json_dec($_) } lines($log);
        my %got = map { ($_->{data}{id} // '') => 1 } grep { $_->{type} eq 'message.received' } @ev;
        (grep { $got{$_} } keys %sent) == $N ? \@ev : undef }, 60, 0.2);
    ok($all, sprintf("run $run: every message.received delivered at least once (%.1f s for the run)", time - $t0));
    my (%by_id, %seqs);
    for my $e (@{ $all // [] }) {
        push @{ $by_id{ $e->{id} } }, $e;
        $seqs{ $e->{seq} }{ $e->{id} } = 1;
    }
    my $dups = grep { @{ $by_id{$_} } > 1 } keys %by_id;
    my @bad = grep { my $l = $by_id{$_}; grep { $_->{seq} != $l->[0]{seq} || ($_->{data}{id} // '') ne ($l->[0]{data}{id} // '')
                                                 || $_->{type} ne $l->[0]{type} } @$l } keys %by_id;
    is(scalar @bad, 0, "run $run: $dups events delivered more than once, each time with the same id, seq and data");
    is(scalar(grep { keys %{ $seqs{$_} } > 1 } keys %seqs), 0, "run $run: one event per seq");
    my @s = sort { $a <=> $b } keys %seqs;
    is_deeply(\@s, [ 1 .. $s[-1] ], "run $run: seq 1..$s[-1] without gaps") if @s;
    # Every delivery was counted by some helper: the counters live in shm, not in the killed processes.
    my (undef, undef, undef, $m) = WaTest::http_request($t->{port}, GET => '/metrics');
    my ($delivered) = ($m // '') =~ /^whatsapp_webhook_events_delivered_total\{org="o1"\} (\d+)$/m;
    cmp_ok($delivered // 0, '>=', scalar keys %by_id,
           "run $run: whatsapp_webhook_events_delivered_total{org=\"o1\"} ($delivered) covers the " . scalar(keys %by_id)
           . " events, across the restarts");
    $t->stop(allow => $WaTest::KILLED);
    $sim->stop;
    WaTest::kill_group($receiver, 1);  # and its children: 20 runs leave no receivers behind
}
done_testing;

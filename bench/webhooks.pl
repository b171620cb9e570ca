#!/usr/bin/env perl
# Benchmark (not a test): webhook delivery from the helper to a local receiver. Per run: a fresh nginx and
# simulator, a contact sends EVENTS messages while the receiver is stopped (SIGSTOP: connections wait in its
# backlog, nothing fails or retries), so the outbox fills; then the receiver continues (SIGCONT) and the clock
# runs until every message.received was acknowledged. Prints events/s and the helper's CPU per event (its
# /proc schedstat run time over the delivery only), per run and as median and spread (min-max) of RUNS runs, for
# keep-alive on (the default) and off (whatsapp_webhook_keepalive 0); writes bench/out/webhooks.md.
#   RUNS=3 EVENTS=5000 CONCURRENCY=4 perl bench/webhooks.pl        (make bench-webhooks)
# The receiver is Perl, one process per connection, acknowledging with 204 as soon as it read the body.
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../t/lib";
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX ();
use WaTest qw(wait_until);

my $RUNS = $ENV{RUNS} || 3;
my $EVENTS = $ENV{EVENTS} || 5000;
my $CONC = $ENV{CONCURRENCY} || 4;
# CPU time of a process in seconds, from /proc/<pid>/schedstat (nanoseconds on a CPU: finer than the 10 ms ticks of stat).
sub cpu_secs { my ($pid) = @_; open(my $f, '<', "/proc/$pid/schedstat") or return 0; my ($ns) = split ' ', <$f>; return $ns / 1e9 }

sub run_once {
    my ($keepalive) = @_;
    my $t = WaTest->new;
    my $dir = $t->{dir};
    my $port = WaTest::free_port();
    my $log = "$dir/ids.log";
    my $recv = WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 1024, ReuseAddr => 1) or die;
        $SIG{CHLD} = 'IGNORE';
        while (my $c = $srv->accept) {
            next if fork;
            open(my $out, '>>', $log) or die;
            $out->autoflush(1);
            my $buf = '';
            while (1) {
                while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); POSIX::_exit(0) unless $r }
                my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
                my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
                while (length($rest) < ($len // 0)) { my $r = sysread($c, $rest, 65536, length $rest); POSIX::_exit(0) unless $r }
                $buf = substr($rest, $len // 0);
                my ($type) = $head =~ /^X-WhatsApp-Event:\s*(\S+)/mi;
                my ($id) = $head =~ /^X-WhatsApp-Event-Id:\s*(\S+)/mi;
                print $out "$id\n" if ($type // "") eq "message.received";
                print {$ENV{WA_BENCH_TRACE} ? *STDERR : *STDOUT} sprintf("%.4f %d\n", Time::HiRes::time, $$) if $ENV{WA_BENCH_TRACE};
                syswrite($c, "HTTP/1.1 204 No Content\r\n\r\n");
                POSIX::_exit(0) if $head =~ /^Connection:\s*close/mi;
            }
        }
    });
    wait_until(sub { my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port); close $s if $s; $s }, 10)
        or die 'the receiver does not listen';
    kill 'STOP', -$recv;
    my $sim = WaTest::Sim->start($dir);
    $t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_webhook http://127.0.0.1:$port/in events=message.received;\n"
        . "    whatsapp_webhook_concurrency $CONC;\n    whatsapp_webhook_timeout 300s;\n"
        . "    whatsapp_webhook_keepalive " . ($keepalive ? $CONC : 0) . ";",
        workers => 1, level => 'warn', connections => 1024);
    $t->start;
    $t->api(POST => '/api/start-session', body => { organization_id => 'bench' });
    my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/bench'); $q && $q->{success} ? $q : undef }, 10) or die 'no QR';
    $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => '573006660001' });
    wait_until(sub { ($t->status('bench')->{status} // '') eq 'connected' }, 10) or die 'not connected';
    my $C = '573009990001';
    $sim->control(POST => '/contacts', body => { phone => $C, devices => 1 });
    for my $i (1 .. $EVENTS) {
        my ($s) = $sim->control(POST => "/contacts/$C/send", body => { to => '573006660001', text => "bench $i" });
        die "send $i: $s" unless $s == 200;
    }
    wait_until(sub { ($t->db("SELECT count(*) AS n FROM webhook_events WHERE type = 'message.received'")->[0]{n} // 0) >= $EVENTS }, 120)
        or die 'the outbox did not fill';
    sleep 1;  # the intake is over: what the helper spends from here on is delivery
    my ($hp) = $t->helper_pids;
    my $c0 = cpu_secs($hp);
    my $t0 = time;
    kill 'CONT', -$recv;
    my $line = 29;  # "evt_" + 24 hex + "\n"
    wait_until(sub { (-s $log // 0) >= $EVENTS * $line }, 300, 0.01) or die 'not everything was delivered';
    my $dt = time - $t0;
    my $cpu = cpu_secs($hp) - $c0;
    my %ids = map { $_ => 1 } split /\n/, WaTest::slurp($log);
    die 'duplicates or missing events: ' . scalar(keys %ids) unless keys %ids == $EVENTS;
    my $conns = $t->db("SELECT count(*) AS n FROM webhook_events WHERE state = 'delivered'")->[0]{n};
    $t->quit;
    $sim->stop;
    kill 'KILL', -$recv;
    return { eps => $EVENTS / $dt, us_per_event => $cpu * 1e6 / $EVENTS, secs => $dt, delivered => $conns };
}

sub med { my @s = sort { $a <=> $b } @_; return $s[ int(@s / 2) ] }

my @report;
for my $mode ([ 'keep-alive', 1 ], [ 'one connection per event', 0 ]) {
    my @r;
    for my $i (1 .. $RUNS) {
        my $r = run_once($mode->[1]);
        printf "%-26s run %d: %6d events in %.2f s = %7.0f events/s, helper CPU %.1f us/event\n",
            $mode->[0], $i, $EVENTS, $r->{secs}, $r->{eps}, $r->{us_per_event};
        push @r, $r;
    }
    my @eps = map { $_->{eps} } @r;
    my @cpu = map { $_->{us_per_event} } @r;
    my $line = sprintf "| %s | %d | %.0f | %.0f–%.0f | %.1f | %.1f–%.1f |", $mode->[0], $RUNS, med(@eps),
        (sort { $a <=> $b } @eps)[0], (sort { $a <=> $b } @eps)[-1], med(@cpu), (sort { $a <=> $b } @cpu)[0],
        (sort { $a <=> $b } @cpu)[-1];
    push @report, $line;
}
my $head = "Webhook delivery, $EVENTS message.received events per run, whatsapp_webhook_concurrency $CONC, one local "
    . "Perl receiver (204), " . `nproc` =~ s/\s+//r . " CPUs\n\n"
    . "| connections | runs | events/s (median) | events/s (min–max) | helper CPU µs/event (median) | (min–max) |\n"
    . "|---|---|---|---|---|---|\n";
my $md = $head . join("\n", @report) . "\n";
print "\n$md";
mkdir "$Bin/out";
WaTest::spew("$Bin/out/webhooks.md", $md);

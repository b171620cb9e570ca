# whatsapp_server by host name through whatsapp_resolver: a tiny DNS server of our own answers
# wa-sim.test with 127.0.0.1, nx.test with NXDOMAIN and never answers slow.test.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use lib 't/lib';
use WaTest qw(wait_until);

my $base = WaTest->new;
my $d = $base->{dir};
my $sim = WaTest::Sim->start($d);

my $dns = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp') or die "udp: $!";
my $dns_port = $dns->sockport;
my $qlog = "$d/dns.log";
WaTest::background(sub {
    while (1) {
        my $from = $dns->recv(my $q, 512) // next;
        next if length $q < 17;
        my ($id, $flags) = unpack('n n', $q);
        my $pos = 12;
        my @labels;
        while ($pos < length $q) {
            my $len = ord substr($q, $pos, 1);
            $pos++;
            last if $len == 0;
            push @labels, substr($q, $pos, $len);
            $pos += $len;
        }
        my ($qtype) = unpack('n', substr($q, $pos, 2));
        my $question = substr($q, 12, $pos + 4 - 12);
        my $name = lc join '.', @labels;
        open(my $fh, '>>', $qlog); print $fh "$name $qtype\n"; close $fh;
        next if $name eq 'slow.test';
        my ($rcode, $answer) = (0, '');
        if ($name eq 'nx.test') { $rcode = 3 }
        elsif ($qtype == 1 && $name =~ /^(hook\.)?two\.test$/) {
            # two A records: 127.0.0.2 first (nothing listens there), then the simulator's 127.0.0.1
            $answer = pack('n n n N n C4', 0xC00C, 1, 1, 60, 4, 127, 0, 0, 2) . pack('n n n N n C4', 0xC00C, 1, 1, 60, 4, 127, 0, 0, 1);
        }
        elsif ($qtype == 1) { $answer = pack('n n n N n C4', 0xC00C, 1, 1, 60, 4, 127, 0, 0, 1) }
        my $count = $name =~ /^(hook\.)?two\.test$/ && $qtype == 1 ? 2 : $answer ? 1 : 0;
        my $hdr = pack('n n n n n n', $id, 0x8180 | $rcode | ($flags & 0x0100), 1, $count, 0, 0);
        $dns->send($hdr . $question . $answer, 0, $from);
    }
});

sub run_case {
    my ($host, %o) = @_;
    my $t = WaTest->new;
    $t->write_conf(http => "whatsapp_server ws://$host:$sim->{ws_port}/ws/chat;\n    whatsapp_resolver 127.0.0.1:$dns_port ipv6=off;\n"
        . "    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_resolver_timeout 1s;\n    whatsapp_handshake_timeout 30s;\n    whatsapp_reconnect_backoff 10s 20s;"
        . ($o{http} // ''));
    my ($rc, $out) = $t->test_config;
    is($rc, 0, "$host: nginx -t does not need DNS") or diag $out;
    $t->start;
    return $t;
}

{
    $sim->reset;
    my $t = run_case('wa-sim.test');
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'dns1' });
    is($st, 200, 'wa-sim.test: start-session 200');
    ok(wait_until(sub { $sim->stats->{ws_total} == 1 }, 5), 'the name was resolved and the simulator got the upgrade');
    is($sim->stats->{last_upgrade_headers}{host}, "wa-sim.test:$sim->{ws_port}", 'Host header carries the name');
    ok(wait_until(sub { $t->status('dns1')->{status} eq 'qr_ready' }, 5), 'qr_ready through the resolved name');
    like(WaTest::slurp($qlog), qr/^wa-sim\.test 1$/m, 'the resolver asked our DNS server for wa-sim.test A');
    $t->stop;
}
{
    # A name with two addresses, the first refusing connections: the next one is tried at once, by the link to
    # the server and by a webhook delivery (both dial through WaDialer).
    $sim->reset;
    my $hook_port = WaTest::free_port();
    my $hooks = "$d/two-hooks.log";
    WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $hook_port, Listen => 8, ReuseAddr => 1) or die "listen: $!";
        while (my $c = $srv->accept) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); last unless $r }
            my ($head) = split /\r\n\r\n/, $buf, 2;
            open(my $fh, '>>', $hooks); print $fh ($head =~ /^X-WhatsApp-Event:\s*(\S+)/mi ? $1 : '?'), "\n"; close $fh;
            print $c "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            close $c;
        }
    });
    my $t = run_case('two.test', http => "\n    whatsapp_webhook http://hook.two.test:$hook_port/hook events=session.qr;");
    $t->api(POST => '/api/start-session', body => { organization_id => 'dns4' });
    ok(wait_until(sub { $t->status('dns4')->{status} eq 'qr_ready' }, 5), 'two.test: the second address connected (qr_ready)')
        or diag explain $t->status('dns4');
    is($t->status('dns4')->{retry_count}, 0, 'without a retry');
    like($t->error_log, qr/connect\(\) to two\.test:$sim->{ws_port} failed: Connection refused; trying the next address/,
        'error.log: the link\'s first address failed, the next was tried');
    ok(wait_until(sub { (WaTest::slurp($hooks) // '') =~ /^session\.qr$/m }, 5), 'the webhook to hook.two.test (127.0.0.2, then 127.0.0.1) was delivered (session.qr)');
    like($t->error_log, qr/connect\(\) to hook\.two\.test:$hook_port failed: Connection refused; trying the next address/,
        'error.log: the webhook\'s first address failed, the next was tried');
    $t->stop;
}
{
    my $t = run_case('nx.test');
    $t->api(POST => '/api/start-session', body => { organization_id => 'dns2' });
    my $s = wait_until(sub { my $s = $t->status('dns2'); ($s->{status} // '') eq 'reconnecting' ? $s : undef }, 5);
    ok($s, 'nx.test: reconnecting');
    like($s->{last_error} // '', qr/cannot resolve nx\.test/, 'last_error: cannot resolve nx.test');
    like($s->{last_error} // '', qr/not found/i, 'last_error: host not found');
    $t->stop;
}
{
    my $t = run_case('slow.test');
    my $t0 = time;
    $t->api(POST => '/api/start-session', body => { organization_id => 'dns3' });
    my $s = wait_until(sub { my $s = $t->status('dns3'); ($s->{status} // '') eq 'reconnecting' ? $s : undef }, 6);
    my $el = time - $t0;
    ok($s, 'slow.test: reconnecting');
    like($s->{last_error} // '', qr/cannot resolve slow\.test: .*timed out/i, 'last_error: resolving timed out');
    ok($el > 0.8 && $el < 3, sprintf('after whatsapp_resolver_timeout 1s (%.2f s)', $el));
    my ($st) = $t->http(GET => '/health');
    is($st, 200, 'HTTP keeps working meanwhile');
    # QUIT while a name is being resolved: the pending query does not hold the helper back
    ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'dns3' });
    is($st, 200, 'start-session again: resolving anew');
    my $q = $t->quit;
    ok(defined $q && $q < 2, sprintf('QUIT during a DNS query exits at once (%.2f s)', $q // 99));
    $t->check_log;
}
$sim->stop;
done_testing;

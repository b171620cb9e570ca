# wss:// to the simulator with a test CA: chain and host name are verified before the WebSocket upgrade,
# the upgrade carries WhatsApp Web's Origin, and every failure ends up in last_error.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);
use IO::Socket::SSL;
use IO::Select;

my $base = WaTest->new;    # holds the certificates and the simulator logs
my $d = $base->{dir};
my $ca = WaTest::make_ca($d, 'ca');
my $other_ca = WaTest::make_ca($d, 'otherca');
my $good = WaTest::make_cert($d, $ca, 'server', 'DNS:localhost', 'IP:127.0.0.1');
my $wrong = WaTest::make_cert($d, $ca, 'wronghost', 'DNS:other.example');
my $simA = WaTest::Sim->start($d, tls => [ $good->{cert}, $good->{key} ]);
my $simB = WaTest::Sim->start($d, tls => [ $wrong->{cert}, $wrong->{key} ]);
like($simA->{ws_url}, qr{^wss://}, 'the simulator serves wss://');

sub nginx_for {
    my ($url, $trusted, %o) = @_;
    my $t = WaTest->new;
    $t->write_conf(http => "whatsapp_server $url;\n    whatsapp_ssl_trusted_certificate $trusted;\n"
        . "    whatsapp_root_key $simA->{root_key};\n    whatsapp_handshake_timeout " . ($o{hs} // '2s') . ";\n"
        . "    whatsapp_reconnect_backoff 10s 20s;\n    whatsapp_connect_timeout 3s;",
        locations => "location /api/ { whatsapp_api; }\n        location = /metrics { whatsapp_metrics; }");
    return $t->start;
}

# whatsapp_tls_verify_failures_total{reason=...}: every outbound connection counts a refused certificate there
sub tls_failures {
    my ($t, $reason) = @_;
    my (undef, undef, undef, $body) = WaTest::http_request($t->{port}, GET => '/metrics');
    return ($body // '') =~ /^whatsapp_tls_verify_failures_total\{reason="$reason"\} (\d+)/m ? $1 : -1;
}

sub wait_status {
    my ($t, $org, $want, $timeout) = @_;
    return wait_until(sub { my $s = $t->status($org); ($s->{status} // '') eq $want ? $s : undef }, $timeout // 5, 0.02);
}

# ---------------------------------------------------------------------------------------------- trusted CA, right host
{
    my $t = nginx_for("wss://localhost:$simA->{ws_port}/ws/chat", $ca->{cert});
    my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'tls1' });
    is($st, 200, 'start-session: 200');
    is($j->{status}, 'connecting', 'start-session: connecting');
    my $t0 = time;
    ok(wait_until(sub { $simA->stats->{ws_total} == 1 }, 5, 0.02), 'the simulator accepted the WebSocket upgrade over TLS');
    my $opened = time;
    my $s = $simA->stats;
    is($s->{ws_open}, 1, 'one WebSocket open');
    my $hd = $s->{last_upgrade_headers} // {};
    is($hd->{origin}, 'https://web.whatsapp.com', 'Origin: https://web.whatsapp.com');
    is($hd->{host}, "localhost:$simA->{ws_port}", 'Host: localhost:PORT');
    like($hd->{upgrade} // '', qr/^websocket$/i, 'Upgrade: websocket');
    like($hd->{connection} // '', qr/upgrade/i, 'Connection: Upgrade');
    is($hd->{'sec-websocket-version'}, '13', 'Sec-WebSocket-Version: 13');
    like($hd->{'sec-websocket-key'} // '', qr{^[A-Za-z0-9+/]{22}==$}, 'Sec-WebSocket-Key is 16 random bytes in base64');
    # The WhatsApp Noise handshake runs inside TLS: the simulator's certificate chain is verified and the
    # registration gets its QR refs.
    $s = wait_status($t, 'tls1', 'qr_ready', 5);
    ok($s, sprintf('qr_ready over wss:// %.2f s after the upgrade', time - $opened));
    like($s->{qr} // '', qr{^data:image/png;base64,}, 'with a QR code');
    is($s->{last_error}, undef, 'no last_error');
    is($simA->stats->{registrations}, 1, 'the simulator saw one registration');
    $t->stop;
    ok(wait_until(sub { $simA->stats->{ws_open} == 0 }, 2), 'the WebSocket was closed on QUIT');
}

# ---------------------------------------------------------------------------------------------- handshake timeout
# A server that upgrades the WebSocket but never sends the Noise server hello.
{
    my $ctr = WaTest::WsCounter->start($d);
    my $t = WaTest->new;
    $t->write_conf(http => "whatsapp_server $ctr->{url};
    whatsapp_handshake_timeout 2s;
"
        . "    whatsapp_reconnect_backoff 10s 20s;");
    $t->start;
    $t->api(POST => '/api/start-session', body => { organization_id => 'hs1' });
    ok(wait_until(sub { $ctr->stats->{total} == 1 }, 5, 0.02), 'the silent server accepted the upgrade');
    my $opened = time;
    is($t->status('hs1')->{status}, 'connecting', 'connecting while the WebSocket waits for the server hello');
    my $s = wait_status($t, 'hs1', 'reconnecting', 8);
    my $el = time - $opened;
    ok($s, 'reconnecting after whatsapp_handshake_timeout');
    ok($el > 1.6 && $el < 6, sprintf('after about 2 s (%.2f s; limit 3x)', $el));
    like($s->{last_error} // '', qr/server hello/i, 'last_error mentions the server hello');
    like($s->{last_error} // '', qr/within 2 s/, 'last_error names the timeout');
    is($s->{retry_count}, 1, 'retry_count 1');
    ok(defined $s->{next_retry_in} && $s->{next_retry_in} >= 7 && $s->{next_retry_in} <= 12,
        "next_retry_in follows the 10 s backoff ($s->{next_retry_in})");
    ok(wait_until(sub { $ctr->stats->{open} == 0 }, 2), 'the WebSocket was closed');
    is($ctr->stats->{total}, 1, 'no second connection yet (backing off)');
    $t->stop;
}

# ---------------------------------------------------------------------------------------------- IP literal, IP SAN
{
    $simA->reset;
    my $t = nginx_for("wss://127.0.0.1:$simA->{ws_port}/ws/chat", $ca->{cert}, hs => '30s');
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'tlsip' });
    is($st, 200, 'IP literal: start-session 200');
    ok(wait_until(sub { $simA->stats->{ws_total} == 1 }, 5, 0.02), 'IP literal with a matching IP SAN: upgrade accepted');
    is($simA->stats->{last_upgrade_headers}{host}, "127.0.0.1:$simA->{ws_port}", 'Host: 127.0.0.1:PORT');
    ok(wait_status($t, 'tlsip', 'qr_ready', 5), 'qr_ready over the IP literal');
    $t->stop;
    ok(wait_until(sub { $simA->stats->{ws_open} == 0 }, 2), 'closed on QUIT');
}

# ---------------------------------------------------------------------------------------------- untrusted chain
{
    $simA->reset;
    my $t = nginx_for("wss://localhost:$simA->{ws_port}/ws/chat", $other_ca->{cert});
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'tls2' });
    is($st, 200, 'untrusted: start-session 200');
    my $s = wait_status($t, 'tls2', 'reconnecting', 5);
    ok($s, 'untrusted chain: reconnecting');
    like($s->{last_error} // '', qr/certificate/i, 'last_error mentions the certificate');
    like($s->{last_error} // '', qr/not trusted/i, 'last_error says it is not trusted');
    like($s->{last_error} // '', qr/localhost:$simA->{ws_port}/, 'last_error names the server');
    is($s->{retry_count}, 1, 'retry_count 1');
    is(tls_failures($t, 'chain'), 1, 'whatsapp_tls_verify_failures_total{reason="chain"} 1');
    sleep 0.5;
    is($simA->stats->{ws_total}, 0, 'no WebSocket upgrade was sent (ws_total 0)');
    $t->stop;
}

# ---------------------------------------------------------------------------------------------- wrong host name
{
    my $t = nginx_for("wss://localhost:$simB->{ws_port}/ws/chat", $ca->{cert});
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'tls3' });
    is($st, 200, 'wrong host: start-session 200');
    my $s = wait_status($t, 'tls3', 'reconnecting', 5);
    ok($s, 'certificate for another host: reconnecting');
    like($s->{last_error} // '', qr/does not match host localhost/, 'last_error: certificate does not match the host');
    unlike($s->{last_error} // '', qr/not trusted/, 'the chain itself was trusted');
    is(tls_failures($t, 'host'), 1, 'whatsapp_tls_verify_failures_total{reason="host"} 1');
    is(tls_failures($t, 'chain'), 0, 'and none for the chain');
    sleep 0.5;
    is($simB->stats->{ws_total}, 0, 'no WebSocket upgrade was sent (ws_total 0)');
    $t->stop;
}

# ---------------------------------------------------------------------------------------------- SNI, rejected upgrade
# A small TLS server of our own records the SNI name and the request, and refuses the upgrade with 403.
{

    my $log = "$d/sni.log";
    my $srv = IO::Socket::SSL->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8, ReuseAddr => 1,
        SSL_server => 1, SSL_cert_file => $good->{cert}, SSL_key_file => $good->{key})
        or die "TLS listener: $IO::Socket::SSL::SSL_ERROR";
    my $port = $srv->sockport;
    WaTest::background(sub {
        while (1) {
            my $c = $srv->accept or next;
            my $sni = $c->get_servername // '(none)';
            my $req = '';
            my $sel = IO::Select->new($c);
            while ($req !~ /\r\n\r\n/ && $sel->can_read(2)) { my $n = sysread($c, my $buf, 4096); last unless $n; $req .= $buf }
            my ($line) = split /\r\n/, $req;
            open(my $fh, '>>', $log); print $fh "sni=$sni req=" . ($line // '') . "\n"; close $fh;
            print $c "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            $c->close(SSL_no_shutdown => 1);
        }
    });
    close $srv;
    for my $case ([ 'localhost', 'localhost' ], [ '127.0.0.1', '(none)' ]) {
        my ($host, $want) = @$case;
        unlink $log;
        my $t = nginx_for("wss://$host:$port/ws/chat", $ca->{cert});
        my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'sni1' });
        is($st, 200, "$host: start-session 200");
        my $s = wait_status($t, 'sni1', 'reconnecting', 5);
        ok($s, "$host: upgrade refused → reconnecting");
        like($s->{last_error} // '', qr/WebSocket upgrade to wss:\/\/\Q$host\E:$port\/ws\/chat rejected/,
            "$host: last_error says the upgrade was rejected");
        like($s->{last_error} // '', qr/403/, "$host: last_error carries the status 403");
        my ($first) = split /\n/, WaTest::slurp($log);
        is($first, "sni=$want req=GET /ws/chat HTTP/1.1",
            $want eq '(none)' ? 'no SNI for an IP literal (RFC 6066)' : "SNI $want, then GET /ws/chat");
        $t->stop;
    }
}

# ---------------------------------------------------------------------------------------------- silent server
# A listener that never accepts: the kernel completes the TCP handshake, then nothing ever answers.
{
    my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1)
        or die "listen: $!";
    my $port = $silent->sockport;
    for my $case ([ "ws://127.0.0.1:$port/ws/chat", qr/handshake to 127\.0\.0\.1:$port timed out/, 'WebSocket upgrade' ],
        [ "wss://localhost:$port/ws/chat", qr/TLS handshake with localhost:$port timed out/, 'TLS handshake' ]) {
        my ($url, $re, $what) = @$case;
        my $t = WaTest->new;
        $t->write_conf(http => "whatsapp_server $url;\n    whatsapp_ssl_trusted_certificate $ca->{cert};\n"
            . "    whatsapp_connect_timeout 1s;\n    whatsapp_reconnect_backoff 10s 20s;");
        $t->start;
        my $t0 = time;
        my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'quiet1' });
        is($st, 200, "$what: start-session 200");
        is($t->status('quiet1')->{status}, 'connecting', "$what: connecting while the server says nothing");
        my $s = wait_status($t, 'quiet1', 'reconnecting', 5);
        my $el = time - $t0;
        ok($s, "$what: reconnecting after whatsapp_connect_timeout");
        ok($el > 0.8 && $el < 2.5, sprintf('%s: after about 1 s (%.2f s)', $what, $el));
        like($s->{last_error} // '', $re, "$what: last_error says it timed out");
        # QUIT while waiting on the silent server: nothing holds the helper back
        ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'quiet1' });
        is($st, 200, "$what: start-session again");
        my $q = $t->quit;
        ok(defined $q && $q < 2, sprintf('%s: QUIT while waiting exits at once (%.2f s)', $what, $q // 99));
        $t->check_log;
    }
}

$_->stop for $simA, $simB;
done_testing;

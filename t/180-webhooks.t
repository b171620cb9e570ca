# Webhooks (issue 11) against the simulator and receivers written here: a contact's message becomes one
# message.received with the exact text and a valid signature; a receiver answering 500 five times gets the same
# event (same id) again until it answers 200; a URL that never answers parks the event as dead after
# whatsapp_webhook_retry_for; nginx -t rejects bad webhook lines.
use strict;
use warnings;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Digest::SHA qw(hmac_sha256_hex);
use POSIX ();
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
my $dir = $t->{dir};
my $SECRET = 'whsec_test_0123456789';
WaTest::spew("$dir/hook.secret", "$SECRET\n");
my $OVR_SECRET = 'whsec_tenants_9876543210';
WaTest::spew("$dir/override.secret", "$OVR_SECRET\n");

# A receiver: one request per connection, each logged as a JSON line (time, headers, body); the first
# $fail requests are answered 500.
sub receiver {
    my ($name, $fail, $port, %o) = @_;
    $port //= WaTest::free_port();
    my $log = "$dir/$name.log";
    WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 64, ReuseAddr => 1)
            or die "listen: $!";
        my $n = 0;
        while (my $c = $srv->accept) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); last unless $r; }
            my ($head, $body) = split /\r\n\r\n/, $buf, 2;
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            while (length($body // '') < ($len // 0)) { my $r = sysread($c, $body, 65536, length $body); last unless $r; }
            my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head;
            $n++;
            my $status = $n <= $fail ? 500 : 200;
            open(my $fh, '>>', $log) or die;
            my ($path) = $head =~ /^POST (\S+)/;
            print $fh WaTest::json_enc({ t => time, status => $status, path => $path // '', sig => $h{'x-whatsapp-signature'} // '',
                                         event => $h{'x-whatsapp-event'} // '', body => $body }), "\n";
            close $fh;
            # quiet_close: a keep-alive answer, then the receiver closes anyway after that many seconds, without
            # reading what the client sent meanwhile (as servers do at their idle limit)
            $c->autoflush(1);
            print $c "HTTP/1.1 $status X\r\nContent-Length: 2\r\n" . ($o{quiet_close} ? '' : "Connection: close\r\n") . "\r\nok";
            sleep $o{quiet_close} if $o{quiet_close};
            close $c;
        }
    });
    return ("http://127.0.0.1:$port/hook", $log);
}
sub received {
    my ($log) = @_;
    return [ map { my $r = WaTest::json_dec($_); $r->{event_json} = WaTest::json_dec($r->{body} // ''); $r }
             grep { length } split /\n/, WaTest::slurp($log) // '' ];
}
sub sig_ok {
    my ($r, $secret) = @_;
    my ($ts, $v1) = ($r->{sig} // '') =~ /^t=(\d+),v1=([0-9a-f]{64})$/ or return 0;
    return 0 if abs(time - $ts) > 300;
    return hmac_sha256_hex("$ts.$r->{body}", $secret // $SECRET) eq $v1;
}

# ------------------------------------------------------------------------------------- nginx -t validates
{
    $t->write_conf(http => "whatsapp_webhook ftp://x/;");
    my ($rc, $out) = $t->test_config;
    ok($rc && $out =~ /http:\/\/ or https:\/\//, 'nginx -t: a URL that is not http(s) is refused');
    $t->write_conf(http => "whatsapp_webhook http://127.0.0.1:1/ events=message.nope;");
    ($rc, $out) = $t->test_config;
    ok($rc && $out =~ /unknown event type "message.nope"/, 'nginx -t: an unknown event type is refused');
    $t->write_conf(http => "whatsapp_webhook http://127.0.0.1:1/ secret_file=$dir/missing.secret;");
    ($rc, $out) = $t->test_config;
    ok($rc && $out =~ /secret_file .*open\(\) failed/, 'nginx -t: a missing secret file is refused');
    WaTest::spew("$dir/error.log", '');  # the [emerg] lines above are expected
}

my ($good_url, $good_log) = receiver('good', 0);
my ($flaky_url, $flaky_log) = receiver('flaky', 5);
my $dead_port = WaTest::free_port();
my ($qr_url, $qr_log) = receiver('qr', 0);
my $sim = WaTest::Sim->start($dir);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_reconnect_backoff 1s 2s;\n"
    . "    whatsapp_webhook $good_url secret_file=$dir/hook.secret;\n"
    . "    whatsapp_webhook $flaky_url secret_file=$dir/hook.secret events=message.received;\n"
    . "    whatsapp_webhook http://127.0.0.1:$dead_port/gone events=message.received;\n"
    . "    whatsapp_webhook $qr_url secret_file=$dir/hook.secret events=session.qr;\n"
    . "    whatsapp_webhook_backoff 100ms 500ms;\n    whatsapp_webhook_retry_for 3s;\n    whatsapp_webhook_timeout 2s;\n"
    . "    whatsapp_webhook_override_secret secret_file=$dir/override.secret;");
my ($rc, $out) = $t->test_config;
ok(!$rc, 'nginx -t accepts the webhook lines') or diag $out;
$t->start;

my $ACCOUNT = '573001112233';
$t->api(POST => '/api/start-session', body => { organization_id => 'o1' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o1'); $q && $q->{success} ? $q : undef }, 10);
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10) or BAIL_OUT('o1 not connected');

# ------------------------------------------------------------------------------------- session.qr, when asked for
{
    my $ev = wait_until(sub { my ($x) = grep { ($_->{event} // '') eq 'session.qr' } @{ received($qr_log) }; $x }, 5);
    ok($ev, 'session.qr reached the URL that asked for it (events=session.qr)');
    my $d = $ev ? $ev->{event_json}{data} : {};
    is($d->{qr}, $qr->{qr_text}, 'with the QR string of GET /api/qr');
    cmp_ok($d->{expires_in} // 0, '>', 0, "expires_in $d->{expires_in}") if $ev;
    cmp_ok(abs(($d->{expires_at} // 0) - ($ev->{event_json}{timestamp} // 0) - ($d->{expires_in} // 0)), '<=', 1,
           'expires_at = timestamp + expires_in') if $ev;
    ok(sig_ok($ev), 'signed') if $ev;
    is(scalar(grep { ($_->{event} // '') eq 'session.qr' } @{ received($good_log) }), 0,
       'a URL with every event type (no events=) gets no session.qr');
}

my $st = wait_until(sub { my ($r) = grep { ($_->{event} // '') eq 'session.status' } @{ received($good_log) }; $r }, 5);
ok($st, 'session.status reached the receiver');
is($st->{event_json}{data}{state}, 'connected', 'state connected') if $st;
is($st->{event_json}{organization_id}, 'o1', 'organization_id') if $st;

my $C1 = '573009990001';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 1, name => 'Ana' });
my $text = "Confirmo ✅ ñandú, mañana 10:00";
my $t0 = time;
my ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => $text });
is($cs, 200, 'the contact sent a message');
my $r = wait_until(sub { my ($x) = grep { ($_->{event} // '') eq 'message.received' } @{ received($good_log) }; $x }, 5);
my $lat = time - $t0;
ok($r, sprintf('message.received arrived (%.3f s after the contact sent it)', $lat));
my $e = $r ? $r->{event_json} : {};
is($e->{type}, 'message.received', 'type');
is($e->{data}{text}, $text, 'the exact text (emoji, accents)');
is($e->{data}{id}, $cj->{id}, 'the WhatsApp message id');
is($e->{data}{from}, $C1, 'from: the contact');
ok(!$e->{data}{from_me}, 'not an own-device copy');
like($e->{id} // '', qr/^evt_[0-9a-f]{24}$/, 'an event id');
ok($e->{seq} && $e->{seq} > 1, "seq $e->{seq} (after session.status)") if $r;
ok(sig_ok($r), 'X-WhatsApp-Signature verifies (HMAC-SHA256 of "t.body")') if $r;
sleep 0.5;
is(scalar(grep { ($_->{event} // '') eq 'message.received' } @{ received($good_log) }), 1, 'exactly one delivery to a receiver that answered 200');

# ------------------------------------------------------------------------------------- 500 five times, then 200
my $fl = wait_until(sub { my @x = @{ received($flaky_log) }; @x >= 6 ? \@x : undef }, 15);
ok($fl, 'the flaky receiver got 6 attempts') or diag explain received($flaky_log);
if ($fl) {
    is_deeply([ map { $_->{status} } @$fl[0..5] ], [ 500, 500, 500, 500, 500, 200 ], '500 five times, then 200');
    my %ids = map { ($_->{event_json}{id} // '') => 1 } @$fl[0..5];
    is_deeply([ keys %ids ], [ $e->{id} ], 'every attempt carries the same event id');
    my %sigs = map { $_->{sig} => 1 } @$fl[0..5];
    ok((grep { sig_ok($_) } @$fl[0..5]) == 6, 'every attempt is signed validly');
    diag(sprintf('attempt times (s after the first): %s', join(' ', map { sprintf '%.2f', $_->{t} - $fl->[0]{t} } @$fl[0..5])));
    sleep 1;
    is(scalar @{ received($flaky_log) }, 6, 'no attempt after the 200');
}

# ------------------------------------------------------------------------------------- a URL that never answers
my $dead = wait_until(sub {
    my $rows = $t->db("SELECT * FROM webhook_events WHERE target = 'http://127.0.0.1:$dead_port/gone' AND state = 'dead'");
    @$rows ? $rows->[0] : undef }, 10);
ok($dead, 'the event for a refusing URL is dead after whatsapp_webhook_retry_for (3 s)');
if ($dead) {
    is($dead->{id}, $e->{id}, 'the same event id');
    like($dead->{last_error}, qr/connect\(\) to 127\.0\.0\.1:\d+ failed: Connection refused/, "last_error: $dead->{last_error}");
    cmp_ok($dead->{attempts}, '>=', 3, "$dead->{attempts} attempts");
}
like($t->error_log, qr/webhook event evt_\w+ \(message\.received, seq \d+\) to http:\/\/127\.0\.0\.1:$dead_port\/gone is dead/,
     'a clear log line for the dead event');
# ------------------------------------------------------------------------------------- dead list, replay
{
    my ($s, undef, $j) = $t->api(GET => '/api/webhooks/dead?organization_id=o1&limit=10');
    is($s, 200, 'GET /api/webhooks/dead: 200');
    my ($item) = grep { ($_->{target} // '') =~ /:$dead_port\/gone$/ } @{ $j->{items} // [] };
    ok($item, 'the dead event is listed with its target') or diag explain $j;
    is($item->{event}{id}, $e->{id}, 'as the same event (id)') if $item;
    like($item->{last_error} // '', qr/Connection refused/, 'with its last error') if $item;
    unlike(WaTest::json_enc($j), qr/$SECRET/, 'the secret is never returned');
    is($item->{replays}, 0, 'replays: 0') if $item;
    # A replay while the URL still refuses: a fresh retry window (whatsapp_webhook_retry_for from the replay,
    # the backoff from its minimum), the attempt count goes on, and it is dead again at the window's end.
    my $first_attempts = $dead->{attempts} // 0;
    my $t_replay = time;
    ($s, undef, $j) = $t->api(POST => '/api/webhooks/replay', body => { organization_id => 'o1' });
    is_deeply([ $s, $j->{replayed}, $j->{skipped} ], [ 200, 1, 0 ], 'replay while the URL still refuses: 1 replayed');
    my $again = wait_until(sub {
        my $r = $t->db("SELECT * FROM webhook_events WHERE target = 'http://127.0.0.1:$dead_port/gone'")->[0];
        $r && $r->{state} eq 'dead' && $r->{replays} == 1 ? $r : undef }, 10);
    my $lived = time - $t_replay;
    ok($again, sprintf('dead again %.1f s after the replay', $lived));
    cmp_ok($lived, '>', 2, 'not before its fresh 3 s window ended (less the 0.5 s backoff cap)') if $again;
    cmp_ok($again->{attempts}, '>=', $first_attempts + 3, "attempts count on: $first_attempts before, $again->{attempts} now") if $again;
    is($again->{created_at}, $dead->{created_at}, 'created_at (the envelope\'s timestamp) unchanged') if $again;
    like($t->error_log, qr/webhook event $e->{id} \(message\.received, seq \d+\) to \S+gone is dead after \d+ attempts \(1 replays\)/,
         'the log line says it was replayed once');
    ($s, undef, $j) = $t->api(GET => '/api/webhooks/dead?organization_id=o1&limit=10');
    ($item) = grep { ($_->{target} // '') =~ /:$dead_port\/gone$/ } @{ $j->{items} // [] };
    is($item->{replays}, 1, 'the dead list shows replays: 1') if $item;
    my (undef, $late_log) = receiver('late', 0, $dead_port);
    sleep 0.3;
    ($s, undef, $j) = $t->api(POST => '/api/webhooks/replay', body => { organization_id => 'o1' });
    is($s, 200, 'POST /api/webhooks/replay: 200');
    is($j->{replayed}, 1, 'one event replayed');
    my $late = wait_until(sub { my @x = @{ received($late_log) }; @x ? $x[0] : undef }, 5);
    ok($late, 'the replayed event reached the URL once it listened');
    is($late->{event_json}{id}, $e->{id}, 'with the same id') if $late;
    is($late->{event_json}{data}{text}, $text, 'and the same data') if $late;
    is($late->{event_json}{timestamp}, $e->{timestamp}, 'and the same timestamp: the body is the one of the first attempt') if $late;
}

# ------------------------------------------------------------------------------------- per-organization URL
{
    my ($own_url, $own_log) = receiver('own', 0);
    my ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => 'ftp://x', events => [] });
    is($s, 400, 'POST /api/webhooks: a bad URL is refused');
    ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => 'http://127.0.0.1:1/', events => ['nope'] });
    is($s, 400, 'POST /api/webhooks: an unknown event type is refused');
    ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => $own_url, events => ['message.received'] });
    is($s, 200, 'POST /api/webhooks: the organization gets its own URL') or diag explain $j;
    unlike(WaTest::json_enc($j), qr/$SECRET/, 'the secret is not returned');
    my $before = grep { ($_->{event} // '') eq 'message.received' } @{ received($good_log) };
    my ($cs, undef, $cj2) = $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => 'segundo' });
    my $own = wait_until(sub { my @x = @{ received($own_log) }; @x ? $x[0] : undef }, 5);
    ok($own, 'the next message.received went to the organization\'s URL');
    is($own->{event_json}{data}{text}, 'segundo', 'with its text') if $own;
    ok(sig_ok($own, $OVR_SECRET), 'signed with whatsapp_webhook_override_secret') if $own;
    ok(!sig_ok($own, $SECRET), 'not with the first whatsapp_webhook\'s secret') if $own;
    sleep 0.5;
    is(scalar(grep { ($_->{event} // '') eq 'message.received' } @{ received($good_log) }), $before,
       'and not to the configured URL');
    # A URL under a configured whatsapp_webhook (same origin, path below it) is that application: its secret.
    ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => "$good_url/o1", events => ['message.received'] });
    is($s, 200, 'o1\'s URL set to one under the first whatsapp_webhook');
    $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => 'tercero' });
    my $under = wait_until(sub { my ($x) = grep { ($_->{path} // '') eq '/hook/o1' } @{ received($good_log) }; $x }, 5);
    ok($under, 'the message went to /hook/o1');
    ok(sig_ok($under, $SECRET), 'signed with that whatsapp_webhook\'s secret') if $under;
}

# ------------------------------------------------------------------------------------- session.qr through POST /api/webhooks
{
    my ($qr2_url, $qr2_log) = receiver('qr2', 0);
    my ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o2', url => $qr2_url,
                                                                     events => ['session.qr', 'session.status'] });
    is($s, 200, 'POST /api/webhooks accepts events ["session.qr", ...]') or diag explain $j;
    my $before = grep { ($_->{event} // '') eq 'session.qr' } @{ received($qr_log) };
    $t->api(POST => '/api/start-session', body => { organization_id => 'o2' });
    my $q2 = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o2'); $q && $q->{success} ? $q : undef }, 10);
    my $ev = wait_until(sub { my ($x) = grep { ($_->{event} // '') eq 'session.qr' } @{ received($qr2_log) }; $x }, 5);
    ok($ev, "o2's session.qr reached o2's own URL");
    is($ev->{event_json}{data}{qr}, $q2->{qr_text}, 'with o2\'s QR string') if $ev && $q2;
    is($ev->{event_json}{organization_id}, 'o2', 'organization_id o2') if $ev;
    is(scalar(grep { ($_->{event} // '') eq 'session.qr' } @{ received($qr_log) }), $before,
       'and not to the configured session.qr URL (the override replaces it)');
}

# ------------------------------------------------------------------------------------- keep-alive
# A receiver that keeps HTTP/1.1 connections open (one child per connection, any number of requests on it):
# each accepted connection and each request is a line in its log. N events must take fewer than N connections.
sub ka_receiver {
    my ($name) = @_;
    my $port = WaTest::free_port();
    my $log = "$dir/$name.log";
    WaTest::background(sub {
        my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 64, ReuseAddr => 1)
            or die "listen: $!";
        $SIG{CHLD} = 'IGNORE';
        while (my $c = $srv->accept) {
            my $peer = $c->peerport;
            open(my $fh, '>>', $log) or die; print $fh "conn $peer\n"; close $fh;
            next if fork;  # the parent accepts the next one
            my $buf = '';
            while (1) {
                while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); POSIX::_exit(0) unless $r; }
                my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
                my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
                while (length($rest) < ($len // 0)) { my $r = sysread($c, $rest, 65536, length $rest); POSIX::_exit(0) unless $r; }
                my $body = substr($rest, 0, $len // 0);
                $buf = substr($rest, $len // 0);
                my $close = $head =~ /^Connection:\s*close/mi;
                open(my $fh, '>>', $log) or die;
                print $fh "req $peer ", ($close ? 'close' : 'keep'), " ", WaTest::json_enc(WaTest::json_dec($body)), "\n";
                close $fh;
                print $c "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                POSIX::_exit(0) if $close;
            }
        }
    });
    return ("http://127.0.0.1:$port/ka", $log);
}
{
    my ($ka_url, $ka_log) = ka_receiver('ka');
    my ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => $ka_url, events => ['message.received'] });
    is($s, 200, 'o1 now posts to a keep-alive receiver') or diag explain $j;
    my $N = 20;
    for my $i (1 .. $N) { $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => "ka $i" }); sleep 0.02 }
    my $reqs = wait_until(sub { my @r = grep { /^req / } split /\n/, WaTest::slurp($ka_log); @r >= $N ? \@r : undef }, 10);
    ok($reqs, "$N events reached the keep-alive receiver");
    my $conns = () = WaTest::slurp($ka_log) =~ /^conn /mg;
    cmp_ok($conns, '<', $N, "$N events over $conns TCP connections (HTTP/1.1 keep-alive)");
    ok(!grep({ / close / } @{ $reqs // [] }), 'no request asked for Connection: close');
    my %texts = map { /^req \d+ \w+ (.*)$/ ? (WaTest::json_dec($1)->{data}{text} => 1) : () } @{ $reqs // [] };
    is(scalar(grep { $texts{"ka $_"} } 1 .. $N), $N, 'every one of them, with its text');
}
{
    # A receiver that allows keep-alive but closes every connection 50 ms after its answer, unread: the next
    # event, already sent on that pooled connection, finds it closed without an answer and goes once more on a
    # new one (no failed attempt); every event arrives once.
    my ($qc_url, $qc_log) = receiver('quietclose', 0, undef, quiet_close => 0.05);
    my ($s, undef, $j) = $t->api(POST => '/api/webhooks', body => { organization_id => 'o1', url => $qc_url, events => ['message.received'] });
    is($s, 200, 'o1 now posts to a receiver that closes after each answer');
    my $N = 10;
    $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => "qc $_" }) for 1 .. $N;
    my $got = wait_until(sub { my @x = @{ received($qc_log) }; @x >= $N ? \@x : undef }, 10);
    ok($got, "$N events reached it");
    sleep 0.5;
    my %texts;
    $texts{ $_->{event_json}{data}{text} }++ for @{ received($qc_log) };
    is_deeply([ map { $texts{"qc $_"} // 0 } 1 .. $N ], [ (1) x $N ], 'each exactly once');
    unlike($t->error_log, qr/to \Q$qc_url\E failed/, 'no failed attempt logged for it');
}

my $delivered = $t->db("SELECT count(*) AS n FROM webhook_events WHERE target = '$flaky_url' AND state = 'delivered'");
is($delivered->[0]{n}, 1, 'the store marks the flaky delivery delivered');

$t->stop;
unlike($t->error_log, qr/\[(alert|emerg)\]|$SECRET|$OVR_SECRET/, 'no alert in the error log, the secret never logged');
done_testing;

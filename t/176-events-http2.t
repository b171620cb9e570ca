# Live push over HTTP/2 (h2c, prior knowledge, with Debian's curl): browsers reach nginx over HTTP/2 more often
# than not, and a server-sent-events stream is one long response on one HTTP/2 stream. The stream's headers, the
# current state first, the QR right after start-session, `connected` after the simulator's scan; three
# streams at once (one each per curl connection); a session-token stream that ends when its token expires; the dashboard's
# stream. Each event arrives while the response is still open (nothing is buffered until the end).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

die "Debian's curl speaks HTTP/2; this one does not\n" unless `curl -V 2>/dev/null` =~ /\bHTTP2\b/;

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
my $h2 = free_port();
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_events_heartbeat 1s;",
    server => "listen 127.0.0.1:$h2 http2;",
    locations => "location /api/ { whatsapp_api; }\n        location /dash/ { whatsapp_dashboard; }");
$t->start;

# curl in the background, its output (headers, then the body as it arrives) in a file
my $n = 0;
sub h2_stream {
    my ($path, @headers) = @_;
    my $out = "$t->{dir}/h2-" . ++$n . '.out';
    my $pid = WaTest::spawn(argv => ['curl', '-sN', '--http2-prior-knowledge', '-D', '-', '--max-time', '20',
        (map { ('-H', $_) } @headers), "http://127.0.0.1:$h2$path"], stdout => $out, stderr => "$out.err");
    return { pid => $pid, out => $out };
}
sub text_of { WaTest::slurp($_[0]{out}) // '' }
sub events_of {
    my @events;
    for my $chunk (split /\n\n/, text_of($_[0])) {
        my ($event) = $chunk =~ /^event: (\S+)/m;
        my ($data) = $chunk =~ /^data: (.*)$/m;
        push @events, { event => $event // '', data => $data // '' };
    }
    return \@events;
}
sub wait_event {
    my ($s, $what, $secs) = @_;
    return wait_until(sub { (grep { $what->($_) } @{ events_of($s) })[0] }, $secs);
}

my $key = "X-API-Key: $WaTest::KEY";
my $s1 = h2_stream('/api/events/h2a', $key);
my $first = wait_event($s1, sub { $_[0]{event} eq 'status' }, 5);
like(text_of($s1), qr{^HTTP/2 200}m, 'GET /api/events/h2a over HTTP/2: 200');
like(text_of($s1), qr{^content-type: text/event-stream}mi, 'text/event-stream');
ok($first && $first->{data} =~ /"status":"disconnected"/, 'the current state comes first, while the stream is open');

my $t0 = time;
my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'h2a' });
is($st, 200, 'start-session h2a');
my $qr = wait_event($s1, sub { $_[0]{event} eq 'qr' && $_[0]{data} =~ /"success":true/ }, 5);
my $took = time - $t0;
ok($qr && $took < 3, sprintf('qr event over HTTP/2 %.3f s after start-session (target 1 s, asserted at 3 s)', $took));
my ($qr_text) = $qr ? $qr->{data} =~ /"qr_text":"([^"]+)"/ : ();
ok($qr_text, 'it carries the QR text');

# a second and a third stream on their own connections, and the all-organizations stream
my $s2 = h2_stream('/api/events/h2a', $key);
my $all = h2_stream('/api/events', $key);
ok(wait_event($s2, sub { $_[0]{event} eq 'qr' }, 5), 'a second HTTP/2 stream gets the QR at once');
ok(wait_event($all, sub { $_[0]{event} eq 'status' && $_[0]{data} =~ /"organization_id":"h2a"/ }, 5),
    'the all-organizations stream over HTTP/2 lists h2a');

$t0 = time;
my ($sc) = $sim->control(POST => '/scan', body => { qr => $qr_text, phone => '573001112233' });
is($sc, 200, 'the simulator scanned the QR');
for my $s ($s1, $s2) {
    ok(wait_event($s, sub { $_[0]{event} eq 'status' && $_[0]{data} =~ /"status":"connected"/ }, 10),
        sprintf('connected over HTTP/2 (%.3f s after the scan)', time - $t0));
}
ok(wait_event($all, sub { $_[0]{data} =~ /"organization_id":"h2a".*"status":"connected"|"status":"connected".*"organization_id":"h2a"/ }, 5),
    'and on the all-organizations stream');

# a session-token stream (cookie) ends when its token expires, cleanly
my (undef, undef, $tok) = $t->api(POST => '/api/session-token', body => { organization_id => 'h2a', ttl => 2 });
ok($tok && $tok->{token}, 'a 2 s session token');
my $ts = h2_stream('/api/events/h2a', "Cookie: wa_token=$tok->{token}");
ok(wait_event($ts, sub { $_[0]{event} eq 'status' }, 5), 'the token stream over HTTP/2 starts');
ok(wait_until(sub { !WaTest::alive($ts->{pid}) }, 8), 'and ends after the token expires');
is(waitpid($ts->{pid}, 0) > 0 ? $? >> 8 : -1, 0, 'curl saw a complete response (exit 0), not a reset stream');

# the dashboard's stream (same origin, no key)
my $ds = h2_stream('/dash/events');
ok(wait_event($ds, sub { $_[0]{data} =~ /"h2a"/ }, 5), 'the dashboard stream over HTTP/2 lists h2a');

kill 'TERM', $_->{pid} for $s1, $s2, $all, $ds;
waitpid($_->{pid}, 0) for $s1, $s2, $all, $ds;
$t->stop;
done_testing;

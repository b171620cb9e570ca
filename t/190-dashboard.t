# `whatsapp_dashboard;` over HTTP: the page (English or Spanish by Accept-Language, its own script and style, a
# strict Content-Security-Policy, no API key, nothing from another site), its stream of every organization (state,
# phone, last error, retries, restriction, messages sent and failed today, live: a start, a scan, a send and a
# failure each show within 3 s, target 1 s, figures printed), one organization's QR stream, the start / logout /
# clear actions (the API's command path) and their same-origin check (missing, "null", foreign or malformed Origin
# → 403, nothing done), the location protected by nginx's own allow/deny and auth_basic, and nginx -t refusing
# misplaced directives. The real-browser side is t/191-dashboard-browser.t.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(encode_base64);
use lib 't/lib';
use WaTest qw(wait_until free_port);
use WaSse;

# ---------------------------------------------------------------------------------------------- nginx -t
{
    my $c = WaTest->new;
    my %bad = (
        'location ~ ^/dash { whatsapp_dashboard; }' => qr/needs a prefix location/,
        'location = /dash { whatsapp_dashboard; }'  => qr/needs a prefix location/,
        'location /dash/ { whatsapp_api; whatsapp_dashboard; }' => qr/cannot share a location with whatsapp_api/,
        'location /dash/ { whatsapp_dashboard; whatsapp_metrics; }' => qr/cannot share a location with whatsapp_dashboard/,
        'location /dash/ { whatsapp_dashboard; whatsapp_dashboard; }' => qr/is duplicate/,
    );
    for my $loc (sort keys %bad) {
        $c->write_conf(locations => $loc);
        my ($rc, $out) = $c->test_config;
        ok($rc != 0 && $out =~ $bad{$loc}, "nginx -t refuses: $loc") or diag $out;
    }
    $c->write_conf(locations => 'location /dash/ { whatsapp_dashboard; }');
    my ($rc, $out) = $c->test_config;
    is($rc, 0, 'nginx -t accepts location /dash/ { whatsapp_dashboard; }') or diag $out;
}

my $t = WaTest->new;
my $d = $t->{dir};
my $sim = WaTest::Sim->start($d);
my $hash = `openssl passwd -apr1 s3cret-ops`;
chomp $hash;
WaTest::spew("$d/htpasswd", "ops:$hash\n", 0644);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_send_rate 600r/m burst=300;\n    whatsapp_send_timeout 10s;\n"
        . "    whatsapp_events_heartbeat 1s;",
    locations => "location /api/ { whatsapp_api; }\n"
        . "        location /dashboard/ { whatsapp_dashboard; }\n"
        . "        location /board { whatsapp_dashboard; }\n"
        . "        location /closed/ { deny all; whatsapp_dashboard; }\n"
        . "        location /ops/ { auth_basic \"ops\"; auth_basic_user_file $d/htpasswd; whatsapp_dashboard; }");
$t->start;
my $port = $t->{port};
my $SELF = "http://127.0.0.1:$port";
my %same = (Host => "127.0.0.1:$port", Origin => $SELF);

# ---------------------------------------------------------------------------------------------- the page
my ($st, $h, undef, $page) = $t->http(GET => '/dashboard/');
is($st, 200, 'GET /dashboard/: 200');
like($h->{'content-type'}, qr{^text/html; charset=utf-8}, 'text/html; charset=utf-8');
like($h->{'content-security-policy'} // '', qr/default-src 'none'.*script-src 'self'.*frame-ancestors 'none'/,
    "Content-Security-Policy: default-src 'none', script-src 'self', frame-ancestors 'none'");
is($h->{'x-frame-options'}, 'DENY', 'X-Frame-Options: DENY');
is($h->{'x-content-type-options'}, 'nosniff', 'X-Content-Type-Options: nosniff');
is($h->{'cache-control'}, 'no-store', 'Cache-Control: no-store');
like($h->{vary} // '', qr/Accept-Language/, 'Vary: Accept-Language');
like($page, qr/<html lang="en">/, 'no Accept-Language: English');
like($page, qr{<h1>WhatsApp sessions</h1>}, 'English title');
like($page, qr{data-base="/dashboard/"}, 'the page knows its base path');
like($page, qr{<script src="/dashboard/dashboard\.js" defer></script>}, 'its own script');
unlike($page, qr/<script>/, 'no inline script (the CSP would refuse it anyway)');
my (undef, $jh, undef, $js) = $t->http(GET => '/dashboard/dashboard.js');
my (undef, $ch, undef, $css) = $t->http(GET => '/dashboard/dashboard.css');
like($jh->{'content-type'}, qr{^text/javascript}, 'dashboard.js: text/javascript');
like($ch->{'content-type'}, qr{^text/css}, 'dashboard.css: text/css');
ok(length($js) > 2000 && length($css) > 500, sprintf('script %d bytes, style %d bytes', length $js, length $css));
for ([page => $page], [script => $js], [style => $css]) {
    my ($name, $body) = @$_;
    unlike($body, qr{(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/}i, "$name: nothing from another site (no CDN)");
    ok(index($body, $WaTest::KEY) < 0, "$name: no API key");
}
unlike($js, qr/innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'the script never writes markup (textContent only)');
like($js, qr/textContent/, 'it writes text');

my %lang = (
    'es-CO,es;q=0.9,en;q=0.8' => 'es', 'es' => 'es', 'ES-419' => 'es', 'en;q=0.5, es-MX;q=0.8' => 'es',
    'en-US,en;q=0.9,es;q=0.8' => 'en', 'fr-FR, es;q=0.9' => 'en', 'es;q=0' => 'en', 'eo, es;q=0.5' => 'en',
    'estonian' => 'en', '*' => 'en', ('x' x 3000) => 'en',
);
for my $al (sort keys %lang) {
    my (undef, undef, undef, $p) = $t->http(GET => '/dashboard/', headers => { 'Accept-Language' => $al });
    my ($got) = $p =~ /<html lang="(\w+)">/;
    is($got, $lang{$al}, 'Accept-Language ' . substr($al, 0, 40) . " → $lang{$al}");
}
my (undef, undef, undef, $es) = $t->http(GET => '/dashboard/', headers => { 'Accept-Language' => 'es-CO' });
like($es, qr{<h1>Sesiones de WhatsApp</h1>}, 'Spanish title');
like($es, qr{<th>Enviados hoy</th><th>Fallidos hoy</th>}, 'Spanish column names');
like($es, qr{>Cerrar sesión</button>}, 'Spanish buttons');
like($js, qr/connected: 'Conectado'/, 'the script has Spanish state names too');

($st, $h) = $t->http(HEAD => '/dashboard/');
is($st, 200, 'HEAD /dashboard/: 200');
($st, $h) = $t->http(GET => '/board');
is($st, 301, 'location /board: GET /board → 301');
like($h->{location} // '', qr{/board/$}, 'to /board/');
(undef, undef, undef, my $bp) = $t->http(GET => '/board/');
like($bp, qr{data-base="/board/"}, 'GET /board/: the page with its base path');
my (undef, undef, $nf) = $t->http(GET => '/dashboard/nothing');
is($nf->{code}, 'not_found', 'an unknown path: 404 not_found');
($st, $h) = $t->http(GET => '/dashboard/logout');
is($st, 405, 'GET on an action: 405');
is($h->{allow}, 'POST', 'Allow: POST');
($st, $h) = $t->http(POST => '/dashboard/', body => {}, headers => \%same);
is($st, 405, 'POST on the page: 405');

# ---------------------------------------------------------------------------------------------- nginx protects it
($st) = $t->http(GET => '/closed/');
is($st, 403, 'deny all: 403 from nginx');
($st) = $t->http(GET => '/ops/');
is($st, 401, 'auth_basic without credentials: 401');
($st) = $t->http(GET => '/ops/', headers => { Authorization => 'Basic ' . encode_base64('ops:wrong', '') });
is($st, 401, 'auth_basic with a wrong password: 401');
my $auth = 'Basic ' . encode_base64('ops:s3cret-ops', '');
($st) = $t->http(GET => '/ops/', headers => { Authorization => $auth });
is($st, 200, 'auth_basic with the password: 200');
($st) = $t->http(POST => '/ops/start-session', body => { organization_id => 'd1' }, headers => \%same);
is($st, 401, 'an action without credentials: 401 (nginx answers before the module)');

# ---------------------------------------------------------------------------------------------- the stream
my $ds = WaSse->open($port, '/dashboard/events');
is($ds->status, 200, 'GET /dashboard/events: 200 (no API key)');
like($ds->headers->{'content-type'} // '', qr{^text/event-stream}, 'text/event-stream');
my $ready = $ds->wait_for(sub { $_[0]{event} eq 'ready' }, 3);
is($ready->{json}{organizations}, 0, 'an empty zone: ready with 0 organizations');

# Started from the dashboard (behind auth_basic, same origin): d1 shows on the open stream.
my $t0 = time;
my ($ss, undef, $sj) = $t->http(POST => '/ops/start-session', body => { organization_id => 'd1' },
    headers => { %same, Authorization => $auth });
is($ss, 200, 'POST /ops/start-session with credentials and the same Origin: 200') or diag explain $sj;
my $qr_ev = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{status} eq 'qr_ready' }, 5);
my $took = $qr_ev ? $qr_ev->{t} - $t0 : 99;
ok($took < 3, sprintf('d1 qr_ready on the dashboard stream %.3f s after the action (target 1 s, asserted at 3 s)', $took));
my $row = $qr_ev->{json} // {};
is_deeply([sort keys %$row], [sort qw(organization_id status connected has_qr phone_number phone last_error retry_count
    connected_at state_since next_retry_in wanted restricted_until sent_today failed_today)], 'a row has every field the page shows');
ok(!exists $row->{qr}, 'no QR image in the all-organizations stream');
is($row->{has_qr}, JSON::PP::true, 'has_qr');
is_deeply([@$row{qw(sent_today failed_today retry_count)}], [0, 0, 0], 'nothing sent, failed or retried yet');
is($row->{restricted_until}, undef, 'restricted_until null');

# One organization's stream in the dashboard's location: status and the QR image, no key.
my $one = WaSse->open($port, '/dashboard/events/d1');
is($one->status, 200, 'GET /dashboard/events/d1: 200');
my $qr = $one->wait_for(sub { $_[0]{event} eq 'qr' }, 3);
like($qr->{json}{qr} // '', qr{^data:image/png;base64,}, 'its qr event carries the PNG');
my (undef, undef, $api_qr) = $t->api(GET => '/api/qr/d1');
is($qr->{json}{qr_text}, $api_qr->{qr_text}, 'the same QR as GET /api/qr');
my ($bad) = $t->http(GET => '/dashboard/events/a..b');
is($bad, 400, 'an invalid organization id: 400');

# The scan: connected with the phone, live.
my $ACCOUNT = '573001112233';
my ($sc) = $sim->control(POST => '/scan', body => { qr => $api_qr->{qr_text}, phone => $ACCOUNT });
$t0 = time;
is($sc, 200, 'the simulator scanned the QR');
my $conn = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{status} eq 'connected' }, 5);
$took = $conn ? $conn->{t} - $t0 : 99;
ok($took < 3, sprintf('d1 connected on the dashboard stream %.3f s after the scan (target 1 s, asserted at 3 s)', $took));
is($conn->{json}{phone_number}, $ACCOUNT, 'with the phone');
ok($one->wait_for(sub { $_[0]{event} eq 'status' && $_[0]{json}{status} eq 'connected' }, 3), 'the one-organization stream too');
wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);

# Sent and failed today: counters change without a state change, and still show at once.
my $C1 = '573009990001';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 1, name => 'Ana' });
$t0 = time;
my ($ms) = $t->api(POST => '/api/send-message', body => { organization_id => 'd1', phone => $C1, message => 'hola' }, timeout => 15);
is($ms, 200, 'a message sent');
my $sent = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{sent_today} == 1 }, 5);
$took = $sent ? $sent->{t} - $t0 : 99;
ok($took < 3, sprintf('sent_today 1 on the stream %.3f s after the send (target 1 s, asserted at 3 s)', $took));
is($sent->{json}{status}, 'connected', 'still connected');
$t0 = time;
my ($nw) = $t->api(POST => '/api/send-message', body => { organization_id => 'd1', phone => '573005550000', message => 'nadie' }, timeout => 15);
is($nw, 422, 'a number without WhatsApp: 422');
my $fail = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{failed_today} == 1 }, 5);
$took = $fail ? $fail->{t} - $t0 : 99;
ok($took < 3, sprintf('failed_today 1 on the stream %.3f s after the failure (target 1 s, asserted at 3 s)', $took));
is($fail->{json}{sent_today}, 1, 'sent_today still 1');
# WhatsApp restricts the number (an ack error 463): restricted_until shows, with the failure.
$sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'ack_error', code => 463 });
my (undef, undef, $x463) = $t->api(POST => '/api/send-message', body => { organization_id => 'd1', phone => $C1, message => 'otra' }, timeout => 15);
is($x463->{error_code}, 463, 'an ack error 463');
my $restr = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{restricted_until} }, 5);
like($restr->{json}{restricted_until} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "restricted_until on the stream ($restr->{json}{restricted_until})");
ok($ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{failed_today} == 2 }, 5)
    || ($restr->{json}{failed_today} // 0) == 2, 'failed_today 2 (the 463 left for the server, so sent_today counts it too)');
my @ids = map { $_->{id} } grep { $_->{event} eq 'org' } $ds->events;
is_deeply(\@ids, [sort { $a <=> $b } @ids], "ids rise (@ids)");

# A reconnect with Last-Event-ID: only what changed after it (nothing), then ready with the count.
my $res = WaSse->open($port, '/dashboard/events', headers => { 'Last-Event-ID' => $ids[-1] });
my $r1 = $res->next(2);
is($r1->{event}, 'ready', 'resumed after the last id: nothing missed, ready at once');
is($r1->{json}{organizations}, 1, 'ready counts the organizations (1)');
cmp_ok($r1->{id} // 0, '>=', $ids[-1], "ready carries the zone's change sequence as its id ($r1->{id})");
$res->close;
my $fresh = WaSse->open($port, '/dashboard/events');
my $f1 = $fresh->next(2);
is($f1->{json}{organization_id}, 'd1', 'a new stream starts with every organization');
is_deeply([@{ $f1->{json} }{qw(status sent_today failed_today)}], ['connected', 2, 2], 'as it is now (2 sent, 2 failed)');
$fresh->close;
{
    my $c0 = $ds->comments;
    my $end = time + 2.5;
    $ds->pump(0.2) while time < $end;
    ok($ds->comments - $c0 >= 2, 'heartbeat comments on the dashboard stream (' . ($ds->comments - $c0) . ' in 2.5 s)');
}

# ---------------------------------------------------------------------------------------------- the same-origin check
sub raw_post {
    my ($path, @headers) = @_;
    my $body = '{"organization_id":"d1"}';
    my $req = "POST $path HTTP/1.1\r\n" . join('', map { "$_\r\n" } @headers)
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
    return WaTest::parse_response(WaTest::http_raw($port, $req));
}
my @refused = (
    ['no Origin', "Host: 127.0.0.1:$port"],
    ['Origin: null', "Host: 127.0.0.1:$port", 'Origin: null'],
    ['a foreign site', "Host: 127.0.0.1:$port", 'Origin: http://evil.example'],
    ['another port', "Host: 127.0.0.1:$port", 'Origin: http://127.0.0.1:' . free_port()],
    ['another host name', "Host: 127.0.0.1:$port", "Origin: http://localhost:$port"],
    ['a path in the Origin', "Host: 127.0.0.1:$port", "Origin: $SELF/x"],
    ['user info', "Host: 127.0.0.1:$port", "Origin: http://a\@127.0.0.1:$port"],
    ['another scheme', "Host: 127.0.0.1:$port", "Origin: ftp://127.0.0.1:$port"],
    ['two Origin headers', "Host: 127.0.0.1:$port", "Origin: $SELF", 'Origin: http://evil.example'],
    ['the Host lacks the port', 'Host: 127.0.0.1', "Origin: $SELF"],
);
for my $case (@refused) {
    my ($name, @hdr) = @$case;
    for my $action (qw(logout clear-session)) {
        my ($rs, undef, $rj) = raw_post("/dashboard/$action", @hdr);
        ok($rs == 403 && ($rj->{code} // '') eq 'forbidden_origin', "$action with $name: 403 forbidden_origin") or diag "$rs";
    }
}
is($t->status('d1')->{status}, 'connected', 'after all of them d1 is still connected (nothing was done)');
my (undef, undef, $acct) = $sim->control(GET => "/accounts/$ACCOUNT");
ok(($acct->{devices}[0]{connected} // 0) && !$acct->{devices}[0]{removed}, 'and still linked on the simulator');
like($t->error_log, qr/whatsapp dashboard: action refused: missing or foreign Origin header/, 'refusals are logged (info)');

my ($cs, undef, $cj) = $t->http(POST => '/dashboard/start-session', body => { organization_id => 'd2' },
    headers => { Host => "127.0.0.1:$port", Origin => "https://127.0.0.1:$port" });
is($cs, 200, 'an https Origin for the same host and port (TLS ended by a proxy in front): allowed') or diag explain $cj;
($cs, undef, $cj) = $t->http(POST => '/dashboard/start-session', body => { organization_id => 'd3' },
    headers => { Host => 'Localhost', Origin => 'http://localhost:80' });
is($cs, 200, 'host names compare case-insensitively, with the default port implied');

# Bad bodies, with the right Origin: the API's checks.
($cs, undef, $cj) = $t->http(POST => '/dashboard/logout', body => { organization_id => 'a/b' }, headers => \%same);
is($cj->{code}, 'invalid_organization_id', 'an invalid organization id: 400 invalid_organization_id');
($cs, undef, $cj) = $t->http(POST => '/dashboard/logout', body => 'organization_id=d1',
    headers => { %same, 'Content-Type' => 'application/x-www-form-urlencoded' });
is($cs, 415, 'a form post: 415 (JSON only)');
($cs) = $t->http(POST => '/dashboard/logout', body => { organization_id => 'd1', pad => 'x' x 2000 }, headers => \%same);
is($cs, 413, 'a body over 1 KiB: 413');
is($t->status('d1')->{status}, 'connected', 'd1 still connected');

# Logout from the dashboard: the API's command path, shown live.
$t0 = time;
my ($ls, undef, $lj) = $t->http(POST => '/dashboard/logout', body => { organization_id => 'd1' }, headers => \%same);
is($ls, 200, 'POST /dashboard/logout with the same Origin: 200') or diag explain $lj;
ok($lj->{success}, 'the API\'s answer (success)');
my $out = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd1' && $_[0]{json}{status} ne 'connected' }, 5);
$took = $out ? $out->{t} - $t0 : 99;
ok($took < 3, sprintf('d1 %s on the dashboard stream %.3f s after the logout (target 1 s, asserted at 3 s)',
    $out->{json}{status} // '-', $took));
is($lj->{unlinked_on_server}, JSON::PP::true, 'unlinked on the server');
ok(wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{removed} // 0) }, 5),
    'the simulator removed the companion device');
my ($cl, undef, $clj) = $t->http(POST => '/dashboard/clear-session', body => { organization_id => 'd2' }, headers => \%same);
is($cl, 200, 'POST /dashboard/clear-session: 200') or diag explain $clj;
ok($ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'd2' && $_[0]{json}{status} eq 'disconnected' }, 5),
    'd2 disconnected on the stream');

# A reload ends the dashboard's streams cleanly (the old workers exit); a reconnect gets every organization again.
{
    my @w0 = $t->worker_pids;
    $t->reload;
    ok(wait_until(sub { $ds->pump(0.05); $one->pump(0.05); $ds->eof && $one->eof }, 10), 'a reload ends both streams');
    ok($ds->{last_chunk} && $one->{last_chunk}, 'with the terminating chunk (EventSource reconnects)');
    ok(wait_until(sub { !grep { WaTest::alive($_) } @w0 }, 10), 'the old workers exit');
    my $again = WaSse->open($port, '/dashboard/events');
    my @snap;
    while (my $e = $again->next(1)) { push @snap, $e; last if $e->{event} eq 'ready' }
    is_deeply([sort map { $_->{json}{organization_id} } grep { $_->{event} eq 'org' } @snap], [qw(d1 d2 d3)],
        'a new stream from a new worker: every organization');
    $again->close;
}

$ds->close;
$one->close;
$t->stop;
done_testing;

# Every route and every error of the HTTP contract (../shared/spec/http-api.md), with whatsapp_server on a
# closed local port (no session can get past the TCP connect).
use strict;
use warnings;
use utf8;
use Test::More;
use Time::HiRes qw(sleep);
use Time::Local ();
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc);

my $t = WaTest->new;
my $d = $t->{dir};
my $closed = free_port();
my $key2 = 'second-key-ABCDEFGH-42';
my $wrong = 'WRONG-key-zz-9876-qwerty';
$t->write_conf(
    http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_api_key $key2;\n"
        . "    whatsapp_max_body 1k;\n    whatsapp_reconnect_backoff 5s 10s;\n    " . $t->key_logs_conf,
    locations => "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }\n"
        . "        location /whatsapp/ { whatsapp_api; }\n        location /custom/ { whatsapp_api /custom; }\n"
        . "        location /gw/v1/ { whatsapp_api /gw/v1/; }");
$t->start;

my %JSONH = ('Content-Type' => 'application/json');

sub is_error {
    my ($r, $status, $code, $name) = @_;
    my ($st, $h, $j, $body) = @$r;
    subtest $name => sub {
        is($st, $status, "HTTP $status");
        is($h->{'content-type'}, 'application/json', 'Content-Type application/json');
        ok($j && ref $j eq 'HASH', 'body is a JSON object') or diag $body;
        ok(defined $j->{success} && !$j->{success}, 'success false');
        is($j->{code}, $code, "code $code");
        ok(defined $j->{error} && !ref $j->{error} && length $j->{error} > 5, 'error sentence');
    };
}

sub post { my ($path, $body, %o) = @_; [ $t->api(POST => $path, body => $body, %o) ] }
sub get  { my ($path, %o) = @_; [ $t->api(GET => $path, %o) ] }

# ---------------------------------------------------------------------------------------------- health
{
    my ($st, $h, $j, $body) = $t->http(GET => '/health');
    is($st, 200, 'GET /health without a key: 200');
    is($h->{'content-type'}, 'application/json', '/health is JSON');
    is_deeply($j, { status => 'ok' }, '/health body {"status":"ok"}');
    ($st, undef, $j) = $t->http(GET => '/whatsapp/health');
    is($st, 200, 'GET /whatsapp/health (mounted) without a key: 200');
    is_deeply($j, { status => 'ok' }, '/whatsapp/health body');
    is_error([ $t->http(POST => '/health', body => {}) ], 405, 'method_not_allowed', 'POST /health: 405');
}

# ---------------------------------------------------------------------------------------------- auth
is_error([ $t->http(GET => '/api/health') ], 401, 'unauthorized', '/api/health without key: 401');
is_error([ $t->http(GET => '/api/health', headers => { 'X-API-Key' => $wrong }) ], 401, 'unauthorized',
    '/api/health with a wrong key: 401');
is_error([ $t->http(GET => '/api/health', headers => { 'X-API-Key' => '' }) ], 401, 'unauthorized',
    'empty key: 401');
is_error([ $t->http(GET => '/api/health', headers => { 'X-API-Key' => "$WaTest::KEY-" }) ], 401, 'unauthorized',
    'key with an extra character: 401');
is_error([ $t->http(GET => '/api/health', headers => { 'X-API-Key' => substr($WaTest::KEY, 0, -1) }) ], 401,
    'unauthorized', 'key prefix: 401');
is_error([ $t->http(GET => '/api/status/23', headers => { 'X-API-Key' => $wrong }) ], 401, 'unauthorized',
    '/api/status with a wrong key: 401');
is_error([ $t->http(GET => '/api/connections') ], 401, 'unauthorized', '/api/connections without key: 401');
is_error([ $t->http(POST => '/api/start-session', body => { organization_id => 'noauth' }) ], 401, 'unauthorized',
    'POST start-session without key: 401');
is_error([ $t->http(POST => '/api/send-message', body => 'not json', headers => { %JSONH, 'X-API-Key' => $wrong }) ],
    401, 'unauthorized', 'POST with a wrong key and a bad body: 401 (auth first)');
is_error([ $t->http(GET => '/api/nope') ], 401, 'unauthorized', 'unknown /api route without key: 401');
is_error([ $t->http(GET => '/whatsapp/api/status/23') ], 401, 'unauthorized', 'mounted status without key: 401');
# Several X-API-Key headers: refused, whichever comes first (a proxy in between may keep either one).
{
    my $two = sub {
        my ($k1, $k2) = @_;
        return [ WaTest::parse_response(WaTest::http_raw($t->{port}, "GET /api/health HTTP/1.1\r\nHost: localhost\r\n"
            . "X-API-Key: $k1\r\nX-API-Key: $k2\r\nConnection: close\r\n\r\n")) ];
    };
    is_error($two->($WaTest::KEY, $wrong), 401, 'unauthorized', 'a valid then a wrong X-API-Key: 401');
    is_error($two->($wrong, $WaTest::KEY), 401, 'unauthorized', 'a wrong then a valid X-API-Key: 401');
    is_error($two->($WaTest::KEY, $WaTest::KEY), 401, 'unauthorized', 'the valid X-API-Key twice: 401');
    is_error($two->($WaTest::KEY, $key2), 401, 'unauthorized', 'two different valid keys: 401');
}
{
    my ($st) = $t->http(GET => '/api/health', headers => { 'X-API-Key' => $key2 });
    is($st, 200, 'second configured key is accepted');
    ($st) = $t->http(GET => '/api/health', headers => { 'x-api-key' => $WaTest::KEY });
    is($st, 200, 'header name is case-insensitive');
}

# ---------------------------------------------------------------------------------------------- status of an unknown org
my @STATUS_FIELDS = qw(success status connected has_qr phone_number phone qr last_error retry_count connected_at);
{
    my ($st, $h, $j) = $t->api(GET => '/api/status/never-seen-org');
    is($st, 200, 'status of a never-seen org: 200');
    ok(exists $j->{$_}, "status has field $_") for @STATUS_FIELDS;
    ok($j->{success}, 'success true');
    is($j->{status}, 'disconnected', 'status disconnected');
    ok(JSON::PP::is_bool($j->{connected}) && !$j->{connected}, 'connected false (JSON boolean)');
    ok(JSON::PP::is_bool($j->{has_qr}) && !$j->{has_qr}, 'has_qr false (JSON boolean)');
    is($j->{$_}, undef, "$_ null") for qw(phone_number phone qr last_error connected_at);
    is($j->{retry_count}, 0, 'retry_count 0');
    is($h->{'content-type'}, 'application/json', 'JSON content type');

    ($st, undef, $j) = $t->api(GET => '/api/qr/never-seen-org');
    is($st, 200, 'qr of a never-seen org: 200');
    ok(exists $j->{success} && !$j->{success}, 'qr: success false');
    ok(exists $j->{qr} && !defined $j->{qr}, 'qr: null');
    is($j->{status}, 'disconnected', 'qr: status disconnected');

    is_error(get('/api/messages/never-seen-org/3EB0C4A1B2'), 404, 'not_found', 'unknown message id: 404');
}

# ---------------------------------------------------------------------------------------------- org id validation
for my $bad ('..', 'a/b', "a\x{0}b", 'x' x 65, '', 'a.b', 'ñandú', 'a b', '23 ', "a\nb") {
    (my $show = $bad) =~ s/([^\x20-\x7e])/sprintf('\\x{%x}', ord $1)/ge;
    is_error(post('/api/start-session', { organization_id => $bad }), 400, 'invalid_organization_id',
        "start-session organization_id \"$show\" (" . length($bad) . " chars): 400");
}
is_error(post('/api/start-session', '{"organization_id":"a\u0000b"}', headers => \%JSONH), 400,
    'invalid_organization_id', 'organization_id with an escaped NUL ("a\\u0000b"): 400 invalid_organization_id');
is_error(post('/api/start-session', '{"organization_id":1.5}', headers => \%JSONH), 400, 'invalid_organization_id',
    'organization_id as a float: 400');
is_error(post('/api/start-session', '{"organization_id":true}', headers => \%JSONH), 400, 'invalid_organization_id',
    'organization_id as a boolean: 400');
is_error(post('/api/start-session', '{"organization_id":["23"]}', headers => \%JSONH), 400,
    'invalid_organization_id', 'organization_id as an array: 400');
is_error(post('/api/logout', { organization_id => '../etc' }), 400, 'invalid_organization_id', 'logout "../etc": 400');
is_error(post('/api/clear-session', { organization_id => 'a/b' }), 400, 'invalid_organization_id',
    'clear-session "a/b": 400');
is_error(post('/api/send-message', { organization_id => '..', phone => '3001234567', message => 'x' }), 400,
    'invalid_organization_id', 'send-message "..": 400');
is_error(get('/api/status/a.b'), 400, 'invalid_organization_id', 'GET /api/status/a.b: 400');
is_error(get('/api/status/' . ('y' x 65)), 400, 'invalid_organization_id', 'GET /api/status/<65 chars>: 400');
is_error(get('/api/status/%C3%B1'), 400, 'invalid_organization_id', 'GET /api/status/ñ: 400');
is_error(get('/api/qr/a.b'), 400, 'invalid_organization_id', 'GET /api/qr/a.b: 400');
is_error(get('/api/messages/a.b/X1'), 400, 'invalid_organization_id', 'GET /api/messages/a.b/X1: 400');
ok(!-e "$t->{state_dir}/a", 'no directory was created for a rejected id');
{
    my $id64 = join '', map { ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '_', '-')[$_ % 64] } 0 .. 63;
    my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => $id64 });
    is($st, 200, '64-character organization_id accepted') or diag explain $j;
    ($st, undef, $j) = $t->api(GET => "/api/status/$id64");
    is($st, 200, 'status of the 64-character id: 200');
    isnt($j->{status}, 'disconnected', '64-character id session is running');
    ok(wait_until(sub { my $r = $t->org_row($id64); $r && $r->{wanted} }, 5), '64-character id has its row in the store');
}

# ---------------------------------------------------------------------------------------------- body errors
is_error(post('/api/start-session', '{"organization_id": "23"', headers => \%JSONH), 400, 'invalid_json',
    'truncated JSON: 400 invalid_json');
is_error(post('/api/start-session', "{'organization_id': '23'}", headers => \%JSONH), 400, 'invalid_json',
    'single-quoted pseudo-JSON: 400');
is_error(post('/api/start-session', '', headers => \%JSONH), 400, 'invalid_json', 'empty body: 400 invalid_json');
is_error(post('/api/start-session', '["23"]', headers => \%JSONH), 400, 'invalid_json', 'JSON array body: 400');
is_error(post('/api/start-session', '"23"', headers => \%JSONH), 400, 'invalid_json', 'JSON string body: 400');
is_error(post('/api/start-session', "\xff\xfe{}", headers => \%JSONH), 400, 'invalid_json', 'invalid UTF-8: 400');
is_error(post('/api/start-session', {}), 400, 'missing_field', 'missing organization_id: 400 missing_field');
is_error(post('/api/start-session', { org => '23' }), 400, 'missing_field', 'misspelt field: 400 missing_field');
is_error(post('/api/start-session', '{"organization_id":"23"}', headers => { 'Content-Type' => 'text/plain' }),
    415, 'unsupported_media_type', 'text/plain body: 415');
is_error(post('/api/start-session', '{"organization_id":"23"}',
        headers => { 'Content-Type' => 'application/x-www-form-urlencoded' }),
    415, 'unsupported_media_type', 'form body: 415');
is_error(post('/api/start-session', '{"organization_id":"23"}', headers => { 'Content-Type' => undef }), 415,
    'unsupported_media_type', 'no Content-Type: 415');
is_error(post('/api/start-session', '{"organization_id":"23"}', headers => { 'Content-Type' => 'application/jsonx' }),
    415, 'unsupported_media_type', 'application/jsonx: 415');
{
    my ($st) = $t->api(POST => '/api/start-session', body => '{"organization_id":"ct1"}',
        headers => { 'Content-Type' => 'Application/JSON; charset=utf-8' });
    is($st, 200, 'Content-Type "Application/JSON; charset=utf-8" accepted');
}

# whatsapp_max_body 1k
{
    my $big = json_enc({ organization_id => '23', pad => 'p' x 2000 });
    is_error(post('/api/start-session', $big, headers => \%JSONH), 413, 'body_too_large',
        '2 KB body with Content-Length: 413');
    my $limit = '{"organization_id":"size1"}';
    $limit .= ' ' x (1024 - length $limit);
    my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => $limit, headers => \%JSONH);
    is($st, 200, 'body of exactly 1024 bytes accepted') or diag explain $j;
    my $over = $limit . ' ';
    is_error(post('/api/start-session', $over, headers => \%JSONH), 413, 'body_too_large', '1025-byte body: 413');

    my $chunked = sub {
        my ($body) = @_;
        my $req = "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\n"
            . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        for (my $i = 0; $i < length $body; $i += 300) {
            my $c = substr($body, $i, 300);
            $req .= sprintf("%x\r\n%s\r\n", length $c, $c);
        }
        $req .= "0\r\n\r\n";
        return [ WaTest::parse_response(WaTest::http_raw($t->{port}, $req)) ];
    };
    is_error($chunked->($big), 413, 'body_too_large', '2 KB chunked body: 413');
    my $r = $chunked->('{"organization_id":"chunk1"}' . (' ' x 600));
    is($r->[0], 200, '628-byte chunked body accepted') or diag $r->[3];
    is($r->[2]{status}, 'connecting', 'chunked start-session: connecting');
}

# ---------------------------------------------------------------------------------------------- routes and methods
is_error(get('/api/nope'), 404, 'not_found', 'GET /api/nope: 404');
is_error(get('/api/status'), 404, 'not_found', 'GET /api/status (no org): 404');
is_error(get('/api/status/23/extra'), 404, 'not_found', 'GET /api/status/23/extra: 404');
is_error(get('/api/'), 404, 'not_found', 'GET /api/: 404');
is_error(post('/api/send-messages', { organization_id => '23' }), 404, 'not_found', 'POST /api/send-messages: 404');
is_error(get('/whatsapp/api/nope'), 404, 'not_found', 'mounted unknown route: 404');
for my $p (qw(/api/start-session /api/send-message /api/logout /api/clear-session)) {
    my $r = get($p);
    is_error($r, 405, 'method_not_allowed', "GET $p: 405");
    is($r->[1]{allow}, 'POST', "GET $p: Allow: POST");
}
for my $p (qw(/api/health /api/connections /api/status/23 /api/qr/23 /api/messages/23/X1)) {
    my $r = post($p, { organization_id => '23' });
    is_error($r, 405, 'method_not_allowed', "POST $p: 405");
    is($r->[1]{allow}, 'GET', "POST $p: Allow: GET");
}
{
    my $r = [ $t->api(DELETE => '/api/status/23') ];
    is_error($r, 405, 'method_not_allowed', 'DELETE /api/status/23: 405');
    is($r->[1]{allow}, 'GET', 'DELETE: Allow: GET');
}

# ---------------------------------------------------------------------------------------------- send-message
is_error(post('/api/send-message', { organization_id => '23', message => 'hola' }), 400, 'missing_field',
    'send without phone: missing_field');
is_error(post('/api/send-message', { organization_id => '23', phone => '3001234567' }), 400, 'missing_field',
    'send without message: missing_field');
is_error(post('/api/send-message', { phone => '3001234567', message => 'x' }), 400, 'missing_field',
    'send without organization_id: missing_field');
is_error(post('/api/send-message', { organization_id => '23', phone => 'abc', message => 'hola' }), 400,
    'invalid_phone', 'phone "abc": invalid_phone');
is_error(post('/api/send-message', { organization_id => '23', phone => '12', message => 'hola' }), 400,
    'invalid_phone', 'phone "12": invalid_phone');
is_error(post('/api/send-message', { organization_id => '23', phone => '3001234567', message => '' }), 400,
    'invalid_message', 'empty message: invalid_message');
is_error(post('/api/send-message', '{"organization_id":"23","phone":"3001234567","message":42}', headers => \%JSONH),
    400, 'invalid_message', 'message as a number: invalid_message');
{
    my $r = post('/api/send-message', { organization_id => '23', phone => '3001234567', message => 'Hola' });
    is_error($r, 409, 'not_connected', 'send on a session that is not connected: 409 not_connected');
    like($r->[2]{error}, qr/\b23\b/, 'the error names the organization');
    $r = post('/api/send-message', { organization_id => 23, phone => '+57 (300) 123-4567', message => 'Hola' });
    is_error($r, 409, 'not_connected', 'formatted phone "+57 (300) 123-4567" is valid: 409 not_connected');
    $r = post('/api/send-message', { organization_id => '23', phone => '3001234567', message => "Hola 👋 ñandú" });
    is_error($r, 409, 'not_connected', 'emoji message "Hola 👋 ñandú" passes JSON parsing: 409 not_connected');
    $r = post('/api/send-message', { organization_id => '23', phone => '3001234567', message => 'x' },
        headers => { 'Idempotency-Key' => 'k-1' });
    is_error($r, 409, 'not_connected', 'send with Idempotency-Key header: 409 not_connected');
}

# ---------------------------------------------------------------------------------------------- start / status / integer ids
{
    my ($st, undef, $j, $body) = $t->api(POST => '/api/start-session', body => { organization_id => '23' });
    is($st, 200, 'start-session 23: 200');
    is_deeply($j, { success => JSON::PP::true, status => 'connecting' }, 'start-session: {"success":true,"status":"connecting"}')
        or diag $body;
    ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => '23' });
    is($st, 200, 'second start-session: 200 (idempotent)');
    ok($j->{success}, 'second start-session: success true');
    like($j->{status} // '', qr/^(connecting|reconnecting)$/, 'second start-session: status connecting/reconnecting');

    ($st, undef, $j) = $t->api(POST => '/api/start-session', body => '{"organization_id":23}', headers => \%JSONH);
    is($st, 200, 'start-session with integer 23: 200');
    ok($j->{success}, 'integer 23: success');

    my $s = wait_until(sub { my $s = $t->status('23'); ($s->{status} // '') eq 'reconnecting' ? $s : undef }, 5);
    ok($s, 'status of 23 becomes reconnecting (server port closed)');
    like($s->{last_error} // '', qr/refused/i, 'last_error says the connection was refused');
    ok($s->{retry_count} >= 1, 'retry_count >= 1');
    ok(defined $s->{next_retry_in}, 'next_retry_in present while reconnecting');
    ok(!$s->{connected} && !$s->{has_qr}, 'connected and has_qr false');
    like($s->{state_since} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'state_since is ISO 8601 UTC');
    my @tm = ($s->{state_since} // '') =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z$/;
    my $since = @tm ? Time::Local::timegm($tm[5], $tm[4], $tm[3], $tm[2], $tm[1] - 1, $tm[0]) : 0;
    ok(abs($since - time) < 60, 'state_since is now');
    is($t->org_row('23')->{wanted}, 1, 'the store has 23 as wanted');
    is((stat "$t->{state_dir}/whatsapp.db")[2] & 07777, 0600, 'whatsapp.db is 0600');
    is((stat "$t->{state_dir}")[2] & 07777, 0700, 'state dir is 0700');

    my ($qs, undef, $qj) = $t->api(GET => '/api/qr/23');
    is($qs, 200, 'qr of a session without a QR: 200');
    ok(exists $qj->{success} && !$qj->{success} && exists $qj->{qr} && !defined $qj->{qr}, 'qr: success false, qr null');
    is($qj->{status}, 'reconnecting', 'qr: carries the status');
    is_error(get('/api/messages/23/3EB0C4A1B2'), 404, 'not_found', 'unknown message id of a running session: 404');

    my ($st2, undef, $j2) = $t->api(GET => '/whatsapp/api/status/23');
    is($st2, 200, 'mounted /whatsapp/api/status/23: 200');
    is($j2->{status}, 'reconnecting', 'mounted status is the same session');
    ($st2, undef, $j2) = $t->api(POST => '/whatsapp/api/start-session', body => { organization_id => 'mounted1' });
    is($st2, 200, 'mounted start-session: 200');
    ($st2, undef, $j2) = $t->api(GET => '/whatsapp/api/health');
    is($st2, 200, 'mounted /whatsapp/api/health: 200');

    my ($cs, undef, $cj) = $t->api(GET => '/api/connections');
    is($cs, 200, '/api/connections: 200');
    ok($cj->{success}, 'connections: success');
    my @ids = map { $_->{organization_id} } @{ $cj->{items} // [] };
    is($cj->{total}, scalar @ids, 'total equals the number of items (one page)');
    ok(exists $cj->{next_cursor} && !defined $cj->{next_cursor}, 'next_cursor null on the last page');
    is(scalar(grep { $_ eq '23' } @ids), 1, '"23" and 23 are one organization');
    ok((grep { $_ eq 'mounted1' } @ids), 'connections lists mounted1');
    ok(!(grep { $_ eq 'never-seen-org' } @ids), 'a status read does not create an organization');
    my ($c23) = grep { $_->{organization_id} eq '23' } @{ $cj->{items} };
    ok(exists $c23->{$_}, "connection entry has $_") for qw(status connected phone last_error retry_count connected_at);
}

# ---------------------------------------------------------------------------------------------- explicit mount prefixes
{
    my ($st, undef, $j) = $t->http(GET => '/custom/health');
    is($st, 200, 'whatsapp_api /custom: /custom/health 200');
    is_deeply($j, { status => 'ok' }, '/custom/health body');
    ($st, undef, $j) = $t->api(GET => '/custom/api/status/23');
    is($st, 200, '/custom/api/status/23: 200');
    isnt($j->{status}, 'disconnected', '/custom/api/status/23 is the same session 23');
    ($st, undef, $j) = $t->api(GET => '/gw/v1/api/health');
    is($st, 200, 'whatsapp_api /gw/v1/ (trailing slash): /gw/v1/api/health 200');
    ($st, undef, $j) = $t->http(GET => '/gw/v1/health');
    is($st, 200, '/gw/v1/health open');
    is_error(get('/custom/whatever'), 404, 'not_found', 'unknown route under /custom: 404 JSON');
}

# ---------------------------------------------------------------------------------------------- logout / clear-session
{
    my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'lo1' });
    is($st, 200, 'start lo1');
    ok(wait_until(sub { my $r = $t->org_row('lo1'); $r && $r->{wanted} }, 5), 'lo1 is in the store');
    ($st, undef, $j) = $t->api(POST => '/api/logout', body => { organization_id => 'lo1' });
    is($st, 200, 'logout: 200');
    is_deeply($j, { success => JSON::PP::true, status => 'logged_out', unlinked_on_server => JSON::PP::false },
        'logout: {"success":true,"status":"logged_out","unlinked_on_server":false} (never linked)');
    is($t->status('lo1')->{status}, 'logged_out', 'status after logout: logged_out');
    is(scalar @{ $t->db("SELECT org FROM credentials WHERE org = 'lo1'") }, 0, 'logout deleted the credentials');
    sleep 0.3;
    is($t->status('lo1')->{status}, 'logged_out', 'still logged_out (no reconnect)');
    is(scalar @{ $t->db("SELECT org FROM credentials WHERE org = 'lo1'") }, 0, 'credentials stay deleted');
    # That no pending retry brings it back is checked with a short backoff in t/060-backoff.t.

    ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'cl1' });
    is($st, 200, 'start cl1');
    ok(wait_until(sub { my $r = $t->org_row('cl1'); $r && $r->{wanted} }, 5), 'cl1 is in the store');
    ($st, undef, $j) = $t->api(POST => '/api/clear-session', body => { organization_id => 'cl1' });
    is($st, 200, 'clear-session: 200');
    is_deeply($j, { success => JSON::PP::true, status => 'disconnected' },
        'clear-session: {"success":true,"status":"disconnected"}');
    my $s = $t->status('cl1');
    is($s->{status}, 'disconnected', 'status after clear-session: disconnected');
    is($s->{retry_count}, 0, 'retry_count reset');
    is($t->org_row('cl1'), undef, 'cl1 has no live row in the store');
    my $kept = $t->db("SELECT cleared_at, wanted FROM orgs WHERE org = 'cl1'");
    is(scalar @$kept, 1, 'one cleared generation of cl1 is kept for inspection');
    ok($kept->[0] && $kept->[0]{cleared_at}, 'marked cleared') or diag explain $kept;

    ($st, undef, $j) = $t->api(POST => '/api/logout', body => { organization_id => 'never-started' });
    is($st, 200, 'logout of a never-started org: 200');
    is($j->{status}, 'logged_out', 'logout of a never-started org: logged_out');
    ($st, undef, $j) = $t->api(POST => '/api/clear-session', body => { organization_id => 'never-started2' });
    is($st, 200, 'clear-session of a never-started org: 200');
    is($j->{status}, 'disconnected', 'clear-session of a never-started org: disconnected');
}

# ---------------------------------------------------------------------------------------------- /api/health
{
    my ($st, undef, $j) = $t->api(GET => '/api/health');
    is($st, 200, '/api/health: 200');
    ok($j->{success}, 'success');
    is($j->{status}, 'ok', 'status ok');
    my @h = $t->helper_pids;
    is($j->{helper}{state}, 'active', 'helper active');
    is($j->{helper}{pid}, $h[0], 'helper pid is the "whatsapp helper process"');
    ok(defined $j->{helper}{uptime_s} && $j->{helper}{uptime_s} >= 0, 'uptime_s');
    is($j->{helper}{generation}, 1, 'generation 1');
    my $sessions = $j->{sessions};
    is_deeply([ sort keys %$sessions ], [ sort qw(disconnected connecting qr_ready connected reconnecting logged_out conflict) ],
        'sessions by every state');
    my $sum = 0;
    $sum += $_ for values %$sessions;
    my $count = () = $t->connections;
    is($sum, $count, 'sessions add up to the number of organizations');
    is($j->{shared_memory}{organizations}, $count, 'shared_memory.organizations');
    ok($sessions->{logged_out} >= 1 && $sessions->{disconnected} >= 1, 'logged_out and disconnected counted');
    is($j->{shared_memory}{queue_length}, 0, 'queue_length 0');
    ok($j->{shared_memory}{queue_max} > 0, 'queue_max');
    ok($j->{shared_memory}{size} >= 512 * 1024 && $j->{shared_memory}{used} > 0
        && $j->{shared_memory}{used} < $j->{shared_memory}{size}, 'zone size and use');
}

# ---------------------------------------------------------------------------------------------- HTTP details
{
    my ($st, $h, $j, $body) = $t->api(HEAD => '/api/health');
    is($st, 200, 'HEAD /api/health: 200');
    is($body, '', 'HEAD: no body');
    ($st, undef, $j) = $t->api(GET => '/api/status/23?foo=bar&organization_id=zz');
    is($st, 200, 'query string is ignored by the router');
    isnt($j->{status}, 'disconnected', 'status of 23 with a query string');
    ($st, undef, $j) = $t->api(GET => '/api/status/%32%33');
    is($st, 200, 'percent-encoded org id /api/status/%32%33: 200');
    isnt($j->{status}, 'disconnected', '%32%33 is organization 23');
    ($st, $h) = $t->api(GET => '/api/status/23');
    is($h->{'cache-control'}, 'no-store', 'Cache-Control: no-store');

    # keep-alive: a rejected request's body is discarded, the next request on the connection parses cleanly
    my $b = '{"organization_id":"ka1"}';
    my $post = sub {
        my ($key, $ct) = @_;
        return "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $key\r\nContent-Type: $ct\r\n"
            . "Content-Length: " . length($b) . "\r\n\r\n$b";
    };
    my $raw = WaTest::http_raw($t->{port},
        $post->($wrong, 'application/json') . $post->($WaTest::KEY, 'text/plain')
        . "GET /api/status/23 HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n\r\n");
    my @codes = ($raw // '') =~ m{^HTTP/1\.1 (\d{3})}mg;
    is_deeply(\@codes, [ 401, 415, 200 ], 'pipelined 401, 415, 200 on one keep-alive connection');
    $raw = WaTest::http_raw($t->{port},
        $post->($WaTest::KEY, 'application/json')
        . "GET /api/status/ka1 HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n\r\n");
    @codes = ($raw // '') =~ m{^HTTP/1\.1 (\d{3})}mg;
    is_deeply(\@codes, [ 200, 200 ], 'pipelined start-session then status on one connection');
    like($raw // '', qr/"status":"(connecting|reconnecting)"/, 'the pipelined status sees the started session');

    # The body of a request that is answered without being read must be discarded, never parsed as the
    # next request on the connection (request smuggling).
    for my $case ([ '/api/nope', $wrong, 401 ], [ '/api/nope', $WaTest::KEY, 404 ], [ '/api/health', $wrong, 401 ],
        [ '/api/health', $WaTest::KEY, 405 ], [ '/health', '', 405 ], [ '/api/start-session', $WaTest::KEY, 415 ],
        [ '/api/status/23', $WaTest::KEY, 200, 'GET' ], [ '/health', '', 200, 'GET' ],
        [ '/custom/api/start-sessio', $WaTest::KEY, 404, 'GET' ], [ '/api/status/23', $WaTest::KEY, 405, 'PUT' ]) {
        my ($path, $key, $want, $method) = @$case;
        $method //= 'POST';
        (my $tag = "$method$path-$want") =~ s/\W+/_/g;
        my $b = "GET /smuggled$tag HTTP/1.1\r\nHost: x\r\n\r\n";
        my $ct = $want == 415 ? 'text/plain' : 'application/json';
        my $raw = WaTest::http_raw($t->{port},
            "$method $path HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $key\r\nContent-Type: $ct\r\n"
            . "Content-Length: " . length($b) . "\r\n\r\n$b"
            . "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout => 5);
        my @codes = ($raw // '') =~ m{^HTTP/1\.1 (\d{3})}mg;
        is_deeply(\@codes, [ $want, 200 ], "$method $path answered $want: its body is not run as a second request")
            or diag $raw;
        ok($t->access_log !~ /smuggled\Q$tag\E/, "access.log has no request /smuggled$tag");
    }
}

# ---------------------------------------------------------------------------------------------- keys never logged
$t->stop;
$t->keys_not_logged($WaTest::KEY, $key2, $wrong);
done_testing;

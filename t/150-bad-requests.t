# A corpus of bad requests against the API locations: every error the module can reach answers the contract's
# JSON ({"success":false,"error":...,"code":...}), including those nginx itself raises inside an API location
# (client_max_body_size, a broken chunked body, allow/deny). The few that nginx answers before choosing any
# location (README, "Errors nginx answers itself") are checked for their status only.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(free_port json_enc);

$SIG{PIPE} = 'IGNORE';
my $closed = free_port();
my $t = WaTest->new;
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 60s 60s;",
    server => 'lingering_timeout 1s;',
    locations => "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }\n"
        . "        location /denied/ { deny all; whatsapp_api; }\n"
        . "        location ~ ^/rx/ { whatsapp_api /rx; }");
$t->start;
my $K = $WaTest::KEY;

sub raw { [ WaTest::parse_response(WaTest::http_raw($t->{port}, $_[0], timeout => 20)) ] }

sub request {
    my ($method, $path, %o) = @_;
    my %h = (Host => 'localhost', Connection => 'close', 'X-API-Key' => $K, %{ $o{headers} // {} });
    my $body = $o{body};
    $h{'Content-Length'} = length $body if defined $body && !exists $h{'Content-Length'} && !$h{'Transfer-Encoding'};
    my $req = "$method $path HTTP/1.1\r\n" . join('', map { "$_: $h{$_}\r\n" } grep { defined $h{$_} } sort keys %h) . "\r\n";
    return $req . ($body // '');
}

sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr($body, $i, $size);
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

my $json = 'application/json';
my $big = '{"organization_id":"23","pad":"' . ('p' x (2 * 1024 * 1024)) . '"}';
my $mid = '{"organization_id":"23","pad":"' . ('p' x (100 * 1024)) . '"}';

# [name, raw request, status, code]
my @corpus = (
    # bodies over whatsapp_max_body (64k): the API location's client_max_body_size follows it
    ['2 MiB body with Content-Length', request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => $big), 413, 'body_too_large'],
    ['1.5 MiB body with Content-Length', request(POST => '/api/send-message', headers => { 'Content-Type' => $json }, body => substr($big, 0, 1536 * 1024)), 413, 'body_too_large'],
    ['100 KiB body with Content-Length', request(POST => '/api/logout', headers => { 'Content-Type' => $json }, body => $mid), 413, 'body_too_large'],
    ['2 MiB chunked body', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'chunked' }, body => chunked($big, 65536)), 413, 'body_too_large'],
    ['100 KiB chunked body', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'chunked' }, body => chunked($mid, 4000)), 413, 'body_too_large'],
    ['Content-Length of 2 MiB with Expect: 100-continue, no body sent', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Content-Length' => 2 * 1024 * 1024, Expect => '100-continue' }), 413, 'body_too_large'],
    ['2 MiB body to an unknown route', request(POST => '/api/nope', headers => { 'Content-Type' => $json }, body => $big), 413, 'body_too_large'],
    ['2 MiB body without a key: the key is checked first', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'X-API-Key' => undef }, body => $big), 401, 'unauthorized'],
    ['2 MiB body to /health (no key needed)', request(POST => '/health', headers => { 'Content-Type' => $json, 'X-API-Key' => undef }, body => $big), 413, 'body_too_large'],
    # broken chunked encoding, seen while reading the body inside the location
    ['chunk size that is not hex', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'chunked' }, body => "zz\r\n{}\r\n0\r\n\r\n"), 400, 'bad_request'],
    ['chunk longer than announced', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'chunked' }, body => "2\r\n{\"organization_id\":\"1\"}\r\n0\r\n\r\n"), 400, 'bad_request'],
    # JSON
    ['truncated JSON', request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => '{"organization_id":'), 400, 'invalid_json'],
    ['JSON with a NUL byte outside strings', request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => "{\"organization_id\":\"1\"}\0"), 400, 'invalid_json'],
    ['duplicate keys', request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => '{"organization_id":"1","organization_id":"2"}'), 400, 'invalid_json'],
    ['empty chunked body', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'chunked' }, body => "0\r\n\r\n"), 400, 'invalid_json'],
    ['deeply nested JSON', request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => ('[' x 5000) . (']' x 5000)), 400, 'invalid_json'],
    ['JSON number body', request(POST => '/api/send-message', headers => { 'Content-Type' => $json }, body => '42'), 400, 'invalid_json'],
    # content types
    ['text/plain body', request(POST => '/api/start-session', headers => { 'Content-Type' => 'text/plain' }, body => '{}'), 415, 'unsupported_media_type'],
    ['multipart body', request(POST => '/api/send-message', headers => { 'Content-Type' => 'multipart/form-data; boundary=x' }, body => "--x--\r\n"), 415, 'unsupported_media_type'],
    ['empty Content-Type', request(POST => '/api/start-session', headers => { 'Content-Type' => '' }, body => '{}'), 415, 'unsupported_media_type'],
    ['Content-Type application/json5', request(POST => '/api/logout', headers => { 'Content-Type' => 'application/json5' }, body => '{}'), 415, 'unsupported_media_type'],
    # methods
    (map { ["$_ /api/status/23", request($_ => '/api/status/23'), 405, 'method_not_allowed'] } qw(POST PUT DELETE PATCH OPTIONS FOO)),
    (map { ["$_ /api/start-session", request($_ => '/api/start-session'), 405, 'method_not_allowed'] } qw(GET PUT DELETE)),
    ['HEAD /api/send-message', request(HEAD => '/api/send-message'), 405, undef],
    ['PUT /health', request(PUT => '/health', headers => { 'X-API-Key' => undef }), 405, 'method_not_allowed'],
    # routes
    (map { ["GET $_", request(GET => $_), 404, 'not_found'] } ('/api/', '/api/nope', '/api/status', '/api/status/23/x',
        '/api/status/a%2Fb', '/api/status/..', '/api/connections/x', '/api/health/', '/rx/nope')),
    ['GET /api/qr/ (empty organization id)', request(GET => '/api/qr/'), 400, 'invalid_organization_id'],
    # organization ids
    (map { ["GET /api/status/$_", request(GET => "/api/status/$_"), 400, 'invalid_organization_id'] } ('a.b', 'x' x 65, '%C3%B1', 'a%20b', '%2e%2e%2e')),
    (map { ["start-session with organization_id " . json_enc($_), request(POST => '/api/start-session', headers => { 'Content-Type' => $json }, body => json_enc({ organization_id => $_ })), 400, 'invalid_organization_id'] }
        ('', '..', 'a/b', 'x' x 65, [1], { a => 1 }, "a\tb")),
    ['send-message without organization_id', request(POST => '/api/send-message', headers => { 'Content-Type' => $json }, body => '{"phone":"1","message":"x"}'), 400, 'missing_field'],
    # keys
    ['no X-API-Key', request(GET => '/api/health', headers => { 'X-API-Key' => undef }), 401, 'unauthorized'],
    ['wrong X-API-Key', request(GET => '/api/health', headers => { 'X-API-Key' => 'nope-nope-nope' }), 401, 'unauthorized'],
    ['X-API-Key with control bytes', request(GET => '/api/health', headers => { 'X-API-Key' => "\x01\x02\x7f" }), 401, 'unauthorized'],
    ['X-API-Key of 8 KiB', request(GET => '/api/health', headers => { 'X-API-Key' => 'k' x 6000 }), 401, 'unauthorized'],
    ['two X-API-Key headers', "GET /api/health HTTP/1.1\r\nHost: x\r\nX-API-Key: $K\r\nX-API-Key: $K\r\nConnection: close\r\n\r\n", 401, 'unauthorized'],
    # nginx's own access phase inside an API location
    ['deny all in an API location', request(GET => '/denied/api/health'), 403, 'forbidden'],
    ['deny all, 2 MiB body', request(POST => '/denied/api/start-session', headers => { 'Content-Type' => $json }, body => $big), 413, 'body_too_large'],
    # header-only requests with odd but accepted headers
    ['header names nginx ignores (unknown route)', "GET /api/nope HTTP/1.1\r\nHost: x\r\nX-API-Key: $K\r\nX_Under: 2\r\nConnection: close\r\n\r\n", 404, 'not_found'],
    ['HTTP/1.0 POST without a body', "POST /api/start-session HTTP/1.0\r\nX-API-Key: $K\r\nContent-Type: $json\r\n\r\n", 400, 'invalid_json'],
    ['Content-Length 0', request(POST => '/api/clear-session', headers => { 'Content-Type' => $json, 'Content-Length' => 0 }), 400, 'invalid_json'],
);

my ($json_ok, @bad) = (0);
for my $c (@corpus) {
    my ($name, $req, $status, $code) = @$c;
    my $r = raw($req);
    my ($st, $h, $j, $body) = @$r;
    my $why;
    if ($st != $status) { $why = "status $st, want $status" }
    elsif (($h->{'content-type'} // '') ne 'application/json') { $why = 'Content-Type ' . ($h->{'content-type'} // 'none') }
    elsif (defined $code) {
        if (!$j || ref $j ne 'HASH') { $why = 'body is not JSON: ' . substr($body // '', 0, 80) }
        elsif (!defined $j->{success} || $j->{success}) { $why = 'success is not false' }
        elsif (($j->{code} // '') ne $code) { $why = 'code ' . ($j->{code} // 'none') . ", want $code" }
        elsif (!defined $j->{error} || ref $j->{error} || length $j->{error} < 5) { $why = 'no error sentence' }
    }
    if ($why) { push @bad, "$name: $why" } else { $json_ok++ }
    ok(!$why, "$name: $status" . (defined $code ? " $code" : '') . ' JSON') or diag $why;
}
diag sprintf('%d of %d bad requests answered with the contract\'s JSON error', $json_ok, scalar @corpus);

# Answered by nginx before any location is chosen, so no module can shape them (README): only the status is
# checked, and that the connection is not left hanging.
my @pre = (
    ['malformed request line', "GARBAGE\r\n\r\n", 400],
    ['unsupported HTTP version', "GET /api/health HTTP/9.9\r\nConnection: close\r\n\r\n", 505],
    ['URI over large_client_header_buffers', "GET /api/status/" . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414],
    ['header line over large_client_header_buffers', request(GET => '/api/health', headers => { 'X-Big' => 'b' x 9000 }), 400],
    ['header name with a control byte', "GET /api/health HTTP/1.1\r\nHost: x\r\nX-\x01: 3\r\nConnection: close\r\n\r\n", 400],
    ['header name with a space', "GET /api/health HTTP/1.1\r\nHost: x\r\nX-API-Key: $K\r\nBad Header: 1\r\nConnection: close\r\n\r\n", 400],
    ['HTTP/1.1 without Host', "GET /api/health HTTP/1.1\r\nX-API-Key: $K\r\nConnection: close\r\n\r\n", 400],
    ['Content-Length and Transfer-Encoding together', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Content-Length' => 2, 'Transfer-Encoding' => 'chunked' }, body => "0\r\n\r\n"), 400],
    ['negative Content-Length', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Content-Length' => -1 }), 400],
    ['unknown Transfer-Encoding', request(POST => '/api/start-session', headers => { 'Content-Type' => $json, 'Transfer-Encoding' => 'gzip' }, body => ''), 501],
    ['TRACE', request(TRACE => '/api/health'), 405],
    ['NUL in the path', "GET /api/status/a%00b HTTP/1.1\r\nHost: x\r\nX-API-Key: $K\r\nConnection: close\r\n\r\n", 400],
);
for my $c (@pre) {
    my ($name, $req, $status) = @$c;
    my ($st) = @{ raw($req) };
    is($st, $status, "before any location, nginx answers $name: $status");
}
$t->stop;
done_testing;

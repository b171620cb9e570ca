# Browser-safe session tokens: POST /api/session-token (API key) mints a token for one organization, accepted from
# the cookie wa_token by that organization's status, qr and events only; expired, forged, other-organization tokens,
# a token on any other route and a token in the query string get 401; an event stream ends when its token expires;
# a `whatsapp_api token_only` location serves only those routes. No token ever reaches error.log or the access logs
# (checked against a control log that does show them).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);
use WaSse;

my $t = WaTest->new;
my $d = $t->{dir};
$t->write_conf(
    http => "log_format wa_full '\$remote_addr \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" "
        . "\"\$http_user_agent\" \"\$sent_http_content_type\" \"\$sent_http_set_cookie\"';\n"
        . "    access_log $d/full.log wa_full;\n"
        . "    log_format wa_control 'cookie=\$cookie_wa_token';\n"
        . "    access_log $d/control.log wa_control;",
    locations => "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }\n"
        . "        location /live/ { whatsapp_api token_only; }");
$t->start;

sub mint {
    my (%b) = @_;
    my ($st, undef, $j) = $t->api(POST => '/api/session-token', body => { organization_id => 't1', ttl => 60, %b });
    return ($st, $j);
}
sub with_cookie {
    my ($method, $path, $tok, %o) = @_;
    return $t->http($method, $path, headers => { Cookie => "theme=dark; wa_token=$tok", %{ $o{headers} // {} } }, %o);
}

# ---------------------------------------------------------------------------------------------- minting
my ($st, $j) = mint();
is($st, 200, 'POST /api/session-token: 200');
my $tok = $j->{token};
like($tok // '', qr/^wa1\.t1\.\d+\.[A-Za-z0-9_-]{43}$/, 'a token bound to t1 with its expiry and a MAC');
is($j->{expires_in}, 60, 'expires_in 60');
is($j->{cookie}, 'wa_token', 'names its cookie');
($st) = $t->http(POST => '/api/session-token', body => { organization_id => 't1' });
is($st, 401, 'minting needs the API key');
($st, $j) = mint(ttl => 601);
is($st, 400, 'ttl 601: 400');
is($j->{code}, 'invalid_parameter', 'invalid_parameter');
($st) = mint(ttl => 0);
is($st, 400, 'ttl 0: 400');
($st, $j) = mint(organization_id => '../x');
is($j->{code}, 'invalid_organization_id', 'an invalid organization: invalid_organization_id');
my ($t600) = (mint(ttl => 600))[1]{expires_in};
is($t600, 600, 'ttl 600 (10 minutes) is the most');

# ---------------------------------------------------------------------------------------------- accepted
($st, undef, $j) = with_cookie(GET => '/api/status/t1', $tok);
is($st, 200, 'GET /api/status/t1 with the token (cookie): 200');
is($j->{status}, 'disconnected', 'the status document');
($st) = with_cookie(GET => '/api/qr/t1', $tok);
is($st, 200, 'GET /api/qr/t1 with the token: 200');
my $s = WaSse->open($t->{port}, '/api/events/t1', headers => { Cookie => "wa_token=$tok" });
is($s->status, 200, 'GET /api/events/t1 with the token: 200');
is(($s->next(2) // {})->{event}, 'status', 'and its first event');
$s->close;

# ---------------------------------------------------------------------------------------------- refused
my @refused;
sub refused {
    my ($what, $method, $path, $tk, %o) = @_;
    my ($rs, undef, $rj) = with_cookie($method, $path, $tk, %o);
    is($rs, 401, "$what: 401");
    is($rj->{code}, 'unauthorized', "$what: unauthorized") if $rs == 401;
}
my ($st2, $j2) = mint(organization_id => 't2');
my $tok2 = $j2->{token};
refused('the token of t2 on t1', GET => '/api/status/t1', $tok2);
refused('the token of t1 on t2', GET => '/api/status/t2', $tok);
refused('the token of t1 on events of t2', GET => '/api/qr/t2', $tok);
(my $forged = $tok) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
refused('a forged MAC', GET => '/api/status/t1', $forged);
(my $longer = $tok) =~ s/\.(\d+)\./'.' . ($1 + 3600) . '.'/e;
refused('a longer expiry under the same MAC', GET => '/api/status/t1', $longer);
(my $moved = $tok) =~ s/^wa1\.t1\./wa1.t2./;
refused('another organization under the same MAC', GET => '/api/status/t2', $moved);
refused('garbage', GET => '/api/status/t1', 'nonsense');
my ($st1, $j1) = mint(ttl => 1);
my $short = $j1->{token};
($st) = with_cookie(GET => '/api/status/t1', $short);
is($st, 200, 'a 1 s token works at once');
sleep 2.1;
refused('the same token 2 s later (expired)', GET => '/api/status/t1', $short);
refused('a token on start-session', POST => '/api/start-session', $tok, body => { organization_id => 't1' });
refused('a token on send-message', POST => '/api/send-message', $tok,
    body => { organization_id => 't1', phone => '573001112233', message => 'x' });
refused('a token on logout', POST => '/api/logout', $tok, body => { organization_id => 't1' });
refused('a token on session-token', POST => '/api/session-token', $tok, body => { organization_id => 't1' });
refused('a token on messages', GET => '/api/messages/t1', $tok);
refused('a token on connections', GET => '/api/connections', $tok);
refused('a token on health', GET => '/api/health', $tok);
refused('a token on all events', GET => '/api/events', $tok);
my ($stq, $jq) = mint();
my $qtok = $jq->{token};
my ($sq, undef, $jqs) = $t->http(GET => "/api/status/t1?wa_token=$qtok");
is($sq, 401, 'a token in the query string: 401');
($sq) = $t->http(GET => "/api/events/t1?wa_token=$qtok");
is($sq, 401, 'a token in the query string of events: 401');
my ($sk) = $t->api(POST => '/api/start-session', body => { organization_id => 't1' });
is($sk, 200, 'the API key still works (start-session; the default whatsapp_server is resolved without a crash)');

# ---------------------------------------------------------------------------------------------- a stream ends with its token
{
    my (undef, $jj) = mint(ttl => 2);
    my $t0 = time;
    my $es = WaSse->open($t->{port}, '/api/events/t1', headers => { Cookie => "wa_token=$jj->{token}" });
    is($es->status, 200, 'a stream with a 2 s token');
    my $exp = $es->wait_for(sub { $_[0]{event} eq 'expired' }, 6);
    ok($exp, sprintf('an expired event %.2f s later', time - $t0));
    ok($es->wait_eof(2), 'then the stream ends');
    ok($es->{last_chunk}, 'cleanly (terminating chunk)');
    ok(time - $t0 < 5, sprintf('within its token\'s lifetime and a second (%.2f s)', time - $t0));
}

# ---------------------------------------------------------------------------------------------- token_only location
{
    my (undef, undef, $lj) = with_cookie(GET => '/live/api/status/t1', $tok);
    is($lj->{success} ? 200 : 0, 200, 'token_only: status with the token');
    my ($ls) = with_cookie(GET => '/live/api/qr/t1', $tok);
    is($ls, 200, 'token_only: qr with the token');
    my $ls2 = WaSse->open($t->{port}, '/live/api/events/t1', headers => { Cookie => "wa_token=$tok" });
    is($ls2->status, 200, 'token_only: events with the token');
    $ls2->close;
    ($ls) = $t->api(GET => '/live/api/status/t1');
    is($ls, 401, 'token_only: the API key is not accepted there');
    ($ls) = $t->api(POST => '/live/api/start-session', body => { organization_id => 't1' });
    is($ls, 401, 'token_only: start-session with the API key: 401');
    ($ls) = $t->api(POST => '/live/api/session-token', body => { organization_id => 't1' });
    is($ls, 401, 'token_only: no minting there');
    ($ls) = with_cookie(GET => '/live/api/connections', $tok);
    is($ls, 401, 'token_only: connections with a token: 401');
    ($ls) = $t->api(GET => '/live/api/events');
    is($ls, 401, 'token_only: all events: 401');
    ($ls) = $t->http(GET => '/live/health');
    is($ls, 401, 'token_only: health: 401');
    ($ls) = with_cookie(GET => '/live/api/status/t2', $tok);
    is($ls, 401, 'token_only: another organization: 401');
}

# ---------------------------------------------------------------------------------------------- never logged
$t->quit;    # flushes and closes the logs
my ($control, $full, $access, $err) = map { WaTest::slurp("$d/$_") } qw(control.log full.log access.log error.log);
for my $k ([$tok, 'the t1 token'], [$tok2, 'the t2 token'], [$short, 'the expired token'], [$forged, 'the forged token']) {
    my ($v, $name) = @$k;
    ok(index($control, $v) >= 0, "control: $name reached nginx (a format with \$cookie_wa_token logs it)");
    ok(index($err, $v) < 0, "$name is not in error.log");
    ok(index($access, $v) < 0, "$name is not in access.log");
    ok(index($full, $v) < 0, "$name is not in an access log with the request line and response headers");
}
# The reason for the rule: a query string is part of the request line.
ok(index($access, $qtok) >= 0, 'a token sent in the query string does reach access.log (why it is refused)');
my ($mac) = $tok =~ /\.([^.]+)$/;
ok(index($err, $mac) < 0 && index($access, $mac) < 0, 'nor does any MAC of a cookie token');
$t->check_log;

# ---------------------------------------------------------------------------------------------- directives
{
    my $c = WaTest->new;
    for my $case (
        [ 'location /x/ { whatsapp_api /x token_only; }', 0, 'whatsapp_api prefix token_only' ],
        [ 'location /x/ { whatsapp_api token_only /x; }', 0, 'whatsapp_api token_only prefix' ],
        [ 'location /x/ { whatsapp_api /x /y; }', 1, 'two prefixes', qr/takes a prefix and "token_only"/ ],
        [ 'location /x/ { whatsapp_api token_only token_only; }', 1, 'token_only twice', qr/token_only twice/ ],
        [ 'location /m { whatsapp_api; whatsapp_metrics; }', 1, 'metrics in an API location', qr/cannot share a location/ ],
        [ 'location /m { whatsapp_metrics; whatsapp_api; }', 1, 'an API location with metrics', qr/cannot share a location/ ],
        [ 'location /m { whatsapp_metrics; }', 0, 'whatsapp_metrics' ],
    ) {
        my ($loc, $fails, $name, $re) = @$case;
        $c->write_conf(locations => $loc);
        my ($rc, $out) = $c->test_config;
        is($rc ? 1 : 0, $fails, "nginx -t: $name " . ($fails ? 'fails' : 'passes')) or diag $out;
        like($out, $re, "naming the problem") if $re;
    }
    $c->write_conf(http => 'whatsapp_events_heartbeat 10ms;');
    my ($rc, $out) = $c->test_config;
    like($out, qr/whatsapp_events_heartbeat must be at least 100ms/, 'nginx -t: whatsapp_events_heartbeat below 100ms fails');
    $c->write_conf(http => "whatsapp_events_max 10;\n    whatsapp_events_heartbeat 5s;");
    ($rc, $out) = $c->test_config;
    is($rc, 0, 'nginx -t: whatsapp_events_max, whatsapp_events_heartbeat') or diag $out;
}
done_testing;

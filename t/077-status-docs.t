# GET /api/status and /api/qr answer from documents the helper renders once per change (the worker only copies
# them and writes next_retry_in / expires_in): they must say exactly what the record's fields say, which
# /api/connections still renders field by field, in every state, after every change.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $closed = free_port();
my $t = WaTest->new;
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 2s 4s;");
$t->start;

for my $org (qw(a1 a2 a3 lo1 cl1)) {
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => $org });
    is($st, 200, "start $org");
}
ok(wait_until(sub { !grep { ($t->status($_)->{status} // '') ne 'reconnecting' } qw(a1 a2 a3) }, 5), 'reconnecting');
is(($t->api(POST => '/api/logout', body => { organization_id => 'lo1' }))[0], 200, 'logout lo1');
is(($t->api(POST => '/api/clear-session', body => { organization_id => 'cl1' }))[0], 200, 'clear cl1');

# Compare twice, with a retry (a new publish) in between.
for my $round (1, 2) {
    my %items = map { $_->{organization_id} => $_ } $t->connections;
    for my $org (sort keys %items) {
        my ($st, $h, $s) = $t->api(GET => "/api/status/$org");
        my %a = %$s;
        my %b = %{ $items{$org} };
        delete $a{success};
        delete $a{qr};
        delete $b{organization_id};
        # next_retry_in counts down: the two reads may be a second apart
        my ($na, $nb) = (delete $a{next_retry_in}, delete $b{next_retry_in});
        is_deeply(\%a, \%b, "round $round: status of $org says what its record's fields say");
        ok((defined $na) == (defined $nb) && (!defined $na || abs($na - $nb) <= 1), "round $round: $org next_retry_in agrees")
            or diag explain [$na, $nb];
        is($h->{'content-type'}, 'application/json', 'application/json');
        is($h->{'cache-control'}, 'no-store', 'Cache-Control: no-store');
    }
    sleep 4.5 if $round == 1;
}
my $s1 = $t->status('a1');
cmp_ok($s1->{retry_count}, '>=', 2, "a1 retried (retry_count $s1->{retry_count}): its document followed");

{
    my $raw = WaTest::http_raw($t->{port}, "HEAD /api/status/a1 HTTP/1.1\r\nHost: x\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n\r\n");
    my ($st, $h, undef, $body) = WaTest::parse_response($raw);
    is($st, 200, 'HEAD /api/status: 200');
    is($body, '', 'without a body');
    cmp_ok($h->{'content-length'} // 0, '>', 100, 'with the length of the document');
}
{
    my ($st, undef, $j, $body) = $t->api(GET => '/api/qr/a1');
    is($body, qq({"success":false,"qr":null,"status":"reconnecting"}\n), '/api/qr without a QR');
    ($st, undef, $j, $body) = $t->api(GET => '/api/qr/never-seen');
    is($body, qq({"success":false,"qr":null,"status":"disconnected"}\n), '/api/qr of an organization never seen');
    ($st, undef, $j, $body) = $t->api(GET => '/api/status/never-seen');
    is($body, qq({"success":true,"status":"disconnected","connected":false,"has_qr":false,"phone_number":null,"phone":null,)
        . qq("qr":null,"last_error":null,"retry_count":0,"connected_at":null,"state_since":null,"next_retry_in":null}\n),
        'status of an organization never seen');
    my ($s401) = $t->http(GET => '/api/status/a1');
    is($s401, 401, 'no key: 401');
    ($st, undef, $j) = $t->api(GET => '/api/status/bad.id');
    is("$st " . ($j->{code} // ''), '400 invalid_organization_id', 'an invalid id: 400');
    ($st) = $t->api(POST => '/api/status/a1', body => {});
    is($st, 405, 'POST: 405');
}
$t->stop;
done_testing;

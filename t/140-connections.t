# GET /api/connections is paged as the contract's extended routes are (?limit, default 100, at most 1000;
# ?cursor=next_cursor): paging through 250 organizations returns each exactly once, even while others come
# and go, and bad parameters answer 400 JSON.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc);

my $closed = free_port();
my ($uid, $gid) = $> == 0 ? ((getpwnam('nobody'))[2], (getgrnam('nogroup'))[2] // (getpwnam('nobody'))[3]) : ($>, $));
($gid) = split ' ', $gid;
my $t = WaTest->new;
my $sd = $t->{state_dir};
my $N = 250;
# Stored sessions that were not running: loaded at start-up as organizations, no connection attempts.
mkdir $sd, 0700 or die;
chown $uid, $gid, $sd;
for my $i (1 .. $N) {
    my $org = sprintf('p%03d', $i);
    mkdir "$sd/$org", 0700;
    WaTest::spew("$sd/$org/session.json", json_enc({ version => 1, organization_id => $org, wanted => JSON::PP::false,
        status => 'disconnected', phone => '', last_error => '', retry_count => 0, connected_at => 0, state_since => 1790000000 }), 0600);
    chown $uid, $gid, "$sd/$org", "$sd/$org/session.json";
}
$t->write_conf(connections => 1024, zone => 'whatsapp_zone wa 4m;',
    http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 60s 60s;");
$t->start;
ok(wait_until(sub { ($t->health->{shared_memory}{organizations} // 0) == $N }, 10), "$N organizations loaded");

my %JSONH = ('Content-Type' => 'application/json');
sub page {
    my ($query) = @_;
    my ($st, $h, $j, $body) = $t->api(GET => "/api/connections$query");
    return ($st, $j, $body);
}

# ---------------------------------------------------------------------------------------------- default page
{
    my ($st, $j, $body) = page('');
    is($st, 200, 'GET /api/connections: 200');
    ok($j->{success}, 'success true');
    is(ref $j->{items}, "ARRAY", "items is an array") or diag substr($body, 0, 300);
    is(scalar @{ $j->{items} }, 100, 'the default page holds 100 organizations');
    ok(defined $j->{next_cursor} && !ref $j->{next_cursor} && length $j->{next_cursor}, 'next_cursor is a string');
    is($j->{total}, $N, "total says $N organizations");
    my $e = $j->{items}[0];
    ok(exists $e->{$_}, "an item has $_") for qw(organization_id status connected phone last_error retry_count connected_at);
}

# ---------------------------------------------------------------------------------------------- paging through
for my $limit (1000, 100, 7) {
    my ($cursor, %seen, @order, $pages, $bad) = ('', ());
    $pages = 0;
    while (1) {
        my ($st, $j, $body) = page("?limit=$limit$cursor");
        if ($st != 200) { $bad = "page $pages: $st " . substr($body, 0, 300); last }
        $pages++;
        if (@{ $j->{items} } > $limit) { $bad = "page $pages has " . scalar(@{ $j->{items} }) . " items"; last }
        $seen{ $_->{organization_id} }++ for @{ $j->{items} };
        # organizations come and go while a client pages: those present throughout are still listed once
        if ($pages == 2) {
            $t->api(POST => '/api/start-session', body => { organization_id => "new$limit-$_" }) for 1 .. 3;
            $t->api(POST => '/api/clear-session', body => { organization_id => "new$limit-1" });
        }
        last unless defined $j->{next_cursor};
        $cursor = "&cursor=$j->{next_cursor}";
        if ($pages > 100) { $bad = 'more than 100 pages'; last }
    }
    ok(!$bad, "limit=$limit: every page answered") or diag $bad;
    my @missing = grep { ($seen{ sprintf('p%03d', $_) } // 0) != 1 } 1 .. $N;
    is(scalar @missing, 0, "limit=$limit: each of the $N organizations listed exactly once, in $pages pages")
        or diag join ' ', map { sprintf('p%03d:%d', $_, $seen{ sprintf('p%03d', $_) } // 0) } @missing[0 .. 9];
    my @dups = grep { $seen{$_} > 1 } keys %seen;
    is(scalar @dups, 0, "limit=$limit: no organization listed twice") or diag "@dups";
}
{
    use Time::HiRes qw(time);
    my $t0 = time;
    my ($st) = page('?limit=1000');
    diag sprintf('one page of %d organizations: %.1f ms (HTTP round trip included)', $N, 1000 * (time - $t0));
    my @all = $t->connections(limit => 100);
    my %ids = map { $_->{organization_id} => 1 } @all;
    is(scalar(grep { /^p\d+$/ } keys %ids), $N, 'WaTest::connections follows the cursor through all pages');
}

# ---------------------------------------------------------------------------------------------- bad parameters
for my $q ('?limit=0', '?limit=1001', '?limit=abc', '?limit=-5', '?limit=10x', '?limit=', '?limit=99999999999999999999',
    '?cursor=a.b', '?cursor=%2F..%2Fetc', '?cursor=' . ('x' x 65), '?limit=5&cursor=a%20b') {
    my ($st, $j, $body) = page($q);
    subtest "GET /api/connections$q: 400 JSON" => sub {
        is($st, 400, 'HTTP 400');
        ok($j && defined $j->{success} && !$j->{success}, "success false") or diag substr($body, 0, 300);
        is($j->{code}, 'invalid_parameter', 'code invalid_parameter');
        like($j->{error} // '', qr/limit|cursor/, 'the error names the parameter');
    };
}
{
    my ($st, $j) = page('?limit=3&foo=bar');
    is($st, 200, 'unknown parameters are ignored');
    is(scalar @{ $j->{items} }, 3, 'limit=3: three items');
    ($st, $j) = page('?cursor=zzzzzzzz-unknown-org&limit=5');
    is($st, 200, 'a cursor naming no organization is valid (a position, not a record)');
}
$t->stop;
done_testing;

# API keys from whatsapp_api_key_file: comments and blank lines skipped, whitespace trimmed, rotation by
# reload, a broken file on reload keeps the running keys; no key at all locks every /api route.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $closed = free_port();
my ($kA, $kB, $kC, $kD, $kI) = ('keyA-1234567890', 'keyB-abcdefghij', 'keyC-commented-out', 'keyD-rotated-0987', 'inline-key-5555');
my $t = WaTest->new(key => $kI);    # the harness itself uses the inline key
my $d = $t->{dir};
WaTest::spew("$d/keys.txt", "# production keys\n\n   $kA   \n$kB\r\n#$kC\n\t\n", 0600);
$t->write_conf(http => "whatsapp_api_key_file $d/keys.txt;\n    whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    "
    . $t->key_logs_conf);
$t->start;

sub code_for {
    my ($key) = @_;
    my ($st) = $t->http(GET => '/api/health', headers => { defined $key ? ('X-API-Key' => $key) : () });
    return $st;
}
{
    my ($rc, $out) = WaTest::run_cmd($t->nginx_argv('-T'), 20, "$d/nginx-T.out");
    is($rc, 0, 'nginx -T: 0');
    like($out, qr/whatsapp_api_key_file \Q$d\E\/keys\.txt;/, 'nginx -T shows the key file directive');
    ok(index($out, $kA) < 0 && index($out, $kB) < 0, 'but not the keys in the file (they stay out of nginx -T)');
}
is(code_for($kA), 200, 'key from the file (surrounded by spaces) works');
is(code_for($kB), 200, 'key from a CRLF line works');
is(code_for($kI), 200, 'inline whatsapp_api_key works next to the file');
is(code_for($kC), 401, 'a commented-out key does not work');
is(code_for("#$kC"), 401, 'nor does the comment line itself');
is(code_for("   $kA   "), 200, 'surrounding spaces of the header value are not part of the key (HTTP trims them)');
is(code_for(undef), 401, 'no key: 401');

# rotation: the file changes, a reload picks it up
WaTest::spew("$d/keys.txt", "$kD\n", 0600);
eval { $t->reload };
is($@, '', 'reload with a rotated key file');
ok(wait_until(sub { code_for($kA) == 401 && code_for($kD) == 200 }, 5), 'after the reload the old key is refused and the new one works');
is(code_for($kB), 401, 'the other old key is refused too');
is(code_for($kI), 200, 'the inline key still works');

# a broken key file on reload: nginx keeps running with the keys it has
WaTest::spew("$d/keys.txt", "$kD\nshort\n", 0600);
my $gen = $t->health->{helper}{generation};
kill 'HUP', $t->master_pid;
ok(wait_until(sub { $t->error_log =~ /an API key must be 8 to 256 characters long/ }, 5), 'the bad file is reported');
sleep 0.5;
is(code_for($kD), 200, 'the running configuration keeps working');
is($t->health->{helper}{generation}, $gen, 'no new helper generation for a failed reload');
is(scalar $t->helper_pids, 1, 'one helper');
unlike($t->error_log, qr/\bshort\b/, 'the bad key value is not logged');
$t->stop(allow => qr/an API key must be 8 to 256 characters long/);
$t->keys_not_logged($kA, $kB, $kC, $kD, $kI);

# error_log at debug: nginx's own debug lines show request headers, X-API-Key included (README), which proves
# that a key sent is there to be found; none of the module's own lines may hold one, on any path that logs
# (wrong and repeated keys, a body too large, commands that reach the helper, a send refused).
{
    my $u = WaTest->new;
    $u->write_conf(level => 'debug', http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_body 1k;\n    "
        . "whatsapp_send_rate 1r/m burst=1;\n    " . $u->key_logs_conf);
    $u->start;
    my $wrong = 'wrong-key-7777-debug';
    $u->http(GET => '/api/health', headers => { 'X-API-Key' => $wrong });
    WaTest::http_raw($u->{port}, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-API-Key: $WaTest::KEY\r\nX-API-Key: $wrong\r\nConnection: close\r\n\r\n");
    $u->api(POST => '/api/start-session', body => { organization_id => 'dbg1' });
    $u->api(POST => '/api/start-session', body => { organization_id => 'dbg1', pad => 'p' x 2000 });
    $u->api(POST => '/api/send-message', body => { organization_id => 'dbg1', phone => '3001234567', message => 'x' }) for 1 .. 2;
    $u->api(POST => '/api/logout', body => { organization_id => 'dbg1' });
    $u->stop;
    my @lines = split /\n/, $u->error_log;
    my @module = grep { /\] \d+#\d+: (\*\d+ )?whatsapp/ } @lines;
    ok(@module >= 3, scalar(@module) . ' lines of the module in the debug log (helper start, connect failure, exit)');
    for my $k ($WaTest::KEY, $wrong) {
        ok((grep { index($_, $k) >= 0 } @lines), "control: nginx's own debug lines show key $k...");
        is(scalar(grep { index($_, $k) >= 0 } @module), 0, "no line of the module holds key $k...");
    }
    ok(index(WaTest::slurp("$u->{dir}/full.log"), $WaTest::KEY) < 0, 'nor does the access log with the request line');
}

# no key configured at all
{
    my $u = WaTest->new;
    $u->write_conf(key => undef, http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;");
    $u->start(wait_helper => 0);
    like($u->error_log, qr/\[warn\] .*no whatsapp_api_key configured/, 'a warning says no key is configured');
    my ($st, undef, $j) = $u->http(GET => '/api/health', headers => { 'X-API-Key' => $WaTest::KEY });
    is($st, 401, 'without configured keys every /api route answers 401');
    is($j->{code}, 'unauthorized', 'code unauthorized');
    ($st, undef, $j) = $u->http(GET => '/api/health', headers => { 'X-API-Key' => '' });
    is($st, 401, 'an empty key does not match "no key"');
    ($st) = $u->http(GET => '/health');
    is($st, 200, '/health stays open');
    $u->stop;
}
done_testing;

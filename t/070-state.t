# The state directory at start-up (wanted sessions resume, corrupt files are quarantined until
# clear-session, foreign entries are ignored) and the limits: whatsapp_max_sessions, whatsapp_queue_size.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc);

my $closed = free_port();
my ($uid, $gid) = $> == 0 ? ((getpwnam('nobody'))[2], (getgrnam('nogroup'))[2] // (getpwnam('nobody'))[3]) : ($>, $));
($gid) = split ' ', $gid;

my $t = WaTest->new;
my $sd = $t->{state_dir};
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 5s 10s;");

sub session_file {
    my ($org, %f) = @_;
    return json_enc({ version => 1, organization_id => $org, wanted => JSON::PP::true, status => 'connected',
        phone => '573001234567', last_error => '', retry_count => 0, connected_at => 1790000000,
        state_since => 1790000000, %f });
}
my %files = (
    good1     => session_file('good1'),
    notwanted => session_file('notwanted', wanted => JSON::PP::false, status => 'disconnected'),
    lo1       => session_file('lo1', wanted => JSON::PP::false, status => 'logged_out'),
    bad1      => '{"version":1, "organization_id": "bad1", "wanted": tr',
    mis1      => session_file('someone-else'),
    ver9      => session_file('ver9', version => 9),
    'with.dot' => session_file('with.dot'),
    '.hidden' => session_file('.hidden'),
);
mkdir $sd, 0700 or die;
for my $org (keys %files) {
    mkdir "$sd/$org", 0700;
    WaTest::spew("$sd/$org/session.json", $files{$org}, 0600);
    chown $uid, $gid, "$sd/$org", "$sd/$org/session.json";
}
WaTest::spew("$sd/stray.txt", "not an organization\n", 0600);
chown $uid, $gid, $sd, "$sd/stray.txt";

$t->start;

# ---------------------------------------------------------------------------------------------- resume and restore
my $s = wait_until(sub { my $s = $t->status('good1'); ($s->{status} // '') eq 'reconnecting' ? $s : undef }, 5);
ok($s, 'wanted session good1 was started by itself (reconnecting: the server port is closed)');
ok(!$s->{connected}, 'a session stored as "connected" is not reported connected before it really is');
is($s->{phone}, '573001234567', 'the stored phone is restored');
like($s->{last_error} // '', qr/refused/, 'last_error is from this run');

$s = $t->status('notwanted');
is($s->{status}, 'disconnected', 'a session that was not wanted stays disconnected');
is($s->{retry_count}, 0, 'and was not retried');
is($t->status('lo1')->{status}, 'logged_out', 'a logged-out session stays logged_out');

my %ids = map { $_->{organization_id} => $_ } $t->connections;
is_deeply([ sort keys %ids ], [ sort qw(good1 notwanted lo1 bad1 mis1 ver9) ],
    'connections: the valid org directories, nothing foreign (with.dot, .hidden, stray.txt, .trash)');

# ---------------------------------------------------------------------------------------------- quarantine
for my $org (qw(bad1 mis1 ver9)) {
    my $q = $t->status($org);
    is($q->{status}, 'disconnected', "$org (corrupt session.json) is disconnected");
    like($q->{last_error} // '', qr/quarantined/, "$org: last_error says the state is quarantined");
    like($q->{last_error} // '', qr{clear-session}, "$org: last_error says how to get out");
}
like($t->status('bad1')->{last_error}, qr/does not parse/, 'bad1: unparseable');
like($t->status('mis1')->{last_error}, qr/organization_id does not match/, 'mis1: id mismatch');
like($t->status('ver9')->{last_error}, qr/unknown version/, 'ver9: unknown version');
{
    my ($st, $h, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'bad1' });
    is($st, 409, 'start-session on quarantined state: 409');
    is($j->{code}, 'state_corrupt', 'code state_corrupt');
    is(WaTest::slurp("$sd/bad1/session.json"), $files{bad1}, 'the corrupt file is kept as it was');
    ($st, $h, $j) = $t->api(POST => '/api/clear-session', body => { organization_id => 'bad1' });
    is($st, 200, 'clear-session: 200');
    is($j->{status}, 'disconnected', 'clear-session: disconnected');
    ok(!-e "$sd/bad1", 'the corrupt state was moved away');
    my @trash = glob("$sd/.trash/bad1.*");
    is(scalar @trash, 1, 'it is kept under .trash for inspection');
    is(WaTest::slurp("$trash[0]/session.json"), $files{bad1}, 'with the original bytes') if @trash;
    ($st, $h, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'bad1' });
    is($st, 200, 'start-session after clear-session: 200');
    is($j->{status}, 'connecting', 'connecting');
    ok(wait_until(sub { ($t->status('bad1')->{status} // '') eq 'reconnecting' }, 5), 'bad1 runs again');
}
ok(-e "$sd/with.dot/session.json" && -e "$sd/.hidden/session.json" && -e "$sd/stray.txt", 'foreign entries untouched');
is((stat "$sd/.trash")[2] & 07777, 0700, '.trash is 0700');

# ---------------------------------------------------------------------------------------------- symlinks
# An org directory that is a symlink to somewhere else: nothing outside the state dir is written or deleted.
{
    my $out = "$t->{dir}/outside";
    mkdir $out, 0777;
    chmod 0777, $out;
    WaTest::spew("$out/precious.txt", "keep me\n", 0666);
    symlink($out, "$sd/evil1") or die "symlink: $!";
    symlink($out, "$sd/evil2") or die "symlink: $!";
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'evil1' });
    ok(wait_until(sub { ($t->status('evil1')->{status} // '') eq 'reconnecting' }, 5), 'evil1 started');
    sleep 0.3;
    ok(!-e "$out/session.json", 'no session.json written through the symlink');
    ($st) = $t->api(POST => '/api/logout', body => { organization_id => 'evil1' });
    is($st, 200, 'logout of the symlinked org: 200');
    is(WaTest::slurp("$out/precious.txt"), "keep me\n", 'logout did not delete files behind the symlink');
    ($st) = $t->api(POST => '/api/clear-session', body => { organization_id => 'evil2' });
    is($st, 200, 'clear-session of the symlinked org: 200');
    is(WaTest::slurp("$out/precious.txt"), "keep me\n", 'clear-session did not touch files behind the symlink');
    ok(-d $out, 'the outside directory is still there');
}
$t->stop;

# ---------------------------------------------------------------------------------------------- limits
{
    my $u = WaTest->new;
    # a command timeout of 3 s: the queue is still full while a loaded machine takes its time to check it
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_sessions 2;\n"
        . "    whatsapp_queue_size 2;\n    whatsapp_command_timeout 3s;\n    whatsapp_reconnect_backoff 5s 10s;");
    $u->start;
    my ($st, $h, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 's1' });
    is($st, 200, 'max_sessions 2: first');
    ($st, $h, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 's2' });
    is($st, 200, 'max_sessions 2: second');
    ($st, $h, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 's3' });
    is($st, 503, 'max_sessions 2: third is refused with 503');
    is($j->{code}, 'too_many_sessions', 'code too_many_sessions');
    ($st, $h, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 's1' });
    is($st, 200, 'an existing session can still be started again');
    is($u->status('s3')->{status}, 'disconnected', 's3 never ran');

    is($u->health->{shared_memory}{queue_max}, 2, 'queue_max 2');
    my ($hp) = $u->helper_pids;
    kill 'STOP', $hp;
    my $b = '{"organization_id":"s1"}';
    my $req = "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
    my @waiting = map { WaTest::http_raw($u->{port}, $req, no_read => 1) } 1 .. 2;
    ok(wait_until(sub { ($u->health->{shared_memory}{queue_length} // 0) == 2 }, 2, 0.02), 'two commands queued');
    my $t0 = time;
    ($st, $h, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 's2' });
    is($st, 503, 'a third command with a full queue: 503 at once');
    is($j->{code}, 'queue_full', 'code queue_full');
    is($h->{'retry-after'}, '1', 'Retry-After: 1');
    my $el = time - $t0;
    diag sprintf('queue_full answered in %.3f s', $el);
    cmp_ok($el, '<', 1.5, sprintf('without waiting for the command timeout (%.3f s; target 0.5 s, allowed 1.5 s)', $el));
    for my $w (@waiting) {
        my $sel = IO::Select->new($w);
        my $resp = '';
        while ($sel->can_read(9)) { my $n = sysread($w, my $buf, 4096); last unless $n; $resp .= $buf }
        my ($ws, undef, $wj) = WaTest::parse_response($resp);
        is("$ws " . ($wj->{code} // ''), '504 timeout', 'a queued command times out with 504');
    }
    kill 'CONT', $hp;
    ok(wait_until(sub { ($u->health->{shared_memory}{queue_length} // -1) == 0 }, 3), 'queue empty again');
    ($st) = $u->api(POST => '/api/start-session', body => { organization_id => 's2' });
    is($st, 200, 'commands flow again after SIGCONT');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- logout/clear of unknown orgs
# logout and clear-session of an organization the helper does not run create nothing: no session (no slot of
# whatsapp_max_sessions), no status record. Stored state the helper never loaded is still deleted or moved aside.
{
    my $u = WaTest->new;
    my $usd = $u->{state_dir};
    mkdir $usd, 0700 or die;
    for my $org (qw(stored-lo stored-cl)) {    # no session.json: never loaded as a session
        mkdir "$usd/$org", 0700;
        WaTest::spew("$usd/$org/creds.json", "{}\n", 0600);
        chown $uid, $gid, "$usd/$org", "$usd/$org/creds.json";
    }
    chown $uid, $gid, $usd;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_sessions 10;\n"
        . "    whatsapp_reconnect_backoff 5s 10s;");
    $u->start;
    my @answers;
    for my $i (1 .. 12) {
        my ($path, $want) = $i % 2 ? ('/api/logout', 'logged_out') : ('/api/clear-session', 'disconnected');
        my ($st, undef, $j) = $u->api(POST => $path, body => { organization_id => "ghost$i" });
        push @answers, "ghost$i: $st " . ($j->{status} // $j->{code} // '') unless $st == 200 && ($j->{status} // '') eq $want;
    }
    is(scalar @answers, 0, '12 logout/clear-session calls for unknown organizations: 200 logged_out / disconnected')
        or diag join "\n", @answers;
    my ($st, undef, $j) = $u->api(POST => '/api/logout', body => { organization_id => 'stored-lo' });
    is("$st " . ($j->{status} // ''), '200 logged_out', 'logout of an organization with unloaded stored state: logged_out');
    ok(!-e "$usd/stored-lo", 'its stored state was deleted');
    ($st, undef, $j) = $u->api(POST => '/api/clear-session', body => { organization_id => 'stored-cl' });
    is("$st " . ($j->{status} // ''), '200 disconnected', 'clear-session of an organization with unloaded stored state: disconnected');
    ok(!-e "$usd/stored-cl", 'its stored state was moved away');
    my @trash = glob("$usd/.trash/stored-cl.*");
    ok(@trash == 1 && -f "$trash[0]/creds.json", 'into .trash, as it was');
    my $h = $u->health;
    is($h->{shared_memory}{organizations}, 0, 'no status record was created for any of them');
    my (undef, undef, $cj) = $u->api(GET => '/api/connections');
    is_deeply($cj->{items}, [], '/api/connections lists none of them');
    is($u->status('ghost1')->{status}, 'disconnected', 'an unknown organization still reads as disconnected');
    my @refused;
    for my $i (1 .. 10) {
        my ($st, undef, $j) = $u->api(POST => '/api/start-session', body => { organization_id => "real$i" });
        push @refused, "real$i: $st " . ($j->{code} // '') unless $st == 200;
    }
    is(scalar @refused, 0, 'afterwards all 10 sessions of whatsapp_max_sessions 10 can be started') or diag join "\n", @refused;
    ($st, undef, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 'real11' });
    is("$st " . ($j->{code} // ''), '503 too_many_sessions', 'and the 11th is refused');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- send rate; sends and slots
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_sessions 3;\n"
        . "    whatsapp_send_rate 2r/s burst=3;\n    whatsapp_reconnect_backoff 5s 10s;");
    $u->start;
    for my $org (qw(r1 r2)) {
        my ($st) = $u->api(POST => '/api/start-session', body => { organization_id => $org });
        is($st, 200, "start $org");
    }
    my $send = sub {
        my ($org) = @_;
        my ($st, $h, $j) = $u->api(POST => '/api/send-message', body => { organization_id => $org, phone => '3001234567', message => 'x' });
        return ($st, $j->{code} // '', $h->{'retry-after'});
    };
    my @codes = map { join ' ', ($send->('r1'))[0, 1] } 1 .. 3;
    is_deeply(\@codes, [ ('409 not_connected') x 3 ], 'burst=3: three sends pass the rate limit (409 not_connected)');
    my ($st, $code, $ra) = $send->('r1');
    is($st, 429, 'the fourth send in the same instant: 429');
    is($code, 'rate_limited', 'code rate_limited');
    is($ra, '1', 'Retry-After: 1 (2r/s refills a token every 0.5 s)');
    is(join(' ', ($send->('r2'))[0, 1]), '409 not_connected', 'another organization has its own bucket');
    sleep 0.6;
    # two sends at once (however slow the machine, they arrive together): one token is back, not two
    my $b = json_enc({ organization_id => 'r1', phone => '3001234567', message => 'x' });
    my @two = map { WaTest::http_raw($u->{port}, "POST /api/send-message HTTP/1.1\r\nHost: x\r\nX-API-Key: $WaTest::KEY\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b", no_read => 1) } 1 .. 2;
    my @got = sort map {
        my ($s, $resp) = ($_, '');
        my $sel = IO::Select->new($s);
        while ($sel->can_read(5)) { my $n = sysread($s, my $buf, 4096); last unless $n; $resp .= $buf }
        my ($st, undef, $j) = WaTest::parse_response($resp);
        "$st " . ($j->{code} // '');
    } @two;
    is_deeply(\@got, [ '409 not_connected', '429 rate_limited' ], 'after 0.6 s one token is back, and only one');

    # A send to an organization that was never started must not take one of the whatsapp_max_sessions slots
    # (3 here, 2 used): otherwise sends to made-up ids lock real organizations out.
    is(join(' ', ($send->("ghost$_"))[0, 1]), '409 not_connected', "send to never-started ghost$_: 409 not_connected")
        for 1 .. 2;
    ($st, undef, my $j) = $u->api(POST => '/api/start-session', body => { organization_id => 'r3' });
    is($st, 200, 'the third session can still be started after sends to never-started organizations')
        or diag explain $j;
    ok(!(grep { $_->{organization_id} =~ /^ghost/ } $u->connections), 'ghosts are not listed as organizations');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- send rate: order of checks
# 1r/m burst=3: no token comes back while this runs, however slow the machine.
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_send_rate 1r/m burst=3;");
    $u->start;
    # The order of checks: auth, 413/415/invalid_json, organization id, then the rate limit, then everything
    # else. Invalid sends and sends to organizations that do not run count against the limit too, so a runaway
    # client loop is stopped whatever it sends.
    my $try = sub {
        my ($body, %o) = @_;
        my ($st, $h, $j) = $u->api(POST => '/api/send-message', body => $body, %o);
        return "$st " . ($j->{code} // '');
    };
    my @got = map { $try->({ organization_id => 'inv1', phone => 'abc', message => 'x' }) } 1 .. 4;
    is_deeply(\@got, [ ('400 invalid_phone') x 3, '429 rate_limited' ], 'sends with a bad phone count: the 4th gets 429')
        or diag explain \@got;
    @got = map { $try->({ organization_id => 'inv2', message => 'x' }) } 1 .. 4;
    is_deeply(\@got, [ ('400 missing_field') x 3, '429 rate_limited' ], 'sends without a phone count: the 4th gets 429')
        or diag explain \@got;
    @got = map { $try->({ organization_id => 'not-running', phone => '3001234567', message => 'x' }) } 1 .. 4;
    is_deeply(\@got, [ ('409 not_connected') x 3, '429 rate_limited' ],
        'sends to an organization that does not run count: the 4th gets 429') or diag explain \@got;
    my %JSONH = ('Content-Type' => 'application/json');
    is($try->('{"organization_id":"inv1",', headers => \%JSONH), '400 invalid_json', 'over the limit, invalid JSON is still 400 invalid_json');
    is($try->('{"organization_id":"inv1"}', headers => { 'Content-Type' => 'text/plain' }), '415 unsupported_media_type',
        'over the limit, a non-JSON body is still 415');
    is($try->(json_enc({ organization_id => 'inv1', message => 'p' x 70000 }), headers => \%JSONH), '413 body_too_large',
        'over the limit, a body over whatsapp_max_body is still 413');
    is($try->({ organization_id => 'in.v1', phone => 'abc', message => 'x' }), '400 invalid_organization_id',
        'an invalid organization id is 400 (no bucket to count it against)');
    is($try->({ phone => '3001234567', message => 'x' }), '400 missing_field', 'a missing organization id is 400');
    my ($st401) = $u->http(POST => '/api/send-message', body => { organization_id => 'inv1', phone => 'abc', message => 'x' });
    is($st401, 401, 'without a key: 401 before the rate limit');
    is($try->({ organization_id => 'inv3', phone => 'abc', message => 'x' }), '400 invalid_phone',
        'another organization is not limited');

    $u->stop;
}
done_testing;

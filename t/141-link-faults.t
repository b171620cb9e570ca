# Linking and what follows, driven by the simulator: pairing code, QR rotation and qr_timeout, every row of the
# disconnect table from a real server fault, unlink from the phone, logout that unlinks on the server, a passkey
# request, an outdated client fixed by a reload, a wrong root key.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
my $base = "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_keepalive 1s 1s 1s;\n    whatsapp_store_sync full;";
$t->write_conf(http => $base);
$t->start;
my $phone_seq = 573001000000;

sub wait_state {
    my ($org, $want, $timeout) = @_;
    return wait_until(sub { my $s = $t->status($org); ($s->{status} // '') eq $want ? $s : undef }, $timeout // 10, 0.02);
}

# Links $org by QR; returns the phone number.
sub link_org {
    my ($org) = @_;
    my $phone = ++$phone_seq;
    $t->api(POST => '/api/start-session', body => { organization_id => $org });
    my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => "/api/qr/$org"); $q && $q->{success} ? $q : undef }, 10);
    my ($st, undef, $r) = $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => "$phone" });
    die "scan: $st " . WaTest::json_enc($r) unless $st == 200;
    wait_state($org, 'connected') or die "$org not connected: " . WaTest::json_enc($t->status($org));
    return $phone;
}

sub fault {
    my ($phone, $body) = @_;
    my ($st, undef, $j) = $sim->control(POST => "/devices/$phone:1/fault", body => $body);
    is($st, 200, "fault " . WaTest::json_enc($body)) or diag explain $j;
}

sub creds_of { scalar @{ $t->db("SELECT org FROM credentials WHERE org = '$_[0]'") } }

# ---------------------------------------------------------------------------------------------- pairing code
{
    my $phone = ++$phone_seq;
    my ($st, undef, $j) = $t->api(POST => '/api/pairing-code', body => { organization_id => 'pc1', phone => "+$phone" });
    is($st, 200, 'pairing-code: 200') or diag explain $j;
    like($j->{code} // '', qr/^[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}$/, "code $j->{code} (XXXX-XXXX, Crockford-like alphabet)");
    (my $code = $j->{code} // '') =~ s/-//;
    my ($ss, undef, $r) = $sim->control(POST => '/pairing-code', body => { phone => "$phone", code => $code });
    is($ss, 200, 'the phone entered the code') or diag explain $r;
    my $s = wait_state('pc1', 'connected');
    ok($s, 'linked by code: connected') or diag explain $t->status('pc1');
    is($s->{phone_number}, "$phone", 'phone_number') if $s;
    ($st, undef, $j) = $t->api(POST => '/api/pairing-code', body => { organization_id => 'pc1', phone => "$phone" });
    is($st, 409, 'pairing-code for a linked organization: 409');
    ($st, undef, $j) = $t->api(POST => '/api/pairing-code', body => { organization_id => 'pc2', phone => 'abc' });
    is($st, 400, 'pairing-code with a bad phone: 400');
    is($j->{code}, 'invalid_phone', 'invalid_phone');
}

# ---------------------------------------------------------------------------------------------- QR rotation and timeout
{
    my $u = WaTest->new;
    my $s2 = WaTest::Sim->start($u->{dir}, args => ['--qr-first-ttl', '2', '--qr-next-ttl', '1']);
    $u->write_conf(http => "whatsapp_server $s2->{ws_url};\n    whatsapp_root_key $s2->{root_key};\n    whatsapp_qr_refresh 2s 1s;");
    $u->start;
    $u->api(POST => '/api/start-session', body => { organization_id => 'qr1' });
    my %seen;
    my $t0 = time;
    my $end;
    while (time - $t0 < 20) {
        my $s = $u->status('qr1');
        if (($s->{status} // '') eq 'qr_ready') { my (undef, undef, $q) = $u->api(GET => '/api/qr/qr1'); $seen{$q->{qr_text}} = 1 if $q->{success} }
        elsif (($s->{status} // '') eq 'disconnected' && keys %seen) { $end = $s; last }
        sleep 0.1;
    }
    my $el = time - $t0;
    is(scalar(keys %seen), 6, 'the QR rotated through the 6 refs');
    ok($end, sprintf('then the session stopped (%.1f s; 2 + 5 x 1 = 7 s expected)', $el));
    is($end->{last_error}, 'qr_timeout', 'last_error qr_timeout') if $end;
    sleep 1.5;
    is($u->status('qr1')->{status}, 'disconnected', 'no endless QR loop');
    is($s2->stats->{registrations}, 1, 'one registration only');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- disconnect table
{
    my $p = link_org('d1');
    my $logins = $sim->stats->{logins};
    fault($p, { type => 'stream_error', code => 515 });
    ok(wait_until(sub { $sim->stats->{logins} > $logins }, 5), '515: logged in again at once');
    ok(wait_state('d1', 'connected'), '515: connected');

    fault($p, { type => 'stream_error', code => 503 });
    my $s = wait_state('d1', 'reconnecting', 3);
    ok($s, '503: reconnecting with backoff');
    like($s->{last_error} // '', qr/stream error 503/, 'last_error says stream error 503') if $s;
    ok(wait_state('d1', 'connected', 5), '503: connected again after the backoff');

    fault($p, { type => 'drop' });
    ok(wait_state('d1', 'reconnecting', 3), 'a dropped TCP connection: reconnecting');
    ok(wait_state('d1', 'connected', 5), 'and back');

    fault($p, { type => 'xmlstreamend' });
    ok(wait_state('d1', 'reconnecting', 3), 'xmlstreamend: reconnecting');
    ok(wait_state('d1', 'connected', 5), 'and back');

    # keep-alive 1 s / 1 s here: a stalled server is noticed within ~2 s (default 20-30 s + 10 s: within 40 s)
    fault($p, { type => 'stall' });
    my $t0 = time;
    $s = wait_state('d1', 'reconnecting', 6);
    ok($s, sprintf('a stalled link is noticed by the keep-alive after %.1f s (limit 6 s)', time - $t0));
    like($s->{last_error} // '', qr/keep-alive/, 'last_error names the keep-alive') if $s;
    ok(wait_state('d1', 'connected', 5), 'and back');

    fault($p, { type => 'failure', code => 402, expire => 3, on => 'next_login' });
    fault($p, { type => 'drop' });
    $s = wait_state('d1', 'reconnecting', 5);
    $s = wait_until(sub { my $x = $t->status('d1'); ($x->{last_error} // '') =~ /402/ ? $x : undef }, 5);
    ok($s, 'failure 402 (temporary ban) at the next login') or diag explain $t->status('d1');
    ok($s && $s->{next_retry_in} >= 2 && $s->{next_retry_in} <= 4, "retries at its expire (3 s), not before ($s->{next_retry_in})") if $s;
    ok(wait_state('d1', 'connected', 8), '402: connected after the ban expired');

    fault($p, { type => 'stream_error', code => 'conflict' });
    $s = wait_state('d1', 'conflict', 3);
    ok($s, 'conflict (replaced): conflict');
    sleep 2.5;
    is($t->status('d1')->{status}, 'conflict', 'no automatic retry after a conflict');
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'd1' });
    ok(wait_state('d1', 'connected', 5), 'start-session after a conflict connects again');

    fault($p, { type => 'stream_error', code => 401 });
    $s = wait_state('d1', 'logged_out', 3);
    ok($s, 'stream error 401 device_removed: logged_out');
    ok(wait_until(sub { creds_of('d1') == 0 }, 2), 'credentials deleted');
    sleep 1.5;
    is($t->status('d1')->{status}, 'logged_out', 'no retry after logged_out');
}
for my $row ([401, 'logged_out'], [403, 'logged_out'], [406, 'logged_out']) {
    my ($code, $want) = @$row;
    my $org = "f$code";
    my $p = link_org($org);
    fault($p, { type => 'failure', code => $code, on => 'next_login' });
    fault($p, { type => 'drop' });
    my $s = wait_state($org, $want, 6);
    ok($s, "login failure $code: $want") or diag explain $t->status($org);
    ok(wait_until(sub { creds_of($org) == 0 }, 2), "login failure $code: credentials deleted");
}
for my $code (500, 503) {
    my $org = "g$code";
    my $p = link_org($org);
    fault($p, { type => 'failure', code => $code, on => 'next_login' });
    fault($p, { type => 'drop' });
    ok(wait_until(sub { ($t->status($org)->{last_error} // '') =~ /login failure $code/ }, 5), "login failure $code: reconnecting");
    ok(wait_state($org, 'connected', 6), "login failure $code: connected after the backoff");
}

# ---------------------------------------------------------------------------------------------- unlink from the phone
{
    my $p = link_org('u1');
    my ($st) = $sim->control(POST => "/accounts/$p/unlink", body => { device => 1 });
    is($st, 200, 'the phone unlinked the device');
    ok(wait_state('u1', 'logged_out', 5), 'unlinked from the phone: logged_out');
    ok(wait_until(sub { creds_of('u1') == 0 }, 2), 'credentials gone');
}

# ---------------------------------------------------------------------------------------------- logout unlinks on the server
{
    my $p = link_org('lo1');
    my ($st, undef, $j) = $t->api(POST => '/api/logout', body => { organization_id => 'lo1' });
    is($st, 200, 'logout: 200');
    is_deeply($j, { success => JSON::PP::true, status => 'logged_out', unlinked_on_server => JSON::PP::true },
        'logout of a connected session: unlinked_on_server true');
    my (undef, undef, $acct) = $sim->control(GET => "/accounts/$p");
    my ($dev) = grep { $_->{id} == 1 } @{ $acct->{devices} // [] };
    ok($dev && $dev->{removed}, 'the simulator removed the companion device') or diag explain $acct;
    ok(wait_until(sub { creds_of('lo1') == 0 }, 2), 'credentials deleted');

    # purge: after logout, nothing of the organization is left in any table (cleared generations included)
    link_org('pu1');
    ($st, undef, $j) = $t->api(POST => '/api/purge', body => { organization_id => 'pu1' });
    is($st, 409, 'purge of a linked organization: 409');
    is($j->{code}, 'logout_first', 'logout_first');
    $t->api(POST => '/api/logout', body => { organization_id => 'pu1' });
    ($st, undef, $j) = $t->api(POST => '/api/purge', body => { organization_id => 'pu1' });
    is($st, 200, 'purge after logout: 200') or diag explain $j;
    ($st, undef, $j) = $t->api(POST => '/api/purge', body => { organization_id => 'lo1' });
    is($st, 200, 'purge of lo1: 200');
    my $left = 0;
    for my $table (qw(orgs credentials prekeys signal_sessions signal_identities lid_map messages idempotency_keys
                      device_lists privacy_tokens)) {
        $left += scalar @{ $t->db("SELECT org FROM $table WHERE org IN ('pu1', 'lo1')") };
    }
    is($left, 0, 'no row of the purged organizations in any table');
    my $ps = $t->status('pu1');
    is($ps->{status}, 'disconnected', 'a purged organization reads as never seen');
    ok(!defined $ps->{phone} && !defined $ps->{last_error}, 'its record keeps no phone and no last error')
        or diag explain $ps;
}

# ---------------------------------------------------------------------------------------------- passkey request
{
    $sim->control(POST => '/passkey', body => { enabled => JSON::PP::true });
    $t->api(POST => '/api/start-session', body => { organization_id => 'pk1' });
    my $s = wait_until(sub { my $x = $t->status('pk1'); ($x->{last_error} // '') eq 'passkey_required' ? $x : undef }, 5);
    ok($s, 'a passkey request while linking: last_error passkey_required');
    is($s->{status}, 'disconnected', 'and the session stops (no QR that can never link)') if $s;
    ok(($sim->stats->{passkey_acks} // 0) >= 1, 'the notification was acked');
    $sim->control(POST => '/passkey', body => { enabled => JSON::PP::false });
}

# ---------------------------------------------------------------------------------------------- client outdated → reload
{
    my $p = link_org('v1');
    my ($st) = $sim->control(POST => '/config', body => { min_version => '2.3000.1099999999' });
    is($st, 200, 'the simulator now refuses older clients');
    fault($p, { type => 'drop' });
    my $s = wait_until(sub { my $x = $t->status('v1'); ($x->{last_error} // '') eq 'client_outdated' ? $x : undef }, 5);
    ok($s, '405: last_error client_outdated');
    my $f = $sim->stats->{failures_405};
    sleep 2.5;
    is($sim->stats->{failures_405}, $f, 'no retry loop against a 405');
    $t->write_conf(http => "$base\n    whatsapp_client_version 2.3000.1099999999;");
    $t->reload;
    ok(wait_state('v1', 'connected', 8), 'a reload with a newer whatsapp_client_version reconnects it');
    is($sim->stats->{last_client_version}, '2.3000.1099999999', 'the simulator saw the new version');
    $sim->control(POST => '/config', body => { min_version => undef });
}

# ---------------------------------------------------------------------------------------------- wrong root key
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key " . ('A' x 43) . "=;\n    whatsapp_reconnect_backoff 5s 10s;");
    $u->start;
    $u->api(POST => '/api/start-session', body => { organization_id => 'rk1' });
    my $s = wait_until(sub { my $x = $u->status('rk1'); ($x->{status} // '') eq 'reconnecting' ? $x : undef }, 5);
    ok($s, 'a server whose certificate chain does not lead to the configured root: refused');
    like($s->{last_error} // '', qr/Noise|certificate|signature/i, "last_error: $s->{last_error}") if $s;
    $u->stop;
}

is($sim->stats->{device_max_concurrent}, 1, 'no device ever had two connections at once');
$t->stop;
done_testing;

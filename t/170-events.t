# Live push (GET /api/events/:org, GET /api/events): the QR reaches an SSE client right after start-session and
# `connected` right after the simulator's scan (target 1 s, asserted at 3 s, measured figures printed), the same
# JSON as /api/status and /api/qr, ids = the organization's version, Last-Event-ID resume (per organization: the
# current state at once; all organizations: only what changed since), heartbeat comments, and streams that end
# cleanly on a reload (old workers close them, clients reconnect to the new ones).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);
use WaSse;

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_events_heartbeat 1s;");
$t->start;
my %key = ('X-API-Key' => $WaTest::KEY);
sub sse { WaSse->open($t->{port}, $_[0], headers => { %key, %{ $_[1] // {} } }) }

# ---------------------------------------------------------------------------------------------- QR and connected
my $s = sse('/api/events/org1');
is($s->status, 200, 'GET /api/events/org1: 200');
like($s->headers->{'content-type'} // '', qr{^text/event-stream}, 'Content-Type: text/event-stream');
is($s->headers->{'cache-control'}, 'no-store', 'Cache-Control: no-store');
is($s->headers->{'x-accel-buffering'}, 'no', 'X-Accel-Buffering: no (proxies in front do not buffer)');
my $first = $s->next(2);
is($first->{event}, 'status', 'the current state comes first');
is($first->{json}{status}, 'disconnected', 'an organization never seen: disconnected');
is($first->{id}, '0', 'id 0 before its first publish');

my $t0 = time;
my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'org1' });
is($st, 200, 'start-session');
my $qr = $s->wait_for(sub { $_[0]{event} eq 'qr' && $_[0]{json}{success} }, 5);
my $qr_took = $qr ? $qr->{t} - $t0 : 99;
ok($qr && $qr_took < 3, sprintf('qr event %.3f s after start-session (target 1 s, asserted at 3 s)', $qr_took));
like($qr->{json}{qr} // '', qr{^data:image/png;base64,}, 'the qr event carries the PNG data URL');
my (undef, undef, $api_qr) = $t->api(GET => '/api/qr/org1');
is($qr->{json}{qr_text}, $api_qr->{qr_text}, 'the same QR as GET /api/qr');
is_deeply([sort keys %{ $qr->{json} }], [sort keys %$api_qr], 'the same fields as GET /api/qr');
my ($qr_status) = grep { $_->{event} eq 'status' && $_->{id} eq $qr->{id} } $s->events;
is($qr_status->{json}{status}, 'qr_ready', 'with a status event of the same id: qr_ready');
my (undef, undef, $api_st) = $t->api(GET => '/api/status/org1');
is_deeply([sort keys %{ $qr_status->{json} }], [sort keys %$api_st], 'the same fields as GET /api/status');
is($qr_status->{json}{qr}, $api_st->{qr}, 'status carries the QR as GET /api/status does');

my ($ss) = $sim->control(POST => '/scan', body => { qr => $qr->{json}{qr_text}, phone => '573001112233' });
$t0 = time;
is($ss, 200, 'the simulator scanned the QR');
my $conn = $s->wait_for(sub { $_[0]{event} eq 'status' && $_[0]{json}{status} eq 'connected' }, 5);
my $conn_took = $conn ? $conn->{t} - $t0 : 99;
ok($conn && $conn_took < 3, sprintf('connected event %.3f s after the scan (target 1 s, asserted at 3 s)', $conn_took));
is($conn->{json}{phone_number}, '573001112233', 'with the phone number');
my ($gone) = grep { $_->{event} eq 'qr' && !$_->{json}{success} } $s->events;
ok($gone, 'a qr event says when the QR is gone (success false)');
my @ids = map { $_->{id} } grep { $_->{event} eq 'status' } $s->events;
is_deeply(\@ids, [ sort { $a <=> $b } @ids ], "ids rise with every change (@ids)");
my %seen;
ok(!grep({ $seen{$_}++ } @ids), 'no status id twice');

# ---------------------------------------------------------------------------------------------- heartbeat
{
    my $c0 = $s->comments;
    my $hb_t0 = time;
    $s->pump(0.2) while time - $hb_t0 < 3;
    ok($s->comments - $c0 >= 2, sprintf('heartbeat comments: %d in 3 s (whatsapp_events_heartbeat 1s)', $s->comments - $c0));
}

# ---------------------------------------------------------------------------------------------- Last-Event-ID
{
    my $o2 = sse('/api/events/org2');
    $t->api(POST => '/api/start-session', body => { organization_id => 'org2' });
    my $q2 = $o2->wait_for(sub { $_[0]{event} eq 'status' && $_[0]{json}{status} eq 'qr_ready' }, 5);
    ok($q2, "org2 qr_ready (id $q2->{id})");
    $o2->close;
    # Missed while disconnected: clear-session makes org2 disconnected.
    $t->api(POST => '/api/clear-session', body => { organization_id => 'org2' });
    my $t1 = time;
    my $r2 = sse('/api/events/org2', { 'Last-Event-ID' => $q2->{id} });
    my $ev = $r2->next(2);
    ok($ev && $ev->{t} - $t1 < 1, sprintf('a reconnect with Last-Event-ID gets the current state at once (%.3f s)', ($ev->{t} // 99) - $t1));
    is($ev->{json}{status}, 'disconnected', 'the state it missed: disconnected');
    cmp_ok($ev->{id}, '>', $q2->{id}, "a later id ($ev->{id} > $q2->{id})");
    $r2->close;

    # All organizations: API key only; a snapshot, then Last-Event-ID resumes with what changed after it.
    my $all = sse('/api/events');
    is($all->status, 200, 'GET /api/events: 200');
    my @snap;
    while (my $e = $all->next(0.5)) { push @snap, $e }
    my %orgs = map { ($_->{json}{organization_id} // '?') => 1 } grep { $_->{event} eq 'status' } @snap;
    is_deeply([sort keys %orgs], ['org1', 'org2'], 'the snapshot holds every organization, each named');
    my ($max) = sort { $b <=> $a } map { $_->{id} } @snap;
    $all->close;
    $t->api(POST => '/api/start-session', body => { organization_id => 'org2' });
    wait_until(sub { ($t->status('org2')->{status} // '') eq 'qr_ready' }, 5);
    my $res = sse('/api/events', { 'Last-Event-ID' => $max });
    my @since;
    while (my $e = $res->next(0.7)) { push @since, $e }
    ok(@since >= 1, scalar(@since) . ' events after Last-Event-ID ' . $max);
    ok(!grep({ ($_->{json}{organization_id} // '') ne 'org2' } @since), 'only org2 changed since: nothing of org1')
        or diag explain [map { "$_->{event} $_->{id} $_->{data}" } @since];
    ok(!grep({ $_->{id} <= $max } @since), 'every id is after it');
    my ($qev) = grep { $_->{event} eq 'qr' && $_->{json}{success} } @since;
    ok($qev, 'the QR that appeared meanwhile is among them');
    $res->close;
    my ($s401) = $t->http(GET => '/api/events');
    is($s401, 401, 'GET /api/events without a key: 401');
}

# ---------------------------------------------------------------------------------------------- bad requests
{
    my ($bs, undef, $bj) = $t->api(GET => '/api/events/a..b');
    is($bs, 400, 'an invalid organization id: 400');
    is($bj->{code}, 'invalid_organization_id', 'invalid_organization_id');
    ($bs) = $t->api(POST => '/api/events/org1', body => {});
    is($bs, 405, 'POST on an events route: 405');
}

# ---------------------------------------------------------------------------------------------- reload
{
    my @w0 = $t->worker_pids;
    my @streams = map { sse('/api/events/org1') } 1 .. 4;
    $_->next(2) for @streams;
    my $t1 = time;
    $t->reload;
    my $ended = wait_until(sub { $_->pump(0.05) for @streams; !grep { !$_->eof } @streams }, 10);
    ok($ended, sprintf('a reload ends every stream (%.2f s)', time - $t1));
    ok(!grep({ !$_->{last_chunk} } @streams), 'each with the terminating chunk (a clean end, not a reset)');
    ok(wait_until(sub { !grep { WaTest::alive($_) } @w0 }, 10), 'the old workers exit (nothing holds them)');
    my $again = sse('/api/events/org1');
    my $ev = $again->next(2);
    is($ev->{event}, 'status', "a reconnect gets the current state from a new worker at once ($ev->{json}{status})");
    # The new helper reconnects the session after the reload: connected, now or in a moment, on the same stream.
    ok($ev->{json}{status} eq 'connected' || $again->wait_for(sub { ($_[0]{json}{status} // '') eq 'connected' }, 10),
        'and connected (the session resumed under the new helper)');
    $again->close;
}

$s->close;
unlike($t->error_log, qr/event stream dropped/, 'no stream was dropped as a slow reader');
$t->stop;
done_testing;

# `whatsapp_metrics;`: Prometheus text format parsed by a real parser (Debian's python3-prometheus-client), carrying
# the figures this test causes: messages sent, delivered, read, failed by code (not_on_whatsapp, 479, 463),
# received, reconnects by reason, a restricted number, organizations by state; the helper's uptime, event-loop lag
# (also in /api/health), store commit latency, queue and zone figures. Counters live in the shared zone and
# survive a helper crash. The example alert rules in conf/ pass `promtool check rules` and name
# only metrics the gateway serves.
use strict;
use warnings;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);

my $PY = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_send_rate 600r/m burst=300;\n    whatsapp_send_timeout 10s;",
    locations => "location /api/ { whatsapp_api; }\n        location = /metrics { allow 127.0.0.1; deny all; whatsapp_metrics; }");
$t->start;

# The exposition parsed by prometheus_client: {"name{k=v,...}" => value}, plus the families' types.
sub scrape {
    my ($st, $h, undef, $body) = $t->http(GET => '/metrics');
    die "GET /metrics: $st" unless $st == 200;
    WaTest::spew("$t->{dir}/metrics.txt", $body);
    my $py = <<'PY';
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out, types = {}, {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    types[fam.name] = fam.type
    for s in fam.samples:
        key = s.name + "{" + ",".join("%s=%s" % kv for kv in sorted(s.labels.items())) + "}"
        out[key] = s.value
print(json.dumps({"samples": out, "types": types}))
PY
    WaTest::spew("$t->{dir}/parse.py", $py);
    my $json = `$PY $t->{dir}/parse.py $t->{dir}/metrics.txt 2>$t->{dir}/parse.err`;
    my $r = WaTest::json_dec($json) or die "prometheus_client could not parse /metrics: " . WaTest::slurp("$t->{dir}/parse.err");
    return ($r->{samples}, $r->{types}, $h, $body);
}
sub v { my ($m, $k) = @_; $m->{$k} // 0 }

my ($m0, $types, $h0) = scrape();
ok(scalar(keys %$m0), 'GET /metrics parses with prometheus_client (' . scalar(keys %$m0) . ' samples)');
like($h0->{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Content-Type: text/plain; version=0.0.4');
is($types->{whatsapp_messages_sent}, 'counter', 'whatsapp_messages_sent_total is a counter');
is($types->{whatsapp_store_commit_seconds}, 'histogram', 'whatsapp_store_commit_seconds is a histogram');
is(v($m0, 'whatsapp_helper_up{}'), 1, 'whatsapp_helper_up 1');
my ($fs) = $t->http(GET => '/metrics', headers => { 'X-Forwarded-For' => '1.2.3.4' });
is($fs, 200, 'the location is protected by allow/deny, not by the API key');

# ---------------------------------------------------------------------------------------------- link and messages
my $ACCOUNT = '573001112233';
$t->api(POST => '/api/start-session', body => { organization_id => 'm1' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/m1'); $q && $q->{success} ? $q : undef }, 10);
my ($ss) = $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
is($ss, 200, 'linked');
ok(wait_until(sub { ($t->status('m1')->{status} // '') eq 'connected' }, 10), 'connected');
wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);
my $C1 = '573009990001';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 2, name => 'Ana' });
sub send_msg { $t->api(POST => '/api/send-message', body => { organization_id => 'm1', @_ }, timeout => 20) }
my @ids;
for my $i (1 .. 3) {
    my ($st, undef, $j) = send_msg(phone => $C1, message => "hola $i");
    is($st, 200, "message $i sent");
    push @ids, $j->{message_id};
}
ok(wait_until(sub { !grep { my (undef, undef, $x) = $t->api(GET => "/api/messages/m1/$_"); ($x->{status} // '') ne 'read' } @ids }, 10),
    'all three read');
my ($nst) = send_msg(phone => '573005550000', message => 'nadie');
is($nst, 422, 'a number without WhatsApp: 422');
$sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'ack_error', code => 479 });
my ($a479) = send_msg(phone => $C1, message => 'inválido');
is($a479, 502, 'an ack error 479');
my ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => 'Confirmo' });
is($cs, 200, 'the contact wrote');
ok(wait_until(sub { my (undef, undef, $l) = $t->api(GET => '/api/messages/m1?direction=in'); @{ $l->{items} // [] } >= 1 }, 5),
    'received');
# A dropped link: reconnects{reason="transport"}.
my $conn_since = $t->status('m1')->{connected_at};
$sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'drop' });
ok(wait_until(sub { my $s = $t->status('m1'); $s->{status} eq 'connected' && ($s->{retry_count} // 0) == 0 && $s->{state_since} }, 15)
    && wait_until(sub { v((scrape())[0], 'whatsapp_reconnects_total{org=m1,reason=transport}') >= 1 }, 10),
    'dropped and reconnected');
ok(wait_until(sub { ($t->status('m1')->{status} // '') eq 'connected' }, 15), 'connected again');
# Restricted: an ack error 463.
$sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'ack_error', code => 463 });
my ($a463, undef, $x463) = send_msg(phone => $C1, message => 'restringido');
is($x463->{error_code}, 463, 'an ack error 463');
ok(wait_until(sub { $t->status('m1')->{restricted_until} }, 5), 'the number is restricted');

my ($m) = scrape();
my %want = (
    'whatsapp_messages_sent_total{org=m1}' => 5,           # 3 + the 479 + the 463 left for the server
    'whatsapp_messages_delivered_total{org=m1}' => 3,
    'whatsapp_messages_read_total{org=m1}' => 3,
    'whatsapp_messages_received_total{org=m1}' => 1,
    'whatsapp_messages_failed_total{code=not_on_whatsapp,org=m1}' => 1,
    'whatsapp_messages_failed_total{code=479,org=m1}' => 1,
    'whatsapp_messages_failed_total{code=463,org=m1}' => 1,
    'whatsapp_reconnects_total{org=m1,reason=transport}' => 1,
    'whatsapp_session_restricted{org=m1}' => 1,
    'whatsapp_session_connected{org=m1}' => 1,
    'whatsapp_session_wanted{org=m1}' => 1,
    'whatsapp_session_state{org=m1,state=connected}' => 1,
    'whatsapp_organizations{state=connected}' => 1,
);
for my $k (sort keys %want) {
    is(v($m, $k), $want{$k}, "$k $want{$k}");
}
ok(v($m, 'whatsapp_reconnects_total{org=m1,reason=stream_error}') >= 1, 'the 515 after pairing counts as a stream_error reconnect');
ok(v($m, 'whatsapp_store_commit_seconds_count{}') > 10, 'store commits timed: ' . v($m, 'whatsapp_store_commit_seconds_count{}'));
is(v($m, 'whatsapp_store_commit_seconds_bucket{le=+Inf}'), v($m, 'whatsapp_store_commit_seconds_count{}'), 'the +Inf bucket holds every commit');
ok(v($m, 'whatsapp_store_commit_seconds_sum{}') > 0, sprintf('commit time %.4f s in all (%.2f ms each)',
    v($m, 'whatsapp_store_commit_seconds_sum{}'), 1000 * v($m, 'whatsapp_store_commit_seconds_sum{}') / (v($m, 'whatsapp_store_commit_seconds_count{}') || 1)));
ok(exists $m->{'whatsapp_store_checkpoints_total{by=thread}'} && exists $m->{'whatsapp_store_checkpoints_total{by=commit}'},
    sprintf('WAL checkpoints: %d by the store\'s thread, %d inside commits',
        v($m, 'whatsapp_store_checkpoints_total{by=thread}'), v($m, 'whatsapp_store_checkpoints_total{by=commit}')));
ok(v($m, 'whatsapp_helper_uptime_seconds{}') >= 1, 'helper uptime ' . v($m, 'whatsapp_helper_uptime_seconds{}') . ' s');
ok(v($m, 'whatsapp_shm_used_bytes{}') > 0 && v($m, 'whatsapp_shm_used_bytes{}') + v($m, 'whatsapp_shm_free_bytes{}') <= v($m, 'whatsapp_shm_size_bytes{}'),
    sprintf('shm %d used + %d free <= %d', v($m, 'whatsapp_shm_used_bytes{}'), v($m, 'whatsapp_shm_free_bytes{}'), v($m, 'whatsapp_shm_size_bytes{}')));
is(v($m, 'whatsapp_command_queue_depth{}'), 0, 'command queue depth 0');
ok(v($m, 'whatsapp_commands_total{}') >= 8, 'commands counted: ' . v($m, 'whatsapp_commands_total{}'));
my $lag = v($m, 'whatsapp_event_loop_lag_max_seconds{}');
ok(exists $m->{'whatsapp_event_loop_lag_seconds{}'}, sprintf('event-loop lag: last %.4f s, max %.4f s', v($m, 'whatsapp_event_loop_lag_seconds{}'), $lag));
my (undef, undef, $hj) = $t->api(GET => '/api/health');
ok(defined $hj->{helper}{loop_lag_max_ms}, "GET /api/health: helper.loop_lag_max_ms $hj->{helper}{loop_lag_max_ms}");
cmp_ok($hj->{helper}{loop_lag_max_ms}, '<', 3000, 'under 3 s');

# ---------------------------------------------------------------------------------------------- counters outlive the helper
my ($helper) = $t->helper_pids;
kill 'KILL', $helper;
ok(wait_until(sub { my ($n) = $t->helper_pids; $n && $n != $helper && ($t->health->{helper}{state} // '') eq 'active' }, 10), 'a killed helper is replaced');
ok(wait_until(sub { ($t->status('m1')->{status} // '') eq 'connected' }, 15), 'the session is back');
my ($m2) = scrape();
is(v($m2, 'whatsapp_messages_sent_total{org=m1}'), 5, 'messages sent still 5 after the helper restart');
is(v($m2, 'whatsapp_messages_failed_total{code=463,org=m1}'), 1, 'failures still counted');
is(v($m2, 'whatsapp_session_restricted{org=m1}'), 1, 'the restriction is stored: still restricted after the restart');
# The server lifts it (reach-out timelock notification, inactive); then sends go out again.
$sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'reachout_timelock', active => JSON::PP::false });
ok(wait_until(sub { !$t->status('m1')->{restricted_until} }, 5), 'lifted by the server');
my ($st) = send_msg(phone => $C1, message => 'después');
is($st, 200, 'a send after the restriction is lifted: 200');
($m2) = scrape();
is(v($m2, 'whatsapp_messages_sent_total{org=m1}'), 6, 'and counting on from there: 6');
cmp_ok(v($m2, 'whatsapp_helper_generation{}'), '>=', 2, 'whatsapp_helper_generation ' . v($m2, 'whatsapp_helper_generation{}'));

# ---------------------------------------------------------------------------------------------- alert rules
{
    my $rules = "$WaTest::ROOT/conf/whatsapp-alerts.yml";
    my $promtool = `command -v promtool 2>/dev/null`;
    chomp $promtool;
    # make deps installs Debian's prometheus for promtool: a machine without it fails here rather than skip the check
    ok($promtool, 'promtool is installed (Debian package prometheus)');
    my ($rc, $out) = $promtool ? WaTest::run_cmd([$promtool, 'check', 'rules', $rules], 30, "$t->{dir}/promtool.out") : (-1, '');
    is($rc, 0, 'promtool check rules conf/whatsapp-alerts.yml') or diag $out;
    my $py = <<'PY';
import json, re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
names = set(json.load(open(sys.argv[2])))
bad, alerts = [], []
for g in doc["groups"]:
    for r in g["rules"]:
        alerts.append(r["alert"])
        for k in ("expr", "labels", "annotations"):
            if k not in r: bad.append("%s: no %s" % (r["alert"], k))
        for m in re.findall(r"whatsapp_[a-z_]+", r["expr"]):
            if m not in names: bad.append("%s: unknown metric %s" % (r["alert"], m))
print(json.dumps({"alerts": alerts, "bad": bad}))
PY
    WaTest::spew("$t->{dir}/rules.py", $py);
    my %names = map { (/^([a-z_]+)\{/)[0] => 1 } keys %$m2;
    WaTest::spew("$t->{dir}/names.json", WaTest::json_enc([ sort keys %names ]));
    my $r = WaTest::json_dec(`$PY $t->{dir}/rules.py $rules $t->{dir}/names.json 2>&1`);
    ok($r && @{ $r->{alerts} } >= 3, 'the rules file parses: ' . join(', ', @{ $r->{alerts} // [] }));
    is_deeply($r->{bad}, [], 'every rule has expr, labels, annotations and names only metrics the gateway serves');
    ok((grep { /NotConnected/ } @{ $r->{alerts} }) && (grep { /Failures/ } @{ $r->{alerts} }) && (grep { /Restricted/ } @{ $r->{alerts} }),
        'rules for a session not connected, failures rising, a restricted number');
}

$t->stop(allow => $WaTest::KILLED);    # the helper killed on purpose
done_testing;

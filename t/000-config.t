# nginx -t: a good configuration is checked without side effects (no process, no lock file, no
# connection to the WhatsApp server); each bad one fails with a clear message that names file:line.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use WaTest qw(proc_list);

my $t = WaTest->new;
my $d = $t->{dir};
my $sim = WaTest::Sim->start($d);

sub line_of {
    my ($file, $re) = @_;
    my @l = split /\n/, WaTest::slurp($file);
    my @n = grep { $l[$_ - 1] =~ $re } 1 .. @l;
    return $n[-1];
}

# ---- the good configuration
my $good_http = "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_default_region CO;\n    whatsapp_handshake_timeout 5s;\n"
    . "    whatsapp_reconnect_backoff 1s 10s;\n    whatsapp_max_body 16k;";
my $conf = $t->write_conf(http => $good_http,
    locations => "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }\n"
        . "        location /whatsapp/ { whatsapp_api; }");
my ($rc, $out, $pid) = $t->test_config;
is($rc, 0, 'nginx -t on a good configuration exits 0') or diag $out;
like($out, qr/the configuration file \Q$conf\E syntax is ok/, '"syntax is ok"');
like($out, qr/configuration file \Q$conf\E test is successful/, '"test is successful"');
unlike($out, qr/\[(emerg|alert|crit|warn)\]/, 'no warning or error from nginx -t') or diag $out;
sleep 0.5;    # anything that was started would have had time to connect
my @left = grep { $_->{pgid} == $pid || $_->{pid} == $pid || index($_->{cmd}, $d) >= 0 } proc_list();
is(scalar @left, 0, 'nginx -t leaves no process behind') or diag explain \@left;
ok(!-e "$t->{state_dir}/owner.lock", 'nginx -t creates no owner.lock');
ok(!-e $t->{state_dir}, 'nginx -t does not create the state directory');
my $st = $sim->stats;
is($st->{ws_total}, 0, 'nginx -t opens no WebSocket to the server (ws_total 0)');
is($st->{ws_open}, 0, 'ws_open 0');
unlike($t->error_log, qr/\[(emerg|alert|crit)\]/, 'error.log clean after the good nginx -t');

# ---- bad configurations: exit 1, a message, file:line.
# [name, conf options, expected message, regex of the offending line (undef: reported at the end of http{})]
my $good_key = $WaTest::KEY;
my @bad = (
    ['unknown region', { http => 'whatsapp_default_region XX;' },
        qr/whatsapp_default_region "XX" is not a known region code/, qr/whatsapp_default_region XX/],
    ['http:// server URL', { http => 'whatsapp_server http://127.0.0.1:1/ws/chat;' },
        qr{whatsapp_server "http://127\.0\.0\.1:1/ws/chat" must start with wss:// or ws://}, qr{whatsapp_server http://}],
    ['server URL with a space', { http => 'whatsapp_server "ws://127.0.0.1:1/ws chat";' },
        qr{whatsapp_server (".*" )?must be a URL of visible ASCII characters}, qr{ws chat}],
    ['server URL with CR LF', { http => 'whatsapp_server "ws://127.0.0.1:1/ws\r\nX-Injected: 1";' },
        qr{whatsapp_server (".*" )?must be a URL of visible ASCII characters}, undef],
    ['root key not base64', { http => 'whatsapp_root_key not*base64!;' },
        qr/whatsapp_root_key must be the base64 of a 32-byte/, qr/whatsapp_root_key not/],
    ['root key of 16 bytes', { http => 'whatsapp_root_key AAAAAAAAAAAAAAAAAAAAAA==;' },
        qr/whatsapp_root_key must be the base64 of a 32-byte/, qr/whatsapp_root_key AAAA/],
    ['zone too small', { zone => 'whatsapp_zone wa 128k;' },
        qr/whatsapp_zone "wa": size must be at least 256k/, qr/whatsapp_zone wa 128k/],
    ['duplicate whatsapp_zone', { http => 'whatsapp_zone other 1m;' },
        qr/"whatsapp_zone" directive is duplicate/, qr/whatsapp_zone other 1m/],
    ['short api key', { key => 'Qz7xK2' },
        qr/an API key must be 8 to 256 characters long/, qr/whatsapp_api_key Qz7xK2/, 'Qz7xK2'],
    ['api key with a space', { key => '"Wv9 secret-with-space"' },
        qr/an API key must be printable ASCII without spaces/, qr/Wv9 secret/, 'Wv9 secret-with-space'],
    ['api key file missing', { http => "whatsapp_api_key_file $d/no-such-keys.txt;" },
        qr/cannot read whatsapp_api_key_file "\Q$d\E\/no-such-keys\.txt"/, qr/whatsapp_api_key_file/],
    ['short key inside the key file', { http => "whatsapp_api_key_file $d/short-keys.txt;" },
        qr/an API key must be 8 to 256 characters long/, qr/whatsapp_api_key_file/, 'Kf5sh'],
    ['send rate per hour', { http => 'whatsapp_send_rate 10r/h;' },
        qr{whatsapp_send_rate "10r/h": expected a rate like 60r/m or 2r/s}, qr/whatsapp_send_rate 10r\/h/],
    ['send rate burst=0', { http => 'whatsapp_send_rate 2r/s burst=0;' },
        qr/whatsapp_send_rate: invalid "burst=0", expected burst=N/, qr/whatsapp_send_rate 2r\/s burst=0/],
    ['backoff min > max', { http => 'whatsapp_reconnect_backoff 10s 1s;' },
        qr/whatsapp_reconnect_backoff needs "min max" with 0 < min <= max/, qr/whatsapp_reconnect_backoff/],
    ['whatsapp_max_sessions above what worker_connections allow', { http => 'whatsapp_max_sessions 1000;' },
        qr/whatsapp_max_sessions 1000 is more than the helper can hold: worker_connections 256 and an open-file limit of \d+ \(worker_rlimit_nofile\) leave room for 192 sessions/,
        qr/whatsapp_max_sessions 1000/],
    ['whatsapp_max_sessions above worker_rlimit_nofile', { main => 'worker_rlimit_nofile 100;', connections => 1024, http => 'whatsapp_max_sessions 60;' },
        qr/whatsapp_max_sessions 60 is more than the helper can hold: worker_connections 1024 and an open-file limit of 100 \(worker_rlimit_nofile\) leave room for 50 sessions/,
        qr/whatsapp_max_sessions 60/],
    ['whatsapp_max_sessions 0', { http => 'whatsapp_max_sessions 0;' },
        qr/"whatsapp_max_sessions" directive must be at least 1/, qr/whatsapp_max_sessions 0/],
);
WaTest::spew("$d/short-keys.txt", "# ops keys\n$good_key\nKf5sh\n", 0600);

for my $b (@bad) {
    my ($name, $o, $msg, $line_re, $secret) = @$b;
    unlink "$d/error.log";
    my $file = $t->write_conf(%$o);
    my ($rc, $out) = $t->test_config;
    is($rc, 1, "$name: nginx -t exits 1");
    like($out, qr/\[emerg\] .*$msg/, "$name: clear [emerg] message") or diag $out;
    my ($where) = $out =~ /\[emerg\] [^\n]* in (\S+:\d+)\s*$/m;
    my ($f, $n) = ($where // '') =~ /^(.*):(\d+)$/;
    is($f, $file, "$name: message names the file");
    if ($line_re) {
        is($n, line_of($file, $line_re), "$name: message names the offending line");
    } else {
        # checked once the http{} block is parsed: nginx reports the line where the block ends
        my $close = line_of($file, qr/^}\s*$/);
        my $w = $where // 'none';
        ok(defined $n && $n > 1 && $n <= $close, "$name: message names a line of the file ($w)");
    }
    like($out, qr/configuration file \Q$file\E test failed/, "$name: \"test failed\"");
    like($t->error_log, $msg, "$name: error.log has the message too");
    if ($name =~ /CR LF/) {
        ok($out !~ /^X-Injected/m && $t->error_log !~ /^X-Injected/m, "$name: no raw line break reaches the output or the log");
    }
    if ($secret) {
        unlike($out, qr/\Q$secret\E/, "$name: the key itself is not printed");
        unlike($t->error_log, qr/\Q$secret\E/, "$name: the key itself is not in error.log");
    }
}

my @left2 = grep { index($_->{cmd}, $d) >= 0 } proc_list();
is(scalar @left2, 0, 'no nginx process left after all runs');
ok(!-e "$t->{state_dir}/owner.lock", 'still no owner.lock');
is($sim->stats->{ws_total}, 0, 'still no WebSocket to the server');
$sim->stop;
done_testing;

#!/usr/bin/env perl
# Benchmark (not a test): POST /api/send-message through the module and through the Node/Express/Baileys seed
# server (../shared/anchors/seed-server), each linked to the same simulator, same load: wrk, 16 connections,
# DURATION seconds, rotating over 20 one-device contacts whose sessions exist already. The simulator runs in
# bench mode (contacts decrypt 1 message in 50 and ack the rest; no read receipts; delivery receipts for several
# messages at a time), since a Node simulator
# spends ~1 ms of CPU per decrypt. Prints messages/s, latency p50/p99, CPU per message of the process that
# owns the WhatsApp connection (helper / node, from /proc), and the ratios; writes bench/out/send.md.
#   DURATION=10 perl bench/send.pl          SEED=0 skips the seed server; SAMPLE=N decrypts 1 in N (50);
#   TRACE=1 writes every request's end time and duration to bench/out/trace.log; SIM_NODE_ARGS sets node's options
#   for the simulator (default --max-semi-space-size=2 --single-threaded-gc).
# The module answers after WhatsApp's server acked the message; the seed server answers when Baileys'
# sendMessage resolves (after writing the stanza, before any ack): the module does strictly more per answer.
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../t/lib";
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(decode_base64);
use WaTest qw(wait_until);

my $DURATION = $ENV{DURATION} || 10;
my $root = "$Bin/..";
my $t = WaTest->new;
# The simulator stands in for WhatsApp's servers, which do not share our two cores: its garbage collector is set for
# short pauses. A 2 MiB young generation (V8's default is 16 MiB) and no GC helper threads: a scavenge then
# takes ~0.8 ms instead of ~5 ms (--trace-gc-nvp: 1.8 ms of those 5 run the weak callbacks of the ~2 crypto
# objects Node creates per frame, 1.4 ms are GC threads waiting for a core the helper and nginx hold). Measured in alternating
# runs: p99 7.8-7.9 ms with these, 10.0-10.5 ms with V8's defaults (SIM_NODE_ARGS= gives those).
my @node_args = split ' ', $ENV{SIM_NODE_ARGS} // '--max-semi-space-size=2 --single-threaded-gc';
# Contacts acknowledge deliveries several at a time (--receipt-lists, as whatsmeow writes a receipt for several
# messages): one receipt per contact and 250 ms instead of one per message; RECEIPT_LISTS=0 for one per message.
my @receipts = ($ENV{RECEIPT_LISTS} // 1) ? ('--receipt-lists') : ();
my $sim = WaTest::Sim->start($t->{dir}, args => ['--bench-sample', $ENV{SAMPLE} || '50', '--no-read-receipts', @receipts], node_args => \@node_args);
my @contacts = map { 573007770000 + $_ } 1 .. 20;
$sim->control(POST => '/contacts', body => { phone => "$_", devices => 1 }) for @contacts;
my $CONTACTS = join ',', @contacts;

sub cpu_ticks { my ($pid) = @_; open(my $f, '<', "/proc/$pid/stat") or return 0; my @f = split ' ', <$f>; return $f[13] + $f[14] }
# Time spent runnable but waiting for a CPU (ns, /proc/PID/schedstat field 2), all threads.
sub run_delay_ns { my ($pid) = @_; my $t = 0; for my $f (glob "/proc/$pid/task/*/schedstat") { open(my $h, '<', $f) or next; my @x = split ' ', <$h>; $t += $x[1] } $t }
sub rss_kib { my ($pid) = @_; open(my $f, '<', "/proc/$pid/status") or return 0; while (<$f>) { return $1 if /^VmRSS:\s+(\d+)/ } 0 }
my $HZ = `getconf CLK_TCK` + 0 || 100;

sub wrk {
    my ($port, $key, $org) = @_;
    local $ENV{WA_CONTACTS} = $CONTACTS;
    local $ENV{WA_KEY} = $key;
    local $ENV{WA_ORG} = $org;
    my $out = `wrk -t2 -c16 -d${DURATION}s --timeout 10s -s $Bin/send.lua http://127.0.0.1:$port/ 2>&1`;
    my ($req, $dur, $es, $et, $p50, $p99) = $out =~ /RESULT requests=(\d+) duration_us=(\d+) errors_status=(\d+) errors_timeout=(\d+) p50_us=(\d+) p99_us=(\d+)/
        or die "wrk: $out";
    return { rps => $req / ($dur / 1e6), n => $req, bad => $es + $et, p50 => $p50 / 1000, p99 => $p99 / 1000 };
}

sub warm {
    my ($send) = @_;
    $send->($_) for @contacts;    # first message per contact: prekey bundle, pkmsg
    sleep 1;
}

# ---------------------------------------------------------------------------------------------- the module
# TRACE=1: every request's end time and duration in bench/out/trace.log (where the tail comes from, in time)
my $trace = $ENV{TRACE} ? "log_format wa_trace '\$msec \$request_time \$status';\n    access_log $t->{dir}/trace.log wa_trace buffer=256k;\n    " : '';
$t->write_conf(http => $trace . ($ENV{STORE_SYNC} ? "whatsapp_store_sync $ENV{STORE_SYNC};\n    " : '') . "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_send_rate 1000000r/s burst=1000000;", workers => 1, level => 'warn', connections => 1024,
    server => "location = /metrics { whatsapp_metrics; }");
$t->start;
$t->api(POST => '/api/start-session', body => { organization_id => 'bench' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/bench'); $q && $q->{success} ? $q : undef }, 10) or die 'no QR';
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => '573006660001' });
wait_until(sub { ($t->status('bench')->{status} // '') eq 'connected' }, 10) or die 'not connected';
sleep 2;
warm(sub { $t->api(POST => '/api/send-message', body => { organization_id => 'bench', phone => "$_[0]", message => 'hola' }) });
my ($hp) = $t->helper_pids;
my ($wp) = $t->worker_pids;
my ($c0, $w0, $s0, $k0) = (cpu_ticks($hp), cpu_ticks($wp), cpu_ticks($sim->{pid}), (times)[2] + (times)[3]);
my @rd0 = map { run_delay_ns($_) } $hp, $wp, $sim->{pid};
$sim->reset;
my $m = wrk($t->{port}, $t->{key}, 'bench');
my $ss = $sim->stats;
# The simulator stands in for WhatsApp's server on the same 2 cores; its own pauses are part of every latency.
$m->{sim_pauses} = sprintf('simulator event-loop delay p99 %.1f ms, max %.1f ms; its GC: %d pauses, %d ms in all, longest %.1f ms',
    $ss->{loop_delay}{p99_ms} // -1, $ss->{loop_delay}{max_ms} // -1, $ss->{gc}{count} // -1, $ss->{gc}{total_ms} // -1, $ss->{gc}{max_ms} // -1);
my $kinds = $ss->{gc}{by_kind} || {};
$m->{sim_pauses} .= ' (' . join(', ', map { sprintf('%s %d, %d ms, longest %.1f', $_, $kinds->{$_}{count}, $kinds->{$_}{total_ms}, $kinds->{$_}{max_ms}) } sort keys %$kinds) . ')' if %$kinds;
print "# $m->{sim_pauses}\n";
$m->{cpu_us} = (cpu_ticks($hp) - $c0) / $HZ * 1e6 / ($m->{n} || 1);
# Everyone else on the same 2 cores, per message: where the CPU goes decides the latency at a fixed concurrency.
$m->{others} = sprintf('nginx worker %.0f µs, simulator %.0f µs, wrk %.0f µs per message',
    (cpu_ticks($wp) - $w0) / $HZ * 1e6 / ($m->{n} || 1), (cpu_ticks($sim->{pid}) - $s0) / $HZ * 1e6 / ($m->{n} || 1),
    ((times)[2] + (times)[3] - $k0) * 1e6 / ($m->{n} || 1));
my @rd = map { (run_delay_ns((($hp, $wp, $sim->{pid}))[$_]) - $rd0[$_]) / 1000 / ($m->{n} || 1) } 0 .. 2;
$m->{waits} = sprintf('waiting for a CPU per message: helper %.0f µs, nginx worker %.0f µs, simulator %.0f µs', @rd);
printf "# CPU: helper %.0f µs, %s\n# %s\n", $m->{cpu_us}, $m->{others}, $m->{waits};
$m->{rss} = rss_kib($hp);
# Where the tail comes from: the helper's store commits and event-loop lag over the run (all of it, warm-up included).
{
    my (undef, undef, undef, $body) = WaTest::http_request($t->{port}, GET => '/metrics');
    my %h;
    $h{$1} = $2 while ($body // '') =~ /^whatsapp_store_commit_seconds_bucket\{le="([^"]+)"\} (\S+)/mg;
    my ($n) = ($body // '') =~ /^whatsapp_store_commit_seconds_count\S* (\S+)/m;
    my ($sum) = ($body // '') =~ /^whatsapp_store_commit_seconds_sum\S* (\S+)/m;
    my ($lag) = ($body // '') =~ /^whatsapp_event_loop_lag_max_seconds\S* (\S+)/m;
    my @b = sort { ($a eq '+Inf' ? 1e9 : $a) <=> ($b eq '+Inf' ? 1e9 : $b) } keys %h;
    my ($ckt) = ($body // "") =~ /^whatsapp_store_checkpoints_total\{by="thread"\} (\S+)/m;
    my ($ckc) = ($body // "") =~ /^whatsapp_store_checkpoints_total\{by="commit"\} (\S+)/m;
    my ($ckp) = ($body // "") =~ /^whatsapp_store_checkpoints_total\{by="between_passes"\} (\S+)/m;
    $m->{commits} = sprintf("%d commits, %.3f ms each on average; over 5 ms: %d; event-loop lag max %.1f ms; WAL checkpoints: %d by the thread, %d between passes, %d inside commits",
        $n // 0, $n ? 1000 * $sum / $n : 0, ($n // 0) - ($h{"0.005"} // $n // 0), 1000 * ($lag // 0), $ckt // -1, $ckp // -1, $ckc // -1);
    $m->{commit_hist} = join ' ', map { "le=$_:$h{$_}" } @b;
    print "# store: $m->{commits}\n# commit histogram: $m->{commit_hist}\n";
}
$t->stop;
if ($ENV{TRACE}) { mkdir "$root/bench/out"; system('cp', "$t->{dir}/trace.log", "$root/bench/out/trace.log") }

# ---------------------------------------------------------------------------------------------- the seed server
my $s;
if (($ENV{SEED} // 1) && -d "$root/../shared/anchors/seed-server") {
    my $dir = "$t->{dir}/seed-server";
    system("cp -r $root/../shared/anchors/seed-server $dir && cd $dir && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1") == 0
        or die 'seed server: npm install failed';
    my $port = WaTest::free_port();
    my $pid = WaTest::spawn(argv => ['node', 'server.mjs'], chdir => $dir, stdout => "$t->{dir}/seed.log", stderr => "$t->{dir}/seed.log",
        env => { PORT => $port, API_KEY => 'bench-key-0123456789', WA_URL => $sim->{ws_url}, WA_ROOT_KEY => $sim->{root_key},
                 AUTH_DIR => "$t->{dir}/auth", LOG_LEVEL => 'silent' });
    my $api = sub { WaTest::http_request($port, $_[0], $_[1], headers => { 'X-API-Key' => 'bench-key-0123456789' }, body => $_[2], timeout => 10) };
    wait_until(sub { my ($st) = WaTest::http_request($port, GET => '/health'); ($st // 0) == 200 }, 20) or die 'seed server did not start';
    $api->(POST => '/api/start-session', { organization_id => 'bench' });
    my $url = wait_until(sub { my (undef, undef, $q) = $api->(GET => '/api/qr/bench'); $q && $q->{qr} }, 20) or die 'seed: no QR';
    my ($png) = $url =~ m{base64,(.+)$};
    WaTest::spew("$t->{dir}/seed-qr.png", decode_base64($png));
    chomp(my $text = `zbarimg --raw -q $t->{dir}/seed-qr.png`);
    $sim->control(POST => '/scan', body => { qr => $text, phone => '573006660002' });
    # Baileys closes with 515 after pairing and the seed server reconnects
    wait_until(sub { my (undef, undef, $x) = $api->(GET => '/api/status/bench'); ($x->{status} // '') eq 'connected' }, 30) or die 'seed not connected';
    sleep 3;
    warm(sub { $api->(POST => '/api/send-message', { organization_id => 'bench', phone => "$_[0]", message => 'hola' }) });
    my $c1 = cpu_ticks($pid);
    $s = wrk($port, 'bench-key-0123456789', 'bench');
    $s->{cpu_us} = (cpu_ticks($pid) - $c1) / $HZ * 1e6 / ($s->{n} || 1);
    $s->{rss} = rss_kib($pid);
    WaTest::kill_group($pid, 3);
}

my $md = "| server | messages/s | p50 | p99 | CPU per message | RSS | failed |\n|---|---|---|---|---|---|---|\n";
$md .= sprintf("| ngx_whatsapp (answers after the server ack) | %.0f | %.2f ms | %.2f ms | %.0f µs (helper) | %d MiB (helper) | %d |\n",
    $m->{rps}, $m->{p50}, $m->{p99}, $m->{cpu_us}, $m->{rss} / 1024, $m->{bad});
$md .= sprintf("| seed server (Express + Baileys; answers before any ack) | %.0f | %.2f ms | %.2f ms | %.0f µs (node) | %d MiB | %d |\n",
    $s->{rps}, $s->{p50}, $s->{p99}, $s->{cpu_us}, $s->{rss} / 1024, $s->{bad}) if $s;
$md .= sprintf("\nmodule / seed server: throughput **%.1f×**, p99 %.2f×, CPU per message %.1f× less\n",
    $m->{rps} / $s->{rps}, $s->{p99} / $m->{p99}, $s->{cpu_us} / ($m->{cpu_us} || 1)) if $s && $s->{rps};
print $md;
mkdir "$root/bench/out";
WaTest::spew("$root/bench/out/send.md", $md);
Test::More::done_testing();

# 1,000 organizations retrying against a dead server: a failed reconnect rewrites no state and writes no log line
# of its own. What the helper writes (write syscalls from /proc/PID/io, bytes of error.log at the default info
# level) is measured over a few seconds of retries; the log says the first failure and each change of state of an
# organization, plus a periodic summary (whatsapp_status_summary) instead of one line per retry.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $N = $ENV{WA_QUIET_ORGS} || 1000;
my $closed = free_port();
my $t = WaTest->new;
my $sd = $t->{state_dir};
my ($uid, $gid) = $> == 0 ? ((getpwnam('nobody'))[2], (getgrnam('nogroup'))[2] // (getpwnam('nobody'))[3]) : ($>, $));
($gid) = split ' ', $gid;
my $conns = $N + 512;
$t->write_conf(connections => $conns, main => "worker_rlimit_nofile $conns;", zone => 'whatsapp_zone wa 16m;',
    http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 1s 2s;\n"
        . "    whatsapp_status_summary 3s;");
$t->start;
$t->stop;
system('sqlite3', "$sd/whatsapp.db", "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N) "
    . "INSERT INTO orgs (org, generation, wanted, state, created_at) SELECT 'q' || i, 1, 1, 0, strftime('%s') FROM n; COMMIT;") == 0
    or die 'sqlite3 failed';
system('chown', '-R', "$uid:$gid", $sd);
unlink "$t->{dir}/error.log";
$t->start;

ok(wait_until(sub { ($t->health->{sessions}{reconnecting} // 0) == $N }, 30), "$N organizations reconnecting");
sleep 3;    # past the first failures (each logged once, as a change of state)

my ($hp) = $t->helper_pids;
sub io { my %io = map { /^(\w+): (\d+)/ ? ($1, $2) : () } split /\n/, WaTest::slurp("/proc/$hp/io"); \%io }
sub retries { my $n = 0; $n += $_->{retry_count} for $t->connections; $n }
my ($io0, $log0, $r0, $t0) = (io(), -s "$t->{dir}/error.log", retries(), time);
sleep 6;
my ($io1, $log1, $r1, $t1) = (io(), -s "$t->{dir}/error.log", retries(), time);
my $el = $t1 - $t0;
my $attempts = ($r1 - $r0) / $el;
my $writes = ($io1->{syscw} - $io0->{syscw}) / $el;
my $bytes = ($io1->{wchar} - $io0->{wchar}) / $el;
my $lograte = ($log1 - $log0) / $el;
diag sprintf('%d organizations against a dead server: %.0f failed reconnects/s; the helper: %.1f write syscalls/s '
    . '(%.0f bytes/s), error.log grows %.0f bytes/s', $N, $attempts, $writes, $bytes, $lograte);
cmp_ok($attempts, '>', $N / 4, sprintf('they really retry (%.0f/s)', $attempts));
cmp_ok($writes, '<', 3, sprintf('retries write nothing: %.1f write syscalls/s (allowed 3: summaries)', $writes));
cmp_ok($lograte, '<', 150, sprintf('error.log grows %.0f bytes/s (allowed 150: a summary line every 3 s)', $lograte));
is($t->org_row('q1')->{state}, 0, 'the stored state was not rewritten by the retries');

# The same, syscall by syscall (fsync is not in /proc/PID/io): strace -c on the helper for 3 s of retries.
SKIP: {
    skip 'strace not installed', 1 unless -x '/usr/bin/strace';
    my $out = "$t->{dir}/strace-c.txt";
    system("timeout -s INT 3 strace -c -f -p $hp -o $out >/dev/null 2>&1");
    my %calls = map { /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/ ? ($2, $1) : () } split /\n/, WaTest::slurp($out);
    my $connects = $calls{connect} // 0;
    my $w = 0;
    $w += $calls{$_} // 0 for qw(write pwrite64 writev fsync fdatasync);
    diag "strace -c of the helper over 3 s: $connects connect(), "
        . join(', ', map { "$_ " . ($calls{$_} // 0) } qw(write pwrite64 writev fsync fdatasync));
    ok($connects > $N / 4 && $w <= 3, "$connects reconnects, $w writes or fsyncs (allowed 3)");
}

my @summaries = grep { /organizations: \d+ connected, \d+ reconnecting/ } split /\n/, $t->error_log;
cmp_ok(scalar @summaries, '>=', 2, 'a summary line every whatsapp_status_summary') or diag $t->error_log;
my ($rec) = ($summaries[-1] // '') =~ /$N organizations: 0 connected, (\d+) reconnecting/;
ok(($rec // 0) >= $N * 0.9, 'it counts the organizations (a few may be dialing at that instant)') and diag $summaries[-1];
like($summaries[-1] // '', qr/(\d+) failed reconnects? in the last/, 'and the failed reconnects since the last one');
my @first = grep { /org=q17: / } split /\n/, $t->error_log;
is(scalar @first, 1, 'one line for an organization that kept failing: its first failure') or diag join "\n", @first;
like($first[0] // '', qr/\[warn\].*Connection refused/, 'a warning, saying why');
$t->stop;
done_testing;

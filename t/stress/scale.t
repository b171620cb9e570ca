# Many organizations (WA_SCALE_ORGS, default 10,000; `make stress`; t/174-scale.t runs it with 500) wanted in the
# store, against a dead server port (every connect is refused at once, so no QR is rendered): the helper loads
# them, reconnects them spread over time, and
#   - a reload: the new helper serves commands within 1 s, no command answers 504 (or 503) meanwhile;
#   - kill -9 of the helper: the respawned one serves commands within 1 s, no command answers 504;
#   - QUIT: nginx exits within 4 s.
# Every figure is printed (prove -v); bounds allow 3x the target on a loaded machine.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use lib 't/lib';
use WaTest qw(wait_until free_port alive);

my $N = $ENV{WA_SCALE_ORGS} || 10000;
my $closed = free_port();
my $t = WaTest->new;
my $d = $t->{dir};
my $sd = $t->{state_dir};
my ($uid, $gid) = $> == 0 ? ((getpwnam('nobody'))[2], (getgrnam('nogroup'))[2] // (getpwnam('nobody'))[3]) : ($>, $));
($gid) = split ' ', $gid;

# Room for N sessions: max_sessions follows worker_connections and the open-file limit.
my $conns = $N + 1024;
my $hard = `sh -c 'ulimit -Hn'` + 0;
my $nofile = $hard && $hard < $conns * 2 ? $hard : $conns * 2;
plan skip_all => "the open-file limit ($hard) is too low for $N organizations" if $nofile < $conns;
$t->write_conf(connections => $conns, main => "worker_rlimit_nofile $nofile;",
    zone => 'whatsapp_zone wa ' . (16 + int($N * 4 / 1000)) . 'm;',
    http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_command_timeout 10s;");

# The store with N wanted organizations: nginx creates the schema, then build/tools/wa_import (`make stress`
# builds it) gives each one linked credentials, as restarts load them; without the tool, sqlite3 adds bare rows.
$t->start;
$t->stop;
my $import = "$WaTest::ROOT/build/tools/wa_import";
my $t_gen = time;
if (-x $import) {
    system("$import gen $sd org $N 573000000000 > $d/import.json") == 0 or die 'wa_import failed';
    system('sqlite3', "$sd/whatsapp.db", "UPDATE orgs SET wanted = 1; UPDATE credentials SET me_jid = "
        . "(SELECT phone FROM orgs o WHERE o.org = credentials.org) || ':1\@s.whatsapp.net', platform = 'android';") == 0
        or die 'sqlite3 failed';
} else {
    system('sqlite3', "$sd/whatsapp.db", "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N) "
        . "INSERT INTO orgs (org, generation, wanted, state, created_at) SELECT 'org' || i, 1, 1, 0, strftime('%s') FROM n; COMMIT;") == 0
        or die 'sqlite3 failed';
}
diag sprintf('%d organizations stored (%s) in %.1f s', $N, -x $import ? 'with linked credentials' : 'rows only', time - $t_gen);
system('chown', '-R', "$uid:$gid", $sd);
unlink "$d/error.log";

my $t0 = time;
$t->start(wait_helper => 0);
my $h = wait_until(sub { my $h = $t->health; ($h->{helper}{state} // '') eq 'active' ? $h : undef }, 30);
ok($h, "helper active with $N organizations");
my $loaded = wait_until(sub { my $h = $t->health; ($h->{shared_memory}{organizations} // 0) >= $N ? time : undef }, 60);
ok($loaded, "all $N organizations published");
diag sprintf('start: %d organizations loaded and published %.2f s after nginx started', $N, ($loaded // time) - $t0);

# Reconnections are spread over time: the first connect of each organization, from the log, per second.
my $spread = sub {
    my ($log) = @_;
    my %first;
    while ($log =~ /(\d\d:\d\d:\d\d) \[\w+\] \d+#\d+: whatsapp org=(org\d+): connect\(\) to/g) { $first{$2} //= $1 }
    my %per_s;
    $per_s{$_}++ for values %first;
    return (scalar(keys %first), (sort { $b <=> $a } values %per_s)[0] // 0, scalar keys %per_s);
};
ok(wait_until(sub { ($t->health->{sessions}{reconnecting} // 0) >= $N * 0.99 }, 3 * $N / 500 + 10),
    'every organization tried to connect (reconnecting against the dead port)');
my ($dialed, $peak, $secs) = $spread->($t->error_log);
diag "resume: $dialed organizations dialed over $secs s, at most $peak in one second";
cmp_ok($peak, '<=', 700, "reconnections spread over time (at most $peak per second; 25 per ~50 ms = 500/s)");

# What retries against the dead server cost once every organization failed once (item 14): write syscalls of the
# helper (/proc/PID/io) and error.log growth, over 10 s (4 s below 5,000 organizations).
{
    ok(wait_until(sub { my @c = $t->connections; @c >= $N && !grep { !$_->{retry_count} } @c }, 60, 0.5),
        'every organization failed once (its one warning logged)');
    my ($hp) = $t->helper_pids;
    my $io = sub { my %io = map { /^(\w+): (\d+)/ ? ($1, $2) : () } split /\n/, WaTest::slurp("/proc/$hp/io"); \%io };
    my $retries = sub { my $n = 0; $n += $_->{retry_count} for $t->connections; $n };
    my ($io0, $log0, $r0, $t0) = ($io->(), -s "$d/error.log", $retries->(), time);
    sleep($N >= 5000 ? 10 : 4);
    my ($io1, $log1, $r1, $t1) = ($io->(), -s "$d/error.log", $retries->(), time);
    my $el = $t1 - $t0;
    diag sprintf('retries: %.0f failed reconnects/s; the helper %.1f write syscalls/s, error.log %.0f bytes/s',
        ($r1 - $r0) / $el, ($io1->{syscw} - $io0->{syscw}) / $el, ($log1 - $log0) / $el);
    cmp_ok(($io1->{syscw} - $io0->{syscw}) / $el, '<', 5, 'retries write (almost) nothing');
}

# A prober: a command every 50 ms, each answer recorded (status, code, sent, took).
sub start_prober {
    my ($file) = @_;
    my $parent = $$;
    return WaTest::background(sub {
        open(my $fh, '>', $file) or die;
        $fh->autoflush(1);
        while (getppid() == $parent && !-e "$file.stop") {
            my $s = time;
            my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'org1' }, timeout => 30);
            printf $fh "%d %s %.3f %.3f\n", $st // 0, $j->{code} // '-', $s, time - $s;
            sleep 0.05;
        }
    });
}
sub stop_prober {
    my ($pid, $file) = @_;
    WaTest::spew("$file.stop", '');
    WaTest::wait_exit($pid, 35);
    return map { [split ' '] } split /\n/, WaTest::slurp($file);
}
# After the event at $at: when the new helper generation answered its first command (a command sent after it
# became active), and every answer that was not 200.
sub handover_figures {
    my ($name, $at, $gen_before, $probes) = @_;
    my $active = wait_until(sub { my $h = $t->health; ($h->{helper}{state} // '') eq 'active'
        && $h->{helper}{generation} > $gen_before ? time : undef }, 30);
    ok($active, "$name: a new helper generation is active");
    my $s = time;
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'org2' }, timeout => 30);
    my $serving = time - $at;
    is($st, 200, "$name: the new helper answers a command");
    diag sprintf("$name: new helper active %.2f s after the signal, serving commands (answer in %.3f s) at %.2f s",
        ($active // time) - $at, time - $s, $serving);
    return $serving;
}

# ---------------------------------------------------------------------------------------------- reload
{
    my $file = "$d/probe.reload";
    my $p = start_prober($file);
    sleep 0.5;
    my $gen = $t->health->{helper}{generation};
    my $at = time;
    kill 'HUP', $t->master_pid;
    my $serving = handover_figures('reload', $at, $gen);
    cmp_ok($serving, '<', 3, sprintf('reload: serving within %.2f s (target 1 s, allowed 3 s)', $serving));
    sleep 1;
    my @p = stop_prober($p, $file);
    my @bad = grep { $_->[0] != 200 } @p;
    my ($slowest) = sort { $b <=> $a } map { $_->[3] } @p;
    diag sprintf('reload: %d probe commands, %d not 200, slowest answer %.3f s', scalar @p, scalar @bad, $slowest // 0);
    is(scalar(grep { $_->[0] == 504 } @p), 0, 'reload: no command answered 504');
    is(scalar @bad, 0, 'reload: every command answered 200 (no 503 either)') or diag explain [@bad[0 .. ($#bad < 5 ? $#bad : 5)]];
    cmp_ok($slowest // 0, '<', 3, sprintf('reload: slowest command %.3f s (target 1 s, allowed 3 s)', $slowest // 0));
    my $old_gone = wait_until(sub { scalar(my @h = $t->helper_pids) == 1 }, 30);
    ok($old_gone, 'the old helper has exited');
}

# ---------------------------------------------------------------------------------------------- kill -9
{
    ok(wait_until(sub { ($t->health->{sessions}{reconnecting} // 0) >= $N * 0.99 }, 3 * $N / 500 + 10),
        'all reconnecting again under the new helper');
    my $file = "$d/probe.crash";
    my $p = start_prober($file);
    sleep 0.5;
    my $gen = $t->health->{helper}{generation};
    my ($hp) = $t->helper_pids;
    my $at = time;
    kill 'KILL', $hp;
    my $serving = handover_figures('kill -9', $at, $gen);
    cmp_ok($serving, '<', 3, sprintf('kill -9: serving within %.2f s (target 1 s, allowed 3 s)', $serving));
    sleep 1;
    my @p = stop_prober($p, $file);
    my %codes;
    $codes{"$_->[0] $_->[1]"}++ for @p;
    diag 'kill -9: probe answers: ' . join(', ', map { "$_ x$codes{$_}" } sort keys %codes);
    is(scalar(grep { $_->[0] == 504 } @p), 0, 'kill -9: no command answered 504');
}

# ---------------------------------------------------------------------------------------------- QUIT
{
    ok(wait_until(sub { ($t->health->{sessions}{reconnecting} // 0) >= $N * 0.99 }, 3 * $N / 500 + 10),
        'all reconnecting again after the crash');
    my $took = $t->quit(timeout => 60);
    ok(defined $took, 'nginx exited on QUIT');
    diag sprintf('QUIT with %d organizations: %.2f s', $N, $took // -1);
    cmp_ok($took // 99, '<', 12, sprintf('QUIT within %.2f s (target 4 s, allowed 12 s)', $took // -1));
    $t->check_log(allow => $WaTest::KILLED);
    my @summary = grep { /organizations: \d+ connected/ } split /\n/, $t->error_log;
    diag 'error.log: ' . (-s "$d/error.log") . ' bytes; ' . scalar(@summary) . ' summary lines';
}
done_testing;

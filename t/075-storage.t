# A full disk and a read-only state directory (a small tmpfs mounted here, as root): start-session, logout and
# clear-session answer 200 only when the store's commit succeeded, 507 storage_error otherwise; the log says why
# once. owner.lock that cannot be opened (EROFS, ELOOP) does not kill the helper: it retries, /api/health says why
# no helper owns the sessions, commands answer 503 at once, and the helper takes over when the cause is gone.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

plan skip_all => 'needs root (mounts a tmpfs)' if $> != 0;

my $closed = free_port();
my $t = WaTest->new;
my $sd = $t->{state_dir};
mkdir $sd or die "mkdir $sd: $!";
system('mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', $sd) == 0 or plan skip_all => 'cannot mount a tmpfs here';
my $mounted = 1;
END { if ($mounted) { system('umount', '-l', $sd) } }

$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 30s 60s;");
$t->start;

sub cmd {
    my ($path, $org) = @_;
    my ($st, undef, $j) = $t->api(POST => $path, body => { organization_id => $org }, timeout => 20);
    return ($st, $j->{code} // $j->{status} // '');
}
sub row { $t->org_row($_[0]) }

# ---------------------------------------------------------------------------------------------- full disk
for my $org (map { "pre$_" } 1 .. 6) {
    my ($st) = cmd('/api/start-session', $org);
    is($st, 200, "$org started while there is room");
}
ok(wait_until(sub { !grep { !row($_) } map { "pre$_" } 1 .. 6 }, 5), 'their rows are stored');

# Fill the file system: as root, tmpfs keeps nothing back.
system("dd if=/dev/zero of=$sd/filler bs=4k 2>/dev/null");
my $free = `df -k --output=avail $sd | tail -1` + 0;
diag "tmpfs filled, $free KiB left";

my (%answers, @lies);
for my $i (1 .. 40) {
    my $org = "full$i";
    my ($st, $code) = cmd('/api/start-session', $org);
    $answers{"$st $code"}++;
    push @lies, "$org: 200 without its row" if $st == 200 && !(row($org) && row($org)->{wanted});
    push @lies, "$org: $st $code" if $st != 200 && "$st $code" ne '507 storage_error';
}
diag 'start-session on a full disk: ' . join(', ', map { "$_ x$answers{$_}" } sort keys %answers);
is(scalar @lies, 0, 'start-session: 200 only when the organization is stored, else 507 storage_error') or diag join "\n", @lies;
ok($answers{'507 storage_error'}, 'the disk was full: some start-session got 507');

# A second start-session of an organization that got 507 must not pass because it already runs in memory.
my @again = grep { !row($_) } map { "full$_" } 1 .. 40;
for my $org (@again[0 .. ($#again < 4 ? $#again : 4)]) {
    my ($st, $code) = cmd('/api/start-session', $org);
    ok($st == 507 || ($st == 200 && row($org)), "start-session again for $org (nothing stored): $st $code");
}

for my $org (qw(pre1 pre2)) {
    my ($st, $code) = cmd('/api/logout', $org);
    my $r = row($org);
    ok(($st == 507 && $code eq 'storage_error') || ($st == 200 && $r && !$r->{wanted}), "logout $org on a full disk: $st $code");
    is($r->{wanted}, 1, "$org: still wanted in the store") if $st == 507;
}
for my $org (qw(pre3 pre4)) {
    my ($st, $code) = cmd('/api/clear-session', $org);
    ok(($st == 507 && $code eq 'storage_error') || ($st == 200 && !row($org)), "clear-session $org on a full disk: $st $code");
}
my @why = grep { /store commit failed/ } split /\n/, $t->error_log;
is(scalar @why, 1, 'the log says why once') or diag join "\n", @why[0 .. ($#why < 5 ? $#why : 5)];
like($why[0] // '', qr/full/i, 'and why: the disk is full');

unlink "$sd/filler";
for my $org (@again[0 .. ($#again < 4 ? $#again : 4)], 'full40') {
    my ($st, $code) = cmd('/api/start-session', $org);
    ok($st == 200 && row($org) && row($org)->{wanted}, "with room again, start-session $org: $st $code, stored");
}
for my $org (qw(pre1 pre2)) {
    my ($st, $code) = cmd('/api/logout', $org);
    ok($st == 200 && !row($org)->{wanted}, "with room again, logout $org: $st $code, stored");
}
for my $org (qw(pre3 pre4)) {
    my ($st, $code) = cmd('/api/clear-session', $org);
    ok($st == 200 && !row($org), "with room again, clear-session $org: $st $code, stored");
}

# ---------------------------------------------------------------------------------------------- read-only
# A state directory the helper cannot write (0500: SQLite cannot create whatsapp.db-wal after a clean stop): the
# helper owns the sessions but has no store. It says why, answers commands 507 at once, retries, and loads the
# sessions once the directory is writable again.
$t->stop(allow => qr/./);
# The last close checkpoints the -wal into the database and removes it; that needs room for the database to grow
# (the schema of migrations 1-3 outgrew a 512k tmpfs: the -wal stayed and SQLite opened read-only files happily).
ok(!-e "$sd/whatsapp.db-wal", "a clean stop with room again removes whatsapp.db-wal");
chmod 0500, $sd;
$t->start(wait_helper => 0);
{
    my $h = wait_until(sub { my $h = $t->health; ($h->{helper}{reason} // '') =~ /store/ ? $h : undef }, 10);
    ok($h, 'read-only state dir: /api/health says why (the store)') or diag explain $t->health;
    diag "helper.reason: " . ($h->{helper}{reason} // '');
    is($h->{status}, 'degraded', 'health status degraded');
    for my $c (['/api/start-session', 'ro1'], ['/api/logout', 'pre5'], ['/api/clear-session', 'pre6']) {
        my $t0 = time;
        my ($st, $code) = cmd(@$c);
        my $el = time - $t0;
        is("$st $code", '507 storage_error', "read-only: $c->[0] $c->[1]: 507 storage_error");
        cmp_ok($el, '<', 1.5, sprintf('answered at once (%.3f s; target 0.5 s, allowed 1.5 s)', $el));
    }
    my $s = $t->status('pre5');
    isnt($s->{status} // '', 'reconnecting', 'no session runs without its store');
    sleep 2;
    my @lines = grep { /state store .* cannot be used/ } split /\n/, $t->error_log;
    is(scalar @lines, 1, 'the log says why once, not per retry') or diag join "\n", @lines;
    chmod 0700, $sd;
    my $t0 = time;
    ok(wait_until(sub { !defined $t->health->{helper}{reason} }, 15), 'writable again: the store opens');
    my $el = time - $t0;
    cmp_ok($el, '<', 15, sprintf('within %.1f s (retry cap 5 s, allowed 15 s)', $el));
    ok(wait_until(sub { ($t->status('pre5')->{status} // '') eq 'reconnecting' }, 10), 'the stored sessions run again');
    my ($st, $code) = cmd('/api/start-session', 'ro1');
    ok($st == 200 && row('ro1'), "start-session: $st $code, stored");
}

# A read-only file system at start: the helper cannot open owner.lock (EROFS). It stays alive, retries, says
# why, commands answer 503 at once, and it takes over once the directory is writable again.
$t->stop(allow => qr/./);
system('mount', '-o', 'remount,ro', $sd) == 0 or die 'remount ro failed';
$t->start(wait_helper => 0);
{
    my $h = wait_until(sub { my $h = $t->health; ($h->{helper}{reason} // '') =~ /owner\.lock/ ? $h : undef }, 10);
    ok($h, 'EROFS: /api/health says why no helper owns the sessions') or diag explain $t->health;
    like($h->{helper}{reason} // '', qr/Read-only file system/, 'read-only file system');
    isnt($h->{helper}{state}, 'active', 'no helper is active');
    for my $c (['/api/start-session', 'ro2'], ['/api/logout', 'pre5'], ['/api/clear-session', 'pre6']) {
        my $t0 = time;
        my ($st, $code) = cmd(@$c);
        my $el = time - $t0;
        is("$st $code", '503 helper_unavailable', "EROFS: $c->[0] $c->[1]: 503 helper_unavailable");
        cmp_ok($el, '<', 1.5, sprintf('answered at once (%.3f s; target 0.5 s, allowed 1.5 s)', $el));
    }
    my (undef, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'ro2' });
    like($j->{error} // '', qr/owner\.lock/, 'the 503 says why');
    sleep 3;
    is(scalar(my @h = $t->helper_pids), 1, 'the helper process is alive, retrying');
    my @lines = grep { /owner\.lock/ } split /\n/, $t->error_log;
    is(scalar @lines, 1, 'logged once, not per retry') or diag join "\n", @lines;
    system('mount', '-o', 'remount,rw', $sd) == 0 or die 'remount rw failed';
    my $t0 = time;
    ok(wait_until(sub { ($t->health->{helper}{state} // '') eq 'active' }, 15), 'writable again: the helper owns the sessions');
    my $el = time - $t0;
    cmp_ok($el, '<', 15, sprintf('within %.1f s (retry cap 5 s, allowed 15 s)', $el));
    is($t->health->{helper}{reason}, undef, 'no reason any more');
    my ($st, $code) = cmd('/api/start-session', 'ro2');
    ok($st == 200 && row('ro2'), "start-session: $st $code, stored");
}

# ELOOP: owner.lock replaced by a symlink, then the helper crashes. The status records of the dead helper do not
# go on showing its states.
ok(wait_until(sub { ($t->status('ro1')->{status} // '') eq 'reconnecting' }, 10), 'ro1 runs (reconnecting)');
{
    my ($hp) = $t->helper_pids;
    unlink "$sd/owner.lock";
    symlink('/dev/null', "$sd/owner.lock") or die "symlink: $!";
    kill 'KILL', $hp;
    my $h = wait_until(sub { my $h = $t->health; ($h->{helper}{reason} // '') =~ /owner\.lock/ ? $h : undef }, 10);
    like($h->{helper}{reason} // '', qr/symbolic link|Too many levels/, 'owner.lock a symlink: /api/health says so')
        or diag explain $t->health;
    my $s = $t->status('ro1');
    is($s->{status}, 'disconnected', "the dead helper's state is not shown (ro1: $s->{status})");
    like($s->{last_error} // '', qr/no helper owns the sessions/, 'last_error says why') or diag explain $s;
    is($s->{next_retry_in}, undef, 'no retry announced');
    unlink "$sd/owner.lock";
    ok(wait_until(sub { ($t->health->{helper}{state} // '') eq 'active' }, 15), 'symlink gone: the helper owns the sessions');
    ok(-f "$sd/owner.lock" && !-l "$sd/owner.lock", 'owner.lock is a regular file again');
}

$t->stop(allow => qr/owner\.lock|store|$WaTest::KILLED/);
system('umount', $sd) == 0 and $mounted = 0;
done_testing;

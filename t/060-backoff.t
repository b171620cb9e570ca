# Reconnect backoff against a closed port with whatsapp_reconnect_backoff 1s 4s: retries come after
# about 1, 2, 4, 4 s (exponential, capped, ±20% jitter), and next_retry_in is shown while reconnecting.
use strict;
use warnings;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $t = WaTest->new;
my $closed = free_port();
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 1s 4s;");
$t->start;

my $t0 = time;
my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'b1' });
is($st, 200, 'start-session: 200');

my $want = 5;    # retry_count 1..5: four gaps
my (%seen, @samples);
my $deadline = time + 20;
while (time < $deadline) {
    my $now = time;
    my $s = $t->status('b1');
    push @samples, $s;
    my $rc = $s->{retry_count} // 0;
    $seen{$rc} //= $now if $rc;
    last if $rc >= $want;
    sleep 0.05;
}
ok($seen{$_}, "retry_count reached $_") for 1 .. $want;
my $first = ($seen{1} // 99) - $t0;
ok($first < 1.5, sprintf('first failure reported at once (%.2f s; allowed up to 1.5 s)', $first));

my @nominal = (1, 2, 4, 4);    # min * 2^(n-1), capped at max
diag 'retry gaps: ' . join(' ', map { my ($a, $b) = ($seen{ $_ + 1 }, $seen{ $_ + 2 });
    defined $a && defined $b ? sprintf('%.2f s (nominal %d)', $b - $a, $nominal[$_]) : 'missing' } 0 .. $#nominal);
for my $i (0 .. $#nominal) {
    my ($a, $b) = ($seen{ $i + 1 }, $seen{ $i + 2 });
    my $gap = defined $a && defined $b ? $b - $a : -1;
    # ±20 % jitter plus 5 % and 0.3 s for sampling; late timers on a loaded machine get three times that slack
    my ($lo, $hi) = ($nominal[$i] * 0.75 - 0.3, $nominal[$i] * 1.25 + 0.9);
    ok($gap >= $lo && $gap <= $hi,
        sprintf('gap %d→%d is %.2f s, nominal %d s (allowed %.2f..%.2f)', $i + 1, $i + 2, $gap, $nominal[$i], $lo, $hi));
}

my @rec = grep { ($_->{retry_count} // 0) >= 1 } @samples;
ok(@rec > 33, scalar(@rec) . ' samples while retrying (about 200 when idle; at least a third of that)');
is(scalar(grep { ($_->{status} // '') ne 'reconnecting' } @rec), 0, 'status stays reconnecting between retries');
my @with = grep { defined $_->{next_retry_in} } @rec;
ok(@with >= 0.95 * @rec, sprintf('next_retry_in present while reconnecting (%d of %d samples)', scalar @with, scalar @rec));
is(scalar(grep { $_->{next_retry_in} !~ /^\d+$/ || $_->{next_retry_in} > 5 } @with), 0,
    'next_retry_in is a whole number of seconds, at most 5 (4 s + 20%, rounded up)');
ok((grep { $_->{next_retry_in} >= 3 } @with), 'next_retry_in reaches the capped 4 s range');
is(scalar(grep { ($_->{last_error} // '') !~ /connect\(\) to 127\.0\.0\.1:$closed failed: Connection refused/ } @rec), 0,
    'last_error always says the connection was refused');
my $s = $t->status('b1');
ok(!$s->{connected}, 'not connected');

# start-session while backing off: retried at once, the count keeps growing
my $rc = $s->{retry_count};
($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'b1' });
is($st, 200, 'start-session while backing off: 200');
my $n = wait_until(sub { my $x = $t->status('b1'); $x->{retry_count} > $rc ? $x : undef }, 1, 0.02);
ok($n, 'an operator start-session retries at once instead of waiting out the backoff');
is($n->{retry_count}, $rc + 1, 'retry_count keeps counting') if $n;

# logout / clear-session while a retry is pending (the first one, due 0.8-1.2 s after the failure): the pending
# retry must not bring the organization back. Sampled for 2.5 s, past that retry and the one after it.
my $sd = $t->{state_dir};
for my $case ([ 'pend-lo', '/api/logout', 'logged_out' ], [ 'pend-cl', '/api/clear-session', 'disconnected' ]) {
    my ($org, $path, $want) = @$case;
    my $attempts = sub { my @l = $t->error_log =~ /whatsapp org=\Q$org\E: connect\(\) to /g; scalar @l };
    $t->api(POST => '/api/start-session', body => { organization_id => $org });
    ok(wait_until(sub { ($t->status($org)->{retry_count} // 0) == 1 }, 3, 0.02), "$org failed once, a retry is pending");
    ok($t->org_row($org), "$org has stored state");
    my $before = $attempts->();
    my $t0 = time;
    ($st, undef, $j) = $t->api(POST => $path, body => { organization_id => $org });
    is("$st " . ($j->{status} // ''), "200 $want", "$path while reconnecting: $want");
    my (@bad, $n);
    while (time < $t0 + 2.5) {
        my $s = $t->status($org);
        $n++;
        push @bad, sprintf('%.2f s: %s retry_count %s next_retry_in %s', time - $t0, $s->{status} // '?',
            $s->{retry_count} // '?', $s->{next_retry_in} // 'null')
            unless ($s->{status} // '') eq $want && ($s->{retry_count} // -1) == 0 && !defined $s->{next_retry_in};
        my $row = $t->org_row($org);
        push @bad, sprintf('%.2f s: wanted again in the store', time - $t0) if $row && $row->{wanted};
        sleep 0.05;
    }
    is(scalar @bad, 0, "$org stays $want, retry_count 0, no state, for 2.5 s ($n samples)") or diag join "\n", @bad[0 .. 4];
    is($attempts->() - $before, 0, "$org: no connection attempt after $path");
}

$t->stop;

# ---------------------------------------------------------------------------------------------- jitter varies
# With whatsapp_reconnect_backoff 30s 30s every first retry is nominally 30 s away; the ±20 % jitter spreads
# them over 24-36 s. 20 sessions failing within a second: next_retry_in must take many values (without
# jitter, at most two: the seconds the failures fell in).
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 30s 30s;");
    $u->start;
    $u->api(POST => '/api/start-session', body => { organization_id => "j$_" }) for 1 .. 20;
    my @items;
    wait_until(sub { @items = grep { defined $_->{next_retry_in} } $u->connections; @items == 20 }, 5);
    is(scalar @items, 20, '20 sessions wait for their first retry');
    my %seen;
    $seen{ $_->{next_retry_in} }++ for @items;
    my @values = sort { $a <=> $b } keys %seen;
    diag "next_retry_in of the 20 sessions: " . join(' ', map { "$_ s x$seen{$_}" } @values);
    ok(@values >= 6, scalar(@values) . ' different retry delays among 20 sessions (at least 6)');
    is(scalar(grep { $_ < 22 || $_ > 37 } @values), 0, 'all within 30 s ± 20 % (and the rounding to whole seconds)');
    $u->stop;
}
done_testing;

# 200 messages to 20 contacts at concurrency 16: each arrives exactly once, and each is read in the end although
use utf8;
# the contacts acknowledge them several at a time (the simulator's --receipt-lists: one receipt, the first id in
# `id`, the others in <list>, as whatsmeow writes them). An idempotent request whose ack never came survives a
# kill -9 of the helper: the pending message goes out again with the same id, and the retried request returns
# that id without sending twice.
use strict;
use warnings;
use Test::More;
use IO::Select;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until json_enc);

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir}, args => ['--receipt-lists']);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_send_rate 6000r/m burst=1000;\n    whatsapp_send_timeout 3s;");
$t->start;
my $ACCOUNT = '573001112244';
$t->api(POST => '/api/start-session', body => { organization_id => 'o1' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o1'); $q && $q->{success} ? $q : undef }, 10);
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
ok(wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10), 'linked');
wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);

my @contacts = map { 573008880000 + $_ } 1 .. 20;
$sim->control(POST => '/contacts', body => { phone => "$_", devices => 1 }) for @contacts;

sub post_req {
    my ($body, %h) = @_;
    my $b = json_enc({ organization_id => 'o1', %$body });
    my $extra = join '', map { "$_: $h{$_}\r\n" } keys %h;
    return "POST /api/send-message HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n$extra"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
}
sub burst {
    my (@reqs) = @_;
    my (%conn, %out);
    for my $i (0 .. $#reqs) {
        my $s = WaTest::http_raw($t->{port}, $reqs[$i], no_read => 1) or do { $out{$i} = ''; next };
        $conn{ fileno $s } = [ $i, $s, '' ];
    }
    my $end = time + 30;
    while (%conn && time < $end) {
        for my $s (IO::Select->new(map { $_->[1] } values %conn)->can_read(0.5)) {
            my $c = $conn{ fileno $s };
            my $n = sysread($s, my $buf, 65536);
            if ($n) { $c->[2] .= $buf; next }
            $out{ $c->[0] } = $c->[2];
            delete $conn{ fileno $s };
            close $s;
        }
    }
    return map { $out{$_} // '' } 0 .. $#reqs;
}

# ---------------------------------------------------------------------------------------------- 200 at concurrency 16
my @jobs = map { { to => $contacts[$_ % 20], text => "recordatorio $_" } } 0 .. 199;
my (%ids, $ok, @lat);
my $t0 = time;
while (my @batch = splice(@jobs, 0, 16)) {
    my $b0 = time;
    my @resp = burst(map { post_req({ phone => "$_->{to}", message => $_->{text} }) } @batch);
    push @lat, time - $b0;
    for my $i (0 .. $#batch) {
        my ($st, undef, $j) = WaTest::parse_response($resp[$i]);
        next unless ($st // 0) == 200 && $j->{message_id};
        $ok++;
        $ids{ $j->{message_id} } = $batch[$i];
    }
}
my $el = time - $t0;
is($ok, 200, sprintf('200 sends at concurrency 16: all 200 acknowledged (%.2f s, %.0f messages/s)', $el, 200 / $el));
is(scalar keys %ids, 200, '200 distinct message ids');
my ($seen, $dup, $wrong) = (0, 0, 0);
for my $c (@contacts) {
    my (undef, undef, $in) = $sim->control(GET => "/contacts/$c/inbox");
    my %n;
    $n{ $_->{id} }++ for @$in;
    for my $id (keys %n) {
        $dup++ if $n{$id} > 1;
        my $want = $ids{$id};
        $wrong++ if !$want || $want->{to} != $c;
        $seen++;
    }
    my %texts;
    $texts{ $_->{text} }++ for @$in;
    $dup += grep { $_ > 1 } values %texts;
}
is($seen, 200, 'each of the 200 arrived at its contact');
is($dup, 0, 'none twice');
is($wrong, 0, 'none at the wrong contact');
{
    my %status;
    my $all = wait_until(sub {
        %status = ();
        my $cursor;
        for (1 .. 5) {
            my (undef, undef, $p) = $t->api(GET => '/api/messages/o1?direction=out&limit=1000' . ($cursor ? "&cursor=$cursor" : ''));
            $status{ $_->{message_id} // $_->{id} // '' } = $_->{status} for @{ $p->{items} || [] };
            last unless $cursor = $p->{next_cursor};
        }
        (grep { ($status{$_} // '') eq 'read' } keys %ids) == 200;
    }, 10);
    my %count;
    $count{ $status{$_} // 'missing' }++ for keys %ids;
    ok($all, 'all 200 read, from receipts that carried several ids (' . join(', ', map { "$_ $count{$_}" } sort keys %count) . ')');
    my $st = $sim->stats;
    cmp_ok($st->{receipt_lists_sent}, '>', 0, "receipts with a <list>: $st->{receipt_lists_sent}");
    cmp_ok($st->{receipts_sent}, '<', 400, "receipt stanzas for 200 messages delivered and read: $st->{receipts_sent}");
}

# ---------------------------------------------------------------------------------------------- no Nagle delay
# The helper acks each receipt with a small frame the server never answers; a send right after it must not wait
# for the server's delayed ACK of that frame (up to 40 ms with Nagle's algorithm, i.e. without TCP_NODELAY).
{
    my @ms;
    for my $i (1 .. 8) {
        my (undef, undef, $a) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => "$contacts[1]", message => "antes $i" });
        wait_until(sub { my (undef, undef, $x) = $t->api(GET => "/api/messages/o1/$a->{message_id}"); ($x->{status} // '') eq 'read' }, 5, 0.005);
        my $t1 = time;
        my ($st) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => "$contacts[2]", message => "después $i" });
        push @ms, 1000 * (time - $t1) if ($st // 0) == 200;
    }
    @ms = sort { $a <=> $b } @ms;
    my $median = @ms ? $ms[@ms / 2] : 1e9;
    cmp_ok($median, '<', 20, sprintf('a send right after a receipt\'s ack: median %.1f ms, max %.1f ms over %d (limit 20 ms; 40+ with Nagle)',
        $median, $ms[-1] // 0, scalar @ms));
}

# ---------------------------------------------------------------------------------------------- kill -9 before the ack
{
    my $c = $contacts[0];
    my ($fs) = $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'no_ack' });
    is($fs, 200, 'the server will not ack the next message');
    my ($st, undef, $j) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => "$c", message => 'única vez' },
        headers => { 'Idempotency-Key' => 'kill-1' }, timeout => 10);
    is($st, 504, 'no ack within whatsapp_send_timeout: 504');
    like($j->{message_id} // '', qr/^3EB0/, 'the 504 still carries the message id');
    my $id = $j->{message_id};
    my (undef, undef, $m) = $t->api(GET => "/api/messages/o1/$id");
    is($m->{status}, 'pending', 'the message is pending');
    my ($hp) = $t->helper_pids;
    kill 'KILL', $hp;
    ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 5), 'helper killed and respawned');
    ok(wait_until(sub { my (undef, undef, $x) = $t->api(GET => "/api/messages/o1/$id"); ($x->{status} // '') =~ /^(sent|delivered|read)$/ }, 15),
        'after the restart the pending message went out again and was acknowledged');
    ($st, undef, $j) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => "$c", message => 'única vez' },
        headers => { 'Idempotency-Key' => 'kill-1' }, timeout => 10);
    is($st, 200, 'the retried idempotent request: 200');
    is($j->{message_id}, $id, 'with the same message id');
    sleep 0.5;
    my (undef, undef, $in) = $sim->control(GET => "/contacts/$c/inbox");
    is(scalar(grep { ($_->{text} // '') eq 'única vez' } @$in), 1, 'the contact has it exactly once');
}

$t->stop(allow => $WaTest::KILLED);
done_testing;

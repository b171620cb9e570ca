# kill -9 of the helper during a burst of 1,000 state changes: every change that was answered as done is in the
# store afterwards (answers wait for the pass's commit).
use strict;
use warnings;
use Test::More;
use IO::Select;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until json_enc free_port);

my $N = 1000;
my $t = WaTest->new;
my $closed = free_port();
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_max_sessions 2000;\n    whatsapp_reconnect_backoff 60s 60s;\n"
    . "    whatsapp_queue_size 4096;\n    whatsapp_store_sync full;", zone => 'whatsapp_zone wa 16m;', connections => 4096);
$t->start;

# Fire the requests, kill the helper when half of them are sent (it is then taking, committing and answering
# them), fire the rest, then collect what was answered.
my (%conn, %answer);
my ($hp) = $t->helper_pids;
my ($killed, $sent) = (0, 0);
for my $i (1 .. $N) {
    if ($i == $N / 2) { $killed = kill 'KILL', $hp }
    my $b = json_enc({ organization_id => "d$i" });
    my $req = "POST /api/start-session HTTP/1.1\r\nHost: x\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
    my $s = WaTest::http_raw($t->{port}, $req, no_read => 1) or next;
    $sent++;
    $conn{ fileno $s } = [ "d$i", $s, '' ];
}
my $end = time + 30;
while (%conn && time < $end) {
    for my $s (IO::Select->new(map { $_->[1] } values %conn)->can_read(0.2)) {
        my $c = $conn{ fileno $s };
        my $n = sysread($s, my $buf, 65536);
        if ($n) { $c->[2] .= $buf; next }
        $answer{ $c->[0] } = $c->[2];
        delete $conn{ fileno $s };
        close $s;
    }
}
ok($killed, 'the helper was killed in the middle of the burst');
my @done = grep { $answer{$_} =~ /^HTTP\/1\.1 200/ } keys %answer;
my @other = grep { $answer{$_} !~ /^HTTP\/1\.1 200/ } keys %answer;
diag sprintf('%d answered 200 before the kill or after the respawn, %d answered otherwise (503/504 while no helper)', scalar @done, scalar @other);
ok(@done >= 1, scalar(@done) . ' changes answered as done');
my @odd = grep { $answer{$_} !~ /^HTTP\/1\.1 (200|503|504) / } keys %answer;
is(scalar(keys %answer) . ' answers, ' . scalar(@odd) . ' other than 200/503/504', "$sent answers, 0 other than 200/503/504",
    'every request was answered: done, or 503/504 while no helper owned the sessions')
    or diag join "\n", map { "$_: " . substr($answer{$_}, 0, 120) } @odd[0 .. ($#odd < 4 ? $#odd : 4)];
ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 5), 'a new helper');
sleep 1;
my %wanted = map { $_->{org} => 1 } @{ $t->db("SELECT org FROM orgs WHERE wanted = 1 AND cleared_at IS NULL") };
my @lost = grep { !$wanted{$_} } @done;
is(scalar @lost, 0, 'none of them was lost') or diag "lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]";
# The kill may land while the helper holds the zone's mutex (nginx then force-unlocks it and says so): the
# zone goes on serving, and the new helper resumes every answered organization (25 every 50 ms: 2 s for 1,000).
my @sample = @done[0 .. ($#done < 49 ? $#done : 49)];
my @unseen;
wait_until(sub { @unseen = grep { ($t->status($_)->{status} // 'disconnected') eq 'disconnected' } @sample; !@unseen }, 10);
is(scalar @unseen, 0, 'the zone still serves: /api/status shows ' . scalar(@sample) . ' of them resumed')
    or diag "not resumed: @unseen[0 .. ($#unseen < 9 ? $#unseen : 9)]: " . json_enc($t->status($unseen[0]));
$t->stop(allow => $WaTest::KILLED);
done_testing;

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

# Fire all requests, kill the helper once 300 answers are in, then collect what was answered.
my (%conn, %answer);
for my $i (1 .. $N) {
    my $b = json_enc({ organization_id => "d$i" });
    my $req = "POST /api/start-session HTTP/1.1\r\nHost: x\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
    my $s = WaTest::http_raw($t->{port}, $req, no_read => 1) or next;
    $conn{ fileno $s } = [ "d$i", $s, '' ];
}
my ($hp) = $t->helper_pids;
my $killed = 0;
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
    if (!$killed && (grep { / 200 OK/ } values %answer) >= 1) { kill 'KILL', $hp; $killed = 1 }
}
ok($killed, 'the helper was killed in the middle of the burst');
my @done = grep { $answer{$_} =~ /^HTTP\/1\.1 200/ } keys %answer;
my @other = grep { $answer{$_} !~ /^HTTP\/1\.1 200/ } keys %answer;
diag sprintf('%d answered 200 before the kill or after the respawn, %d answered otherwise (503/504 while no helper)', scalar @done, scalar @other);
ok(@done >= 1, scalar(@done) . ' changes answered as done');
ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $hp }, 5), 'a new helper');
sleep 1;
my %wanted = map { $_->{org} => 1 } @{ $t->db("SELECT org FROM orgs WHERE wanted = 1 AND cleared_at IS NULL") };
my @lost = grep { !$wanted{$_} } @done;
is(scalar @lost, 0, 'none of them was lost') or diag "lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]";
$t->stop(allow => qr/worker process \d+ exited on signal 9/);
done_testing;

# The helper process: one per master, respawned at once after kill -9, commands time out (504) while it
# cannot answer, requests whose client left leave nothing queued, and no helper at all gives 503.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use lib 't/lib';
use WaTest qw(wait_until free_port alive proc_list);

my $t = WaTest->new;
my $closed = free_port();
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_command_timeout 1s;\n"
    . "    whatsapp_reconnect_backoff 1s 2s;");
$t->start;

# ---------------------------------------------------------------------------------------------- one helper
my @h = $t->helper_pids;
is(scalar @h, 1, 'exactly one "whatsapp helper process"');
my ($p) = grep { $_->{pid} == ($h[0] // 0) } proc_list();
is($p->{cmd}, 'nginx: whatsapp helper process', 'helper process title');
is(scalar $t->worker_pids, 2, 'two HTTP workers besides the helper');
is($t->health->{helper}{pid}, $h[0], '/api/health names the helper pid');
my $gen0 = $t->health->{helper}{generation};
is($gen0, 1, 'first generation is 1');

my ($st, $hd, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'h1' });
is($st, 200, 'start h1');
ok(wait_until(sub { ($t->status('h1')->{status} // '') eq 'reconnecting' }, 5), 'h1 reconnecting');

# ---------------------------------------------------------------------------------------------- kill -9
{
    my $old = $h[0];
    my $t0 = time;
    kill 'KILL', $old;
    my $new = wait_until(sub { my ($n) = grep { $_ != $old } $t->helper_pids; $n }, 5, 0.01);
    my $el = time - $t0;
    ok($new, 'a new helper appears after kill -9');
    diag sprintf('new helper %.3f s after kill -9', $el);
    cmp_ok($el, '<', 3, sprintf('new helper within 3 s, three times the 1 s target (%.3f s)', $el));
    ok(!alive($old), 'the killed helper is gone');
    my $hl = wait_until(sub { my $x = $t->health; ($x->{helper}{generation} // 0) > $gen0 ? $x : undef }, 3);
    ok($hl, '/api/health generation increased');
    is($hl->{helper}{generation}, $gen0 + 1, 'generation is the next one');
    is($hl->{helper}{state}, 'active', 'the new helper is active');
    is($hl->{helper}{pid}, $new, '/api/health names the new helper');
    is(scalar $t->helper_pids, 1, 'still exactly one helper');
    is(scalar $t->worker_pids, 2, 'HTTP workers untouched');
    # the wanted session comes back after the crash (with a short grace delay)
    my $s = wait_until(sub { my $s = $t->status('h1'); ($s->{status} // '') =~ /^(connecting|reconnecting)$/ && $s->{retry_count} ? $s : undef }, 5);
    ok($s, 'h1 is running again under the new helper');
    like($t->error_log, qr/whatsapp helper \d+ owns the sessions \(previous owner died\)/, 'error.log: previous owner died');
    @h = ($new);
}

# ---------------------------------------------------------------------------------------------- kill -9 and a command at once
{
    my $old = $h[0];
    kill 'KILL', $old;
    my ($st, $hd, $j, $body) = $t->api(POST => '/api/start-session', body => { organization_id => 'race1' });
    if ($st == 503) {
        is($j->{code}, 'helper_unavailable', 'command during the respawn: 503 helper_unavailable');
        like($hd->{'retry-after'} // '', qr/^\d+$/, '503 carries Retry-After');
    } else {
        is($st, 200, 'command during the respawn: 200 (queued for the new helper)') or diag $body;
        ok($j->{success}, 'success true');
    }
    ok(wait_until(sub { my $x = $t->health; ($x->{helper}{state} // '') eq 'active' && ($x->{helper}{pid} // 0) != $old }, 5),
        'a new helper is active again');
    ok(wait_until(sub { @h = $t->helper_pids; @h == 1 && $h[0] != $old }, 2), 'one helper process, a new one');
    ($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'race1' });
    is($st, 200, 'start-session works again');
}

# ---------------------------------------------------------------------------------------------- a moment with no helper
# The helper let go cleanly and its successor is not up yet (as on a reload when the old helper quits before
# the new one has said it waits): a command is queued for the successor, not refused with 503. The master is
# stopped so that the moment lasts; once it runs again it starts the successor, which answers.
{
    my ($hp) = $t->helper_pids;
    kill 'STOP', $t->master_pid;
    kill 'QUIT', $hp;
    ok(wait_until(sub { ($t->health->{helper}{state} // '') eq 'none' }, 3), 'the helper let go; no successor yet');
    my $b = '{"organization_id":"handover1"}';
    my $s = WaTest::http_raw($t->{port}, "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b", no_read => 1);
    sleep 0.5;
    kill 'CONT', $t->master_pid;
    my $resp = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(5)) { my $n = sysread($s, my $buf, 4096); last unless $n; $resp .= $buf }
    my ($st, undef, $j, $body) = WaTest::parse_response($resp);
    is("$st " . ($j->{status} // $j->{code} // ''), '200 connecting', 'the command waited for the successor and was answered') or diag $body;
    ok(wait_until(sub { my @n = $t->helper_pids; @n == 1 && $n[0] != $hp }, 3), 'one helper, the successor');
    @h = $t->helper_pids;
}

# ---------------------------------------------------------------------------------------------- SIGSTOP: 504, early disconnects
{
    my $hp = $h[0];
    my $gen = $t->health->{helper}{generation};
    kill 'STOP', $hp;
    my $t0 = time;
    my ($st, $hd, $j, $body) = $t->api(POST => '/api/start-session', body => { organization_id => 'stopped1' });
    my $el = time - $t0;
    is($st, 504, 'helper stopped: start-session answers 504') or diag $body;
    is($j->{code}, 'timeout', 'code timeout');
    ok(defined $j->{success} && !$j->{success}, 'success false');
    diag sprintf('504 after %.2f s', $el);
    ok($el >= 0.9 && $el < 3, sprintf('after whatsapp_command_timeout 1s (%.2f s; allowed up to 3 s)', $el));

    ($st, undef, $j) = $t->api(GET => '/api/status/h1');
    is($st, 200, 'reads do not need the helper (status while stopped)');

    # one client that waits, three that send a whole request and hang up at once
    my $req = sub {
        my ($org) = @_;
        my $b = qq({"organization_id":"$org"});
        return "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\nConnection: close\r\n"
            . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
    };
    my $waiter = WaTest::http_raw($t->{port}, $req->('waiter1'), no_read => 1);
    ok($waiter, 'a waiting client is connected');
    for my $i (1 .. 3) {
        my $s = WaTest::http_raw($t->{port}, $req->("gone$i"), no_read => 1);
        close $s if $s;
    }
    # (queue_length while commands wait is checked below, with a command timeout that no load can outlast)
    ok(wait_until(sub { ($t->health->{shared_memory}{queue_length} // -1) == 0 }, 4),
        'queue_length returns to 0 (timed-out commands are released; hang-ups alone: see below)')
        or diag explain $t->health;
    my $sel = IO::Select->new($waiter);
    my $resp = '';
    while ($sel->can_read(3)) { my $n = sysread($waiter, my $buf, 4096); last unless $n; $resp .= $buf }
    my ($wst, undef, $wj) = WaTest::parse_response($resp);
    is($wst, 504, 'the waiting client got 504');
    is($wj->{code}, 'timeout', 'code timeout');

    kill 'CONT', $hp;
    sleep 1.5;    # the helper's 1 s sweep runs at least once
    my $hl = $t->health;
    is($hl->{shared_memory}{queue_length}, 0, 'after SIGCONT queue_length is still 0');
    is($hl->{helper}{pid}, $hp, 'the same helper is still active');
    is($hl->{helper}{generation}, $gen, 'generation unchanged');
    my %ids = map { $_->{organization_id} => 1 } $t->connections;
    ok(!$ids{"gone$_"}, "command of the client that hung up (gone$_) was not run") for 1 .. 3;
    ok(!$ids{stopped1} && !$ids{waiter1}, 'timed-out commands were not run later');
    ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'after1' });
    is($st, 200, 'start-session after SIGCONT: 200');
    is($j->{status}, 'connecting', 'status connecting');
    is($t->health->{shared_memory}{queue_length}, 0, 'queue empty');
}

$t->stop(allow => $WaTest::KILLED);

# ---------------------------------------------------------------------------------------------- hang-ups free commands
# With a command timeout far away (60 s), only the hang-up handler can release the commands of clients that
# left: the queue must empty within 0.5 s of the hang-ups while the helper is still stopped, and those
# commands must never run.
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_command_timeout 60s;");
    $u->start;
    my ($hp) = $u->helper_pids;
    kill 'STOP', $hp;
    my @gone;
    for my $i (1 .. 3) {
        my $b = qq({"organization_id":"hung$i"});
        push @gone, WaTest::http_raw($u->{port}, "POST /api/start-session HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $WaTest::KEY\r\n"
            . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b", no_read => 1);
    }
    ok(wait_until(sub { ($u->health->{shared_memory}{queue_length} // 0) == 3 }, 3, 0.02),
        'three commands queued while the helper is stopped') or diag explain $u->health;
    my $t0 = time;
    close $_ for @gone;
    my $drained = wait_until(sub { ($u->health->{shared_memory}{queue_length} // -1) == 0 }, 3, 0.01);
    my $el = time - $t0;
    diag sprintf('queue emptied %.3f s after the clients hung up (helper still stopped)', $el);
    ok($drained && $el <= 0.5, sprintf('the hang-ups released their commands within 0.5 s (%.3f s)', $el))
        or diag explain $u->health;
    kill 'CONT', $hp;
    my ($st) = $u->api(POST => '/api/start-session', body => { organization_id => 'after-hangup' });
    is($st, 200, 'the helper answers again after SIGCONT');
    my %ids = map { $_->{organization_id} => 1 } $u->connections;
    ok(!$ids{"hung$_"}, "the command of the client that hung up (hung$_) never ran") for 1 .. 3;
    is($u->health->{shared_memory}{queue_length}, 0, 'queue empty');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- reload while the helper hangs
# The owner is stopped when the reload comes: the successor waits (standby), a command queued meanwhile is
# answered once the old owner wakes up, and the server never sees a session twice.
{
    my $ctr = WaTest::WsCounter->start($t->{dir});
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server $ctr->{url};\n    whatsapp_handshake_timeout 60s;\n    whatsapp_command_timeout 5s;");
    $u->start;
    $u->api(POST => '/api/start-session', body => { organization_id => "w$_" }) for 1 .. 3;
    ok(wait_until(sub { $ctr->stats->{open} == 3 }, 5), 'three WebSockets');
    my ($hp) = $u->helper_pids;
    my $gen = $u->health->{helper}{generation};
    kill 'STOP', $hp;
    kill 'HUP', $u->master_pid;
    ok(wait_until(sub { grep { $_ != $hp } $u->helper_pids }, 3), 'the successor is up (waiting)');
    sleep 0.5;
    my $h = $u->health;
    is($h->{helper}{pid}, $hp, 'the stopped owner is still the active helper: the successor waits for the lock');
    is($h->{helper}{generation}, $gen, 'no new generation yet');
    is($ctr->stats->{total}, 3, 'the successor opened nothing');
    my $waker = WaTest::background(sub { sleep 1; kill 'CONT', $hp });
    my $t0 = time;
    my ($st, undef, $j) = $u->api(POST => '/api/start-session', body => { organization_id => 'w4' });
    my $el = time - $t0;
    is($st, 200, 'a command queued during the hand-over is answered') or diag explain $j;
    diag sprintf('queued command answered %.2f s after it was sent (the old owner slept 1 s)', $el);
    ok($el < 3, sprintf('once the old owner woke up (%.2f s; allowed up to 3 s)', $el));
    ok(wait_until(sub { my $x = $u->health; $x->{helper}{generation} > $gen && ($x->{helper}{state} // '') eq 'active'
        && !alive($hp) && $ctr->stats->{open} == 4 }, 5), 'the successor took over all four sessions')
        or diag explain [ $u->health, $ctr->stats ];
    is($ctr->stats->{max_open}, 4, 'never more than four WebSockets at once');
    $u->stop;
}

# ---------------------------------------------------------------------------------------------- no helper owns the sessions: 503
{
    my $u = WaTest->new;
    $u->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_command_timeout 1s;");
    mkdir $u->{state_dir};
    mkdir "$u->{state_dir}/owner.lock";    # the helper cannot open its lock file: it retries, owning nothing
    chmod 0777, $u->{state_dir};
    $u->start(wait_helper => 0);
    ok(wait_until(sub { ($u->health->{helper}{reason} // '') =~ /owner\.lock: Is a directory/ }, 5),
        '/api/health says why no helper owns the sessions') or diag explain $u->health;
    is(scalar(my @hp = $u->helper_pids), 1, 'the helper process stays alive (retrying), not exited for good');
    my ($st, $hd, $j, $body) = $u->api(POST => '/api/start-session', body => { organization_id => 'x1' });
    is($st, 503, 'no helper: start-session 503') or diag $body;
    is($j->{code}, 'helper_unavailable', 'code helper_unavailable');
    is($hd->{'retry-after'}, '1', 'Retry-After: 1');
    ($st, $hd, $j) = $u->api(POST => '/api/send-message', body => { organization_id => 'x1', phone => '3001234567', message => 'x' });
    is($st, 503, 'no helper: send-message 503');
    is($j->{code}, 'helper_unavailable', 'code helper_unavailable');
    ($st, undef, $j) = $u->api(GET => '/api/health');
    is($st, 200, '/api/health still answers');
    is($j->{status}, 'degraded', 'health status degraded');
    isnt($j->{helper}{state}, 'active', 'helper state is not active');
    ($st, undef, $j) = $u->api(GET => '/api/status/x1');
    is($st, 200, 'status still answers');
    is($j->{status}, 'disconnected', 'x1 disconnected');
    $u->stop(allow => qr/whatsapp helper: cannot open .*owner\.lock: Is a directory; no helper owns the sessions/);
}

done_testing;

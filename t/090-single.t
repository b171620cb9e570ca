# master_process off (debugging mode): one process serves HTTP and owns the sessions itself.
# (nginx itself stops answering after a HUP in this mode, with or without the module: no reload here.)
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until proc_list);

my $t = WaTest->new;
my $d = $t->{dir};
my $sim = WaTest::Sim->start($d);
$t->write_conf(master => 'off', http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_handshake_timeout 60s;");
$t->start;

my $pid = $t->master_pid;
my @kids = grep { $_->{ppid} == $pid } proc_list();
is(scalar @kids, 0, 'no child processes');
my $h = $t->health;
is($h->{helper}{state}, 'active', 'the single process is the active helper');
is($h->{helper}{pid}, $pid, 'helper pid is the nginx process');

my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'one1' });
is($st, 200, 'start-session: 200');
is($j->{status}, 'connecting', 'connecting');
ok(wait_until(sub { $sim->stats->{ws_open} == 1 }, 5), 'the WebSocket is open');
ok(wait_until(sub { $t->status('one1')->{status} eq 'qr_ready' }, 5), 'status qr_ready');
($st, undef, $j) = $t->api(POST => '/api/send-message', body => { organization_id => 'one1', phone => '3001234567', message => 'hola' });
is($st, 409, 'send-message: 409');
is($j->{code}, 'not_connected', 'not_connected');
($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'one1' });
is($st, 200, 'second start-session: 200');
is($sim->stats->{ws_total}, 1, 'idempotent: still one WebSocket');

my $el = $t->quit;
ok(defined $el && $el < 4, 'QUIT: exits within 4 s');
ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'the WebSocket is closed');
is($t->org_row('one1')->{wanted}, 1, 'the store says wanted');
$t->check_log;

$t->start;
ok(wait_until(sub { $sim->stats->{ws_total} == 2 && $sim->stats->{ws_open} == 1 }, 5), 'restart: the session resumes by itself');
ok(wait_until(sub { $t->status('one1')->{status} eq 'qr_ready' }, 5), 'qr_ready again');
$t->stop;
ok(wait_until(sub { $sim->stats->{ws_open} == 0 }, 2), 'closed again');
done_testing;

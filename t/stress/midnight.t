# The dashboard's "sent today" and "failed today" start again at local midnight (nginx's time zone, TZ), and an
# open dashboard stream hears it without any other change (metrics.cpp's midnight timer). The test gives nginx a
# time zone whose midnight is 20 to 80 s away (whole minutes, as nginx keeps its offset), sends one message
# before it, waits for the stream to show 0, then sends another: 1, not 2. In `make stress`: it waits up to
# 80 s for the clock.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);
use WaSse;

# TZ for local = UTC + $off minutes, with local midnight $wait s from now ($wait in [20, 80)).
my $now = time;
my $wait = (60 - int($now) % 60) % 60;
$wait += 60 while $wait < 20;
my $off = ((86400 - $wait - int($now)) % 86400) / 60;
$off -= 1440 if $off >= 720;
my $midnight = int($now) + $wait;
$ENV{TZ} = sprintf('MID%s%02d:%02d', $off >= 0 ? '-' : '+', abs($off) / 60, abs($off) % 60);
diag sprintf('TZ=%s: local midnight in %d s', $ENV{TZ}, $wait);

my $t = WaTest->new;
my $d = $t->{dir};
my $sim = WaTest::Sim->start($d);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    whatsapp_events_heartbeat 1s;",
    locations => "location /api/ { whatsapp_api; }\n        location /dashboard/ { whatsapp_dashboard; }");
$t->start;
my $ds = WaSse->open($t->{port}, '/dashboard/events');
ok($ds->wait_for(sub { $_[0]{event} eq 'ready' }, 3), 'the dashboard stream is open');

# Linked and one message sent, before midnight.
$t->api(POST => '/api/start-session', body => { organization_id => 'm1' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/m1'); $q && $q->{success} ? $q : undef }, 10);
my $ACCOUNT = '573001112299';
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
ok(wait_until(sub { $t->status('m1')->{status} eq 'connected' }, 10), 'm1 linked');
wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);
my $C1 = '573009990011';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 1, name => 'Ana' });
my ($ms) = $t->api(POST => '/api/send-message', body => { organization_id => 'm1', phone => $C1, message => 'antes' }, timeout => 15);
is($ms, 200, 'a message sent before midnight');
my $before = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'm1' && $_[0]{json}{sent_today} == 1 }, 5);
ok($before, 'the stream shows sent_today 1');
cmp_ok(time, '<', $midnight - 1, sprintf('%.1f s before midnight', $midnight - time)) or BAIL_OUT('too slow to test midnight');

# Midnight: the open stream hears sent_today 0 with nothing else happening.
my $reset = $ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'm1' && $_[0]{json}{sent_today} == 0 },
    $midnight - time + 5);
my $late = $reset ? $reset->{t} - $midnight : 99;
ok($reset && $late >= 0 && $late < 3,
    sprintf('sent_today 0 on the open stream %.2f s after local midnight (timer at +0.5 s, asserted under 3 s)', $late));
is($reset->{json}{status}, 'connected', 'still connected');

# The next day counts from 0, on the stream and for a new one.
($ms) = $t->api(POST => '/api/send-message', body => { organization_id => 'm1', phone => $C1, message => 'después' }, timeout => 15);
is($ms, 200, 'a message sent after midnight');
ok($ds->wait_for(sub { $_[0]{event} eq 'org' && $_[0]{json}{organization_id} eq 'm1' && $_[0]{json}{sent_today} == 1 }, 5),
    'the stream shows sent_today 1, not 2');
my $fresh = WaSse->open($t->{port}, '/dashboard/events');
my $f1 = $fresh->next(2);
is_deeply([@{ $f1->{json} // {} }{qw(organization_id sent_today failed_today)}], ['m1', 1, 0], 'a new stream: m1 1 sent, 0 failed');
$fresh->close;
$ds->close;
$t->stop;
$sim->stop;
done_testing;

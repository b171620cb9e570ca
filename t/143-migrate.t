# The foundation's per-organization session.json files move into the store on the first start: wanted
# organizations resume, the files are removed; one that does not parse is quarantined until clear-session.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
my $sd = $t->{state_dir};
mkdir $sd, 0700;
for my $o (['old1', 'true'], ['old2', 'false']) {
    mkdir "$sd/$o->[0]", 0700;
    WaTest::spew("$sd/$o->[0]/session.json", qq({"version":1,"organization_id":"$o->[0]","wanted":$o->[1],"status":"reconnecting","phone":"","last_error":"x","retry_count":3,"connected_at":0,"state_since":1700000000}));
}
mkdir "$sd/bad1", 0700;
WaTest::spew("$sd/bad1/session.json", '{"version":1, broken');
# As the foundation's helper left them: owned by the worker user (nginx's default "nobody" when started as root).
my ($uid, $gid) = (getpwnam('nobody'))[2, 3];
chown $uid, $gid, $sd, glob("$sd/*"), glob("$sd/*/*");
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};");
$t->start;

ok(wait_until(sub { $t->status('old1')->{status} eq 'qr_ready' }, 5), 'the wanted organization resumed by itself (qr_ready)');
is($t->status('old2')->{status}, 'disconnected', 'the unwanted one was not started');
is($t->org_row('old1')->{wanted}, 1, 'old1 is in the store, wanted');
is($t->org_row('old2')->{wanted}, 0, 'old2 is in the store, not wanted');
ok(!-e "$sd/old1/session.json" && !-e "$sd/old2/session.json", 'the migrated session.json files are gone');
like($t->error_log, qr/migrated 2 session\.json files into whatsapp\.db/, 'error.log says what was migrated');

my $s = $t->status('bad1');
like($s->{last_error} // '', qr/quarantined/, 'the file that does not parse: quarantined, with a reason');
my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'bad1' });
is($st, 409, 'start-session of a quarantined organization: 409');
is($j->{code}, 'state_corrupt', 'state_corrupt');
ok(-e "$sd/bad1/session.json", 'its file is kept');
($st) = $t->api(POST => '/api/clear-session', body => { organization_id => 'bad1' });
is($st, 200, 'clear-session: 200');
ok(!-e "$sd/bad1", 'the old directory moved away');
ok(scalar(grep { /^bad1\./ } glob("$sd/.trash/*")) || scalar(grep { m{/bad1\.} } glob("$sd/.trash/*")), 'to .trash, for inspection');
($st) = $t->api(POST => '/api/start-session', body => { organization_id => 'bad1' });
is($st, 200, 'then start-session works');
ok(wait_until(sub { $t->status('bad1')->{status} eq 'qr_ready' }, 5), 'and shows a QR');

$t->stop(allow => qr/quarantined/);
done_testing;

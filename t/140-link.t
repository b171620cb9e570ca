# Linking an organization against the simulator: QR (decoded from the PNG by zbarimg) → scan → 515 restart →
# login → connected with the right phone; prekeys uploaded; restart without a new QR.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(decode_base64);
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};");
$t->start;

my ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'org1' });
is($st, 200, 'start-session 200');
my $t0 = time;
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/org1'); $q && $q->{success} ? $q : undef }, 10);
ok($qr, sprintf('QR ready after %.2f s', time - $t0)) or diag $t->error_log;
like($qr->{qr_text}, qr{^https://wa\.me/settings/linked_devices#2@[^,]+,[^,]+,[^,]+,[^,]+,1$}, 'QR text format (§5a)');
ok($qr->{expires_in} > 30 && $qr->{expires_in} <= 60, "first ref expires in $qr->{expires_in} s");
my ($png) = $qr->{qr} =~ m{^data:image/png;base64,(.+)$};
WaTest::spew("$t->{dir}/qr.png", decode_base64($png));
my $decoded = `zbarimg --raw -q $t->{dir}/qr.png 2>/dev/null`;
chomp $decoded;
is($decoded, $qr->{qr_text}, 'the PNG decodes to the exact QR string');

my ($ss, undef, $scan) = $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => '573001112233' });
is($ss, 200, 'simulator accepted the scan') or diag explain $scan;
$t0 = time;
my $conn = wait_until(sub { my $s = $t->status('org1'); $s->{status} eq 'connected' ? $s : undef }, 15);
my $took = time - $t0;
ok($conn, sprintf('connected %.2f s after the scan (target 5 s, limit 15 s)', $took)) or diag explain $t->status('org1'), $t->error_log;
is($conn->{phone_number}, '573001112233', 'phone_number');
my $acct;
wait_until(sub { (undef, undef, $acct) = $sim->control(GET => '/accounts/573001112233'); ($acct->{devices}[0]{prekeys} // 0) >= 812 }, 10);
is($acct->{devices}[0]{prekeys}, 812, 'the device uploaded 812 prekeys');
is($acct->{devices}[0]{connected}, JSON::PP::true, 'the simulator sees the device connected') if $acct->{devices}[0];

# Restart nginx: the session resumes from the store without a new QR.
$t->quit;
my $stats = $sim->stats;
my $regs = $stats->{registrations};
$t->start;
my $back = wait_until(sub { my $s = $t->status('org1'); $s->{status} eq 'connected' ? $s : undef }, 15);
ok($back, 'connected again after an nginx restart') or diag explain $t->status('org1');
is($sim->stats->{registrations}, $regs, 'no new registration (no QR) after the restart');
is($sim->stats->{conflicts_sent}, 0, 'the simulator sent no conflict');

$t->stop;
done_testing;

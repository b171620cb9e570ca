# The operator dashboard in a real browser: Debian's chromium (headless, --no-sandbox) through chromium-driver and
# python3-selenium (t/lib/dashboard_browser.py, run with Debian's /usr/bin/python3). 100 organizations against the
# simulator, all listed (in Spanish, for an es-CO browser); one organization's QR on screen decodes to its QR
# string; the simulator's scan turns its row to "Conectado" without a reload; a message it sends shows in "Enviados
# hoy"; a logout from the page (same origin) shows; another origin's fetch and form post are refused (403
# forbidden_origin, nothing done). Timings asserted at 3x their 1 s target, figures printed; screenshots kept under
# t/artifacts/191-dashboard/ (path printed).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Encode ();
use IO::Select;
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc);

my $PY = '/usr/bin/python3';    # Debian's, with python3-selenium (not a pyenv python from PATH)
for my $bin ($PY, '/usr/bin/chromium', '/usr/bin/chromedriver', '/usr/bin/zbarimg') {
    ok(-x $bin, "$bin is installed (make deps: chromium chromium-driver python3-selenium zbar-tools)") or BAIL_OUT("$bin missing");
}
my $N = 100;
my $t = WaTest->new;
my $d = $t->{dir};
my $sim = WaTest::Sim->start($d);
my $evil = free_port();
my $port = $t->{port};
mkdir "$d/evil";
# Another origin (same host, another port) trying the dashboard's logout: a JSON fetch (preflighted: OPTIONS is not
# an action, so the browser never sends the POST) and a form post in text/plain (no preflight: the Origin check
# refuses it).
WaTest::spew("$d/evil/fetch.html", <<"HTML");
<!DOCTYPE html><html><body><p id="out"></p><script>
fetch('http://127.0.0.1:$port/dashboard/logout', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({organization_id: 'b042'})})
  .then(function (r) { document.getElementById('out').textContent = 'answered ' + r.status; })
  .catch(function (e) { document.getElementById('out').textContent = 'blocked: ' + e; });
</script></body></html>
HTML
WaTest::spew("$d/evil/form.html", <<"HTML");
<!DOCTYPE html><html><body>
<form id="f" method="POST" action="http://127.0.0.1:$port/dashboard/logout" enctype="text/plain">
<input type="hidden" name='{"organization_id":"b042","x":"' value='"}'></form>
<script>document.getElementById('f').submit();</script></body></html>
HTML
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
        . "    server { listen 127.0.0.1:$evil; root $d/evil; access_log $d/evil.log; }",
    connections => 1024, main => 'worker_rlimit_nofile 4096;',
    locations => "location /api/ { whatsapp_api; }\n"
        . "        location /dashboard/ { allow 127.0.0.1; deny all; whatsapp_dashboard; }");
$t->start;

my @orgs = map { sprintf 'b%03d', $_ } 0 .. $N - 1;
my $t0 = time;
for my $org (@orgs) {
    my ($st) = $t->api(POST => '/api/start-session', body => { organization_id => $org });
    $st == 200 or BAIL_OUT("start-session $org: $st");
}
my $ready = wait_until(sub { scalar(grep { $_->{status} eq 'qr_ready' } $t->connections) == $N }, 60);
ok($ready, sprintf('%d organizations started and showing a QR in %.2f s', $N, time - $t0));

my $art = "$WaTest::ROOT/t/artifacts/191-dashboard";
system('rm', '-rf', $art);
my %cfg = (
    dashboard => "http://127.0.0.1:$port/dashboard/", api => "http://127.0.0.1:$port", key => $WaTest::KEY,
    sim => "http://127.0.0.1:$sim->{control_port}", evil => "http://127.0.0.1:$evil", n => $N, orgs => \@orgs,
    scan_org => 'b042', logout_org => 'b007', phone => '573001112233', contact => '573009990001',
    artifacts => $art, profile => "$d/chrome-profile", driver_log => "$d/chromedriver.log",
);
$t0 = time;
my ($pid, $out) = WaTest::spawn(argv => [$PY, "$WaTest::ROOT/t/lib/dashboard_browser.py", json_enc(\%cfg)], pipe => 1,
    stderr => "$d/browser.err", env => { NO_PROXY => '*', no_proxy => '*', HOME => $d });
my @lines;
my $sel = IO::Select->new($out);
my $end = time + 90;
my $buf = '';
while (time < $end && $sel->can_read($end - time)) {
    my $n = sysread($out, my $chunk, 4096);
    last unless $n;
    $buf .= $chunk;
    while ($buf =~ s/^(.*)\n//) {
        my $line = Encode::decode('UTF-8', $1);
        push @lines, $line;
        diag("browser: $line") if $line =~ /^#/;
    }
}
my $st = WaTest::wait_exit($pid, 5);
# Whatever happened: nothing of the browser outlives the test (its process group, and anything using its profile).
WaTest::kill_group($pid, 2);
for my $p (WaTest::proc_list()) {
    kill 'KILL', $p->{pid} if $p->{cmd} =~ /\Q$d\E\/chrome-profile/ || $p->{pgid} == $pid;
}
my $took = time - $t0;
for (@lines) {
    if (/^ok (.*)/) { ok(1, $1) }
    elsif (/^not ok (.*)/) { ok(0, $1) }
}
my ($done) = map { /^done (\d+)/ ? $1 : () } @lines;
ok(defined $done && $done >= 21, sprintf('the browser script ran to its end (%s checks, %.1f s)', $done // 'no', $took))
    or diag WaTest::slurp("$d/browser.err");
is($st, 0, 'and exited 0') or diag WaTest::slurp("$d/browser.err");
diag("screenshots: $art/") if -d $art;
my @shots = glob("$art/*.png");
ok(@shots >= 6, scalar(@shots) . ' screenshots kept in t/artifacts/191-dashboard/');
ok(!grep({ $_->{cmd} =~ /\Q$d\E\/chrome-profile/ } WaTest::proc_list()), 'no browser process left');

# What the server saw from the other origin: the preflight refused (405, no POST followed) and the form's POST
# answered 403; the dashboard's own logout passed.
my $log = $t->access_log;
like($log, qr{"OPTIONS /dashboard/logout HTTP/1\.1" 405}, 'the cross-origin fetch got only its preflight answered (405)');
my @posts = $log =~ m{"POST /dashboard/logout HTTP/1\.1" (\d+)}g;
is_deeply([sort @posts], [200, 403], 'two POSTs to logout: the page\'s own (200) and the other origin\'s form (403)');
is($t->status('b042')->{status}, 'connected', 'b042 is still connected');
$t->stop;
done_testing;

# The Django example (examples/django) end to end in a real browser: nginx with the module in `make demo`'s
# configuration (conf/demo.conf.in: conf/nginx.conf's production shape), Django under Debian's gunicorn, the
# simulator, and Debian's chromium driven by t/django/browser.py (selenium, headless). The page shows the QR
# within 1 s of «Conectar WhatsApp» (start-session) and its screenshot decodes (zbarimg) to the exact QR string of
# GET /api/qr; the simulator's phone scans what the screen shows and the page turns to «Conectado» without a
# reload; the form's message reaches the simulator's contact exactly; «Desvincular» logs out. Timings asserted at
# 3x their 1 s target and printed. Nothing polls (access logs), the browser never holds the API key, the wa_token
# cookie is HttpOnly and SameSite=Strict, and the key is in no log. Screenshots: build/test-artifacts/192-django/.
use strict;
use warnings;
use utf8;
use Test::More;
use Encode ();
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until free_port json_enc json_dec);

my $T0 = time;
sub uri_escape_utf8 { my $v = Encode::encode_utf8(shift); $v =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge; $v }
my $root = $WaTest::ROOT;
my @need = ('/usr/bin/python3', '/usr/bin/gunicorn', '/usr/bin/chromium', '/usr/bin/chromedriver', '/usr/bin/zbarimg');
my @missing = grep { !-x $_ } @need;
ok(!@missing, 'chromium, chromedriver, gunicorn, zbarimg installed') or diag "missing @missing: run make deps";
my $py_ok = system('/usr/bin/python3', '-c', 'import django, requests, selenium') == 0;
ok($py_ok, "Debian's python3 has django, requests and selenium") or diag 'run make deps';
if (@missing || !$py_ok) { done_testing; exit 1 }

my $ART = $ENV{WA_ARTIFACTS} // "$root/build/test-artifacts/192-django";
remove_tree($ART);
make_path($ART);

my $t = WaTest->new;
my $d = $t->{dir};
my $port = $t->{port};
my $sim = WaTest::Sim->start($d);
my $KEY = $WaTest::KEY;
my %SYS_ENV = (PATH => '/usr/sbin:/usr/bin:/sbin:/bin', PYTHONPATH => '', HOME => $d, LANG => 'C.UTF-8');

# ---------------------------------------------------------------------------------------------- nginx: make demo's conf
my $dport = free_port();
my $conf = WaTest::slurp("$root/conf/demo.conf.in");
my %fill = (MODULE => "$d/module.so", VAR => $d, PORT => $port, DJANGO_PORT => $dport, SERVER => $sim->{ws_url},
            ROOT_KEY => "whatsapp_root_key $sim->{root_key};", USER => 'nobody nogroup');
$conf =~ s/\@(\w+)\@/$fill{$1} \/\/ die "unknown placeholder $1"/ge;
mkdir "$d/$_" for qw(logs tmp state);
WaTest::spew("$d/api.key", "$KEY\n", 0600);
$t->write_conf(text => $conf);
$t->start(wait_helper => 0);
ok(wait_until(sub { my ($s, undef, $j) = $t->http(GET => '/whatsapp/api/health', headers => { 'X-API-Key' => $KEY });
                    ($s // 0) == 200 && ($j->{helper}{state} // '') eq 'active' }, 10),
   'nginx runs conf/demo.conf.in: the keyed API under /whatsapp/ is up');

# ---------------------------------------------------------------------------------------------- Django under gunicorn
my $gpid;
sub start_django {
    my (%env) = @_;
    $gpid = WaTest::spawn(
        argv => ['/usr/bin/python3', '/usr/bin/gunicorn', '--chdir', "$root/examples/django", '--bind', "127.0.0.1:$dport",
                 '--workers', '2', '--access-logfile', "$d/gunicorn-access.log", 'opticaapp.wsgi'],
        stdout => "$d/gunicorn.log", stderr => "$d/gunicorn.log",
        env => { %SYS_ENV, DJANGO_SECRET_KEY => join('', map { ('a'..'z', 0..9)[rand 36] } 1 .. 50),
                 DJANGO_ALLOWED_HOSTS => '127.0.0.1,localhost', WHATSAPP_SERVER_URL => "http://127.0.0.1:$port/whatsapp",
                 WHATSAPP_API_KEY_FILE => "$d/api.key", %env });
    return wait_until(sub { my ($s) = $t->http(GET => '/organizacion/p1/whatsapp/'); ($s // 0) == 200 }, 15);
}
sub stop_django { WaTest::kill_group($gpid, 5) if $gpid; $gpid = undef }
END { local $?; stop_django() }
my $page = '/organizacion/o1/whatsapp/';
ok(start_django(), 'Django answers through nginx (gunicorn behind location /)') or diag WaTest::slurp("$d/gunicorn.log");

# ---------------------------------------------------------------------------------------------- without a browser
{
    my ($s, $h, undef, $body) = $t->http(GET => '/organizacion/p1/whatsapp/');
    my ($cookie) = grep { /^wa_token=/ } split /,\s*(?=[A-Za-z_]+=)/, $h->{'set-cookie'} // '';
    ok($cookie, 'the page sets the wa_token cookie');
    like($cookie // '', qr/;\s*HttpOnly/i, 'HttpOnly');
    like($cookie // '', qr/;\s*SameSite=Strict/i, 'SameSite=Strict');
    like($cookie // '', qr{;\s*Path=/whatsapp-live/}, 'Path=/whatsapp-live/ (sent to the live routes only)');
    like($cookie // '', qr/;\s*Max-Age=600\b/, 'Max-Age=600 (the token lives 10 minutes)');
    my ($tok) = ($cookie // '') =~ /^wa_token=([^;]+)/;
    like($tok // '', qr/^wa1\.p1\.\d+\./, 'a token bound to organization p1');
    ok(index($body, $KEY) < 0, 'the page does not contain the API key');
    like($h->{'content-security-policy'} // '', qr/script-src 'nonce-/, 'a Content-Security-Policy with a script nonce');
    like($body, qr/Conectar WhatsApp/, 'Spanish texts');
    my ($ls, undef, $lj) = $t->http(GET => '/whatsapp-live/api/status/p1', headers => { Cookie => "wa_token=$tok" });
    is($ls, 200, 'the cookie reads p1 on the live route');
    ($ls) = $t->http(GET => '/whatsapp-live/api/status/p2', headers => { Cookie => "wa_token=$tok" });
    is($ls, 401, 'and not another organization');
    ($s) = $t->http(POST => '/organizacion/p1/whatsapp/iniciar', body => '');
    is($s, 403, 'POST iniciar without the CSRF token: 403');
    ($s) = $t->http(GET => '/organizacion/a.b/whatsapp/');
    is($s, 404, 'an organization id the gateway would refuse: 404 from Django');
    ($s) = $t->http(POST => '/organizacion/p1/whatsapp/', body => '');
    is($s, 403, 'the page takes no POST (CSRF first)');

    # The send form validates before anything reaches the gateway.
    my ($csrf) = ($h->{'set-cookie'} // '') =~ /csrftoken=([^;]+)/;
    my ($csrf_form) = $body =~ /name="csrfmiddlewaretoken" value="([^"]+)"/;
    my ($clave) = $body =~ /name="clave" value="([0-9a-f-]{36})"/;
    ok($csrf && $csrf_form && $clave, 'the form carries a CSRF token and a per-form idempotency key');
    my $post = sub {
        my (%f) = (csrfmiddlewaretoken => $csrf_form, clave => $clave, @_);
        my $form = join '&', map { "$_=" . uri_escape_utf8($f{$_}) } sort keys %f;
        my ($ps, undef, undef, $pb) = $t->http(POST => '/organizacion/p1/whatsapp/enviar', body => $form,
            headers => { 'Content-Type' => 'application/x-www-form-urlencoded', Cookie => "csrftoken=$csrf" });
        return ($ps, Encode::decode_utf8($pb // ''));
    };
    my $sends = sub { scalar grep { m{"POST /whatsapp/api/send-message } } split /\n/, WaTest::slurp("$d/logs/access.log") };
    my $before = $sends->();
    my ($ps, $pb) = $post->(telefono => 'abc', mensaje => 'hola');
    is($ps, 400, 'a phone that is no phone: 400');
    like($pb, qr/Escriba un número válido/, 'with the reason, in Spanish');
    ($ps, $pb) = $post->(telefono => '3009990001', mensaje => "   \n ");
    is($ps, 400, 'an empty message: 400');
    ($ps, $pb) = $post->(telefono => '3009990001', mensaje => 'x' x 4097);
    is($ps, 400, 'a message over 4,096 characters: 400');
    ($ps, $pb) = $post->(telefono => '3009990001', mensaje => 'hola', clave => 'not-a-uuid');
    is($ps, 400, 'a forged idempotency key: 400');
    is($sends->(), $before, 'none of them reached the gateway');
    ($ps, $pb) = $post->(telefono => '3009990001', mensaje => 'hola');
    like($pb, qr/WhatsApp no está conectado/, 'a valid form for an organization not linked: the gateway\'s 409, said in Spanish');
}

# ---------------------------------------------------------------------------------------------- the client module
{
    my ($rc, $out) = WaTest::run_cmd(['/usr/bin/env', '-i', (map { "$_=$SYS_ENV{$_}" } sort keys %SYS_ENV),
        "PYTHONPATH=$root/examples/django", 'DJANGO_SETTINGS_MODULE=opticaapp.settings', 'DJANGO_SECRET_KEY=client-check',
        "WHATSAPP_SERVER_URL=http://127.0.0.1:$port/whatsapp", "WHATSAPP_API_KEY_FILE=$d/api.key",
        '/usr/bin/python3', "$root/t/django/client_check.py", 'c1'], 30, "$d/client.out");
    my $c = json_dec((grep { /^\{/ } split /\n/, $out)[-1] // '') // {};
    is($rc, 0, 'whatsapp_baileys_client against the gateway (t/django/client_check.py)') or diag $out;
    is_deeply([ @{ $c->{status} // {} }{qw(success status connected)} ], [ JSON::PP::true, 'disconnected', JSON::PP::false ],
              'get_status: success, disconnected, connected false');
    is_deeply([ @{ $c->{qr} // {} }{qw(success qr)} ], [ JSON::PP::false, undef ], 'get_qr: success false, qr null (no QR)');
    is_deeply($c->{send}, { http => 409, code => 'not_connected' }, 'send_message on a session not running: HTTPError 409 not_connected');
    is_deeply($c->{send_bad_phone}, { http => 400, code => 'invalid_phone' }, 'a bad phone: HTTPError 400 invalid_phone');
    is($c->{clear}{status}, 'disconnected', 'clear_session: disconnected');
    ok($c->{logout}{success}, "logout: success ($c->{logout}{status})");
    is($c->{bad_org}, 'InvalidOrganization', 'an organization id with ../ is refused before any request');
    is_deeply([ @{ $c->{token} // {} }{qw(success expires_in cookie)} ], [ JSON::PP::true, 60, 'wa_token' ],
              'session_token: 60 s, cookie wa_token') or diag explain $c->{token};
    is_deeply($c->{wrong_key}, { http => 401, code => 'unauthorized' }, 'a wrong key: HTTPError 401 unauthorized');
}

# ---------------------------------------------------------------------------------------------- the browser
my $ACCOUNT = '573001112233';
my $CONTACT = '573009990001';
my ($cs) = $sim->control(POST => '/contacts', body => { phone => $CONTACT, devices => 2, name => 'Ana' });
is($cs, 200, 'the simulator has a contact with 2 devices');
my $MESSAGE = "Su pedido está listo ✅ ¿Pasa mañana a recogerlo? Óptica Ñandú";
my %step;
sub browser {
    my ($conf, $name) = @_;
    WaTest::spew("$d/$name.json", json_enc($conf), 0600);
    my $tb = time;
    my ($rc, $out) = WaTest::run_cmd(['/usr/bin/env', '-i', (map { "$_=$SYS_ENV{$_}" } sort keys %SYS_ENV),
                                      '/usr/bin/python3', "$root/t/django/browser.py", "$d/$name.json"], 60, "$d/$name.out");
    is($rc, 0, sprintf('t/django/browser.py (%s) ran: %.1f s', $name, time - $tb)) or diag $out;
    for (split /\n/, $out) { my $j = json_dec($_); $step{ $j->{step} } = $j if ref $j eq 'HASH' && $j->{step} }
}
browser({ url => "http://127.0.0.1:$port$page", api => "http://127.0.0.1:$port/whatsapp", org => 'o1', key => $KEY,
          control => $sim->{control_url}, account => $ACCOUNT, contact => '300 999 0001', message => $MESSAGE,
          artifacts => $ART, tmp => $d }, 'browser');
diag sprintf('chromium %s started in %.2f s', $step{browser}{version} // '?', $step{browser}{took} // 0);

my $p = $step{page} // {};
is($p->{estado}, 'Desconectado', 'the page: «Desconectado» before anything');
ok($p->{live}, sprintf('its event stream opened (page ready in %.2f s)', $p->{took} // 0));
ok($p->{conectar_visible}, '«Conectar WhatsApp» shown');
ok(!$p->{qr_visible}, 'no QR yet');
ok($p->{envio_disabled}, 'the send form is disabled while not connected');
is_deeply($p->{wa_token}, { path => '/whatsapp-live/', httpOnly => JSON::PP::true, sameSite => 'Strict', secure => JSON::PP::false },
          'the browser holds wa_token: HttpOnly, SameSite=Strict, Path=/whatsapp-live/ (Secure only behind TLS)')
    or diag explain $p->{wa_token};
ok(!$p->{document_cookie_has_token}, 'page scripts cannot read it (document.cookie)');
ok(defined $p->{key_in_page} && !$p->{key_in_page}, 'the API key is not in the page');

my $q = $step{qr} // {};
ok($q->{shown}, 'the QR appeared after «Conectar WhatsApp»');
ok($q->{shown} && $q->{took} < 3, sprintf('within %.3f s of the click (in the page: %.0f ms from click to image; target 1 s, asserted at 3 s)',
                                          $q->{took} // 99, $q->{in_page_ms} // -1));
is($q->{estado}, 'Esperando el escaneo del código QR', 'state: waiting for the scan');
ok($q->{same_png_as_api}, 'the image is the PNG of GET /api/qr');
my $shot = "$ART/qr.png";
ok(-s $shot, "its screenshot: $shot");
open(my $zfh, '-|', "/usr/bin/zbarimg --raw -q \Q$shot\E 2>/dev/null") or die "zbarimg: $!";
my $zout = do { local $/; <$zfh> } // '';
close $zfh;
my $zrc = $? >> 8;
$zout =~ s/\n+\z//;
is($zrc, 0, 'zbarimg decodes the screenshot');
like($q->{api_qr_text} // '', qr{^https://wa\.me/settings/linked_devices#2@|^2@}, 'GET /api/qr reported a pairing string');
is($zout, $q->{api_qr_text}, 'the screenshot decodes to the exact QR string of GET /api/qr');

my $c = $step{connected} // {};
is($c->{scan_status}, 200, "the simulator's phone scanned what the screen showed");
ok($c->{connected} && $c->{took} < 3, sprintf('«Conectado» %.3f s after the scan (target 1 s, asserted at 3 s)', $c->{took} // 99));
is($c->{estado}, 'Conectado', 'the page says «Conectado»');
is($c->{telefono}, "+$ACCOUNT", 'with the phone');
ok($c->{no_reload}, 'without a reload');
ok(defined $c->{qr_visible} && !$c->{qr_visible}, 'the QR is gone');
ok($c->{envio_enabled}, 'the send form is enabled');
is($c->{api_status}, "connected $ACCOUNT", 'GET /api/status agreed then: connected, same phone');

my $s = $step{sent} // {};
like($s->{aviso} // '', qr/^Mensaje enviado a \+$CONTACT \(id 3EB0[0-9A-F]+\)\.$/, "the form: «$s->{aviso}»") or diag explain $s;
diag sprintf('send form: %.3f s from the click to the answer page', $s->{took} // 0);
my $id = $s->{message_id} // '-';
my $got = wait_until(sub {
    my (undef, undef, $in) = $sim->control(GET => "/contacts/$CONTACT/inbox");
    my @m = grep { $_->{id} eq $id } @{ ref $in eq 'ARRAY' ? $in : [] };
    @m >= 2 ? \@m : undef }, 10);
ok($got, "the contact's 2 devices received message $id");
is_deeply([ map { $_->{text} } @{ $got // [] } ], [ $MESSAGE, $MESSAGE ], 'exactly the text typed in the form (accents, ñ, ✅)');
is($got->[0]{from}, $ACCOUNT, "from the organization's account") if $got;
ok(defined $s->{key_in_page} && !$s->{key_in_page}, 'the API key is not in the answer page');

my $l = $step{logout} // {};
like($l->{confirm} // '', qr/^¿Seguro\?/, '«Desvincular teléfono» asks for confirmation');
like($l->{aviso} // '', qr/desvinculado/, "then: «$l->{aviso}»") or diag explain $l;
ok($l->{offline} && $l->{conectar_visible}, "the page is offline again («$l->{estado}»), «Conectar WhatsApp» shown");
my (undef, undef, $sj) = $t->http(GET => '/whatsapp/api/status/o1', headers => { 'X-API-Key' => $KEY });
is($sj->{status}, 'logged_out', 'the gateway logged the organization out');

is_deeply($step{console}{errors}, [], 'no errors in the browser console (CSP violations included)') or diag explain $step{console};

# ---------------------------------------------------------------------------------------------- a page open longer than its token
# Django again, with 2 s tokens: the stream ends with `expired`, the page asks Django for a new cookie and opens a
# new stream on its own, which still brings the QR.
stop_django();
ok(start_django(WHATSAPP_TOKEN_TTL => 2), 'Django restarted with WHATSAPP_TOKEN_TTL=2');
delete $step{console};
browser({ flow => 'renew', ttl => 2, url => "http://127.0.0.1:$port/organizacion/r1/whatsapp/", org => 'r1', key => $KEY,
          artifacts => $ART, tmp => $d }, 'renew');
my $r = $step{renew} // {};
ok($r->{renewed}, sprintf('the page renewed its token and stream by itself (%d renewal(s), live again %.2f s after loading)',
                          $r->{renewals} // 0, $r->{took} // 0));
ok($r->{qr_shown} && $r->{qr_took} < 3, sprintf('then the QR still arrives live: %.3f s after the click', $r->{qr_took} // 99));
is_deeply($step{console}{errors}, [], 'no errors in the browser console') or diag explain $step{console};

# ---------------------------------------------------------------------------------------------- no polling, nothing leaked
$t->quit;
stop_django();
my $access = WaTest::slurp("$d/logs/access.log");
my @o1 = grep { m{"[A-Z]+ [^ ]*/o1[/ ]} } split /\n/, $access;
my $n = sub { my $re = shift; scalar grep { $_ =~ $re } @o1 };
is($n->(qr{/whatsapp-live/api/(status|qr)/}), 0, 'the page never polled status or qr');
is($n->(qr{"GET /whatsapp-live/api/events/o1 }), 3, 'one event stream per page load (3 loads: open, after sending, after logout)');
is($n->(qr{"GET /organizacion/o1/whatsapp/ }), 3, 'Django served the page 3 times');
is($n->(qr{"POST /organizacion/o1/whatsapp/iniciar }), 1, 'one start-session');
is($n->(qr{"POST /organizacion/o1/whatsapp/enviar }), 1, 'one send');
is($n->(qr{"POST /organizacion/o1/whatsapp/token }), 0, 'no token renewal needed');
my @r1 = grep { m{"[A-Z]+ [^ ]*/r1[/ ]} } split /\n/, $access;
my $renewals = grep { m{"POST /organizacion/r1/whatsapp/token HTTP/1\.1" 200 } } @r1;
my $streams = grep { m{"GET /whatsapp-live/api/events/r1 HTTP/1\.1" 200 } } @r1;
ok($renewals >= 1 && ($streams == $renewals + 1 || $streams == $renewals), "r1: $renewals renewal(s) (POST token), $streams streams (one per token)");
is(scalar(grep { m{/whatsapp-live/api/(status|qr)/r1} } @r1), 0, 'r1: no polling either');
diag sprintf('requests about o1 through nginx: %d in all', scalar @o1);

my @logs = grep { -f $_ && !/\.(png|json)$/ && !m{/api\.key$} && !m{/module\.so$} && !m{/state/} }
           (glob("$d/* $d/logs/*"), glob("$ART/*"));
my @leaks = grep { index(WaTest::slurp($_), $KEY) >= 0 } @logs;
ok(!@leaks, sprintf('the API key is in none of %d logs (nginx, gunicorn, chromedriver, the browser script)', scalar @logs))
    or diag "in: @leaks";
my @bad = grep { /\[(alert|emerg|crit)\]/ } split /\n/, WaTest::slurp("$d/logs/error.log");
ok(!@bad, 'nginx error.log has no [alert]/[emerg]/[crit]') or diag join "\n", @bad;
unlike(WaTest::slurp("$d/gunicorn.log"), qr/Traceback|\[ERROR\]/, 'gunicorn logged no error');

diag "screenshots: $ART/";
diag sprintf('t/192-django.t took %.1f s', time - $T0);
done_testing;

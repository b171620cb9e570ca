# The configurations we ship pass `nginx -t`: conf/nginx.conf (production shape) with its paths moved into a
# temp dir, conf/run.conf.in (make run) filled in the way conf/run.sh fills it, conf/demo.conf.in (make demo) as
# conf/demo.sh fills it.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(free_port);

my $root = $WaTest::ROOT;
my $t = WaTest->new;
my $d = $t->{dir};
WaTest::spew("$d/keys", "# ops\n$WaTest::KEY\n", 0600);
mkdir "$d/state";

sub nginx_t {
    my ($conf, $name) = @_;
    WaTest::spew("$d/$name", $conf, 0644);
    my ($rc, $out) = WaTest::run_cmd([$WaTest::NGINX, '-t', '-p', "$d/", '-c', "$d/$name", '-e', "$d/error.log"],
                                     20, "$d/$name.out");
    return ($rc, $out);
}

# ---- conf/nginx.conf: only machine paths change; every whatsapp_* line and the server block stay as shipped.
my $prod = WaTest::slurp("$root/conf/nginx.conf");
my %swap = (
    qr{^load_module .*;}m                     => "load_module $d/module.so;",
    qr{^user www-data;}m                      => '',
    qr{^pid /run/nginx\.pid;}m                => "pid $d/nginx.pid;",
    qr{^error_log /var/log/nginx/error\.log;}m => "error_log $d/error.log;",
    qr{access_log /var/log/nginx/access\.log;} => "access_log $d/access.log;",
    qr{whatsapp_state_dir\s+/var/lib/nginx/whatsapp;} => "whatsapp_state_dir $d/state;",
    qr{whatsapp_api_key_file\s+/etc/nginx/whatsapp\.keys;} => "whatsapp_api_key_file $d/keys;",
    qr{listen 80;}                            => 'listen 127.0.0.1:' . free_port() . ';',
);
for my $re (keys %swap) {
    ok($prod =~ s/$re/$swap{$re}/, "conf/nginx.conf has the line we relocate ($re)");
}
my $temps = "client_body_temp_path $d/t1; proxy_temp_path $d/t2; fastcgi_temp_path $d/t3; "
          . "uwsgi_temp_path $d/t4; scgi_temp_path $d/t5;";
$prod =~ s/^http \{/http {\n    $temps/m;
like($prod, qr{location /whatsapp/ \{\s*allow 127\.0\.0\.1;.*deny all;\s*whatsapp_api;}s,
     'the API is mounted under /whatsapp/, loopback only');
like($prod, qr{proxy_pass http://django;}, 'Django is proxied');
like($prod, qr{location /whatsapp-live/ \{\s*whatsapp_api token_only;\s*\}}, 'browsers get the token-only live routes');
like($prod, qr{location = /whatsapp-metrics \{\s*allow 127\.0\.0\.1;.*deny all;\s*whatsapp_metrics;}s, 'metrics, loopback only');
like($prod, qr{location /whatsapp-dashboard/ \{\s*allow 127\.0\.0\.1;[^\}]*deny all;\s*auth_basic "[^"]+";\s*auth_basic_user_file \S+;\s*whatsapp_dashboard;\s*\}},
     'the operator dashboard, protected by allow/deny and auth_basic');
my ($rc, $out) = nginx_t($prod, 'prod.conf');
is($rc, 0, 'conf/nginx.conf passes nginx -t') or diag $out;
like($out, qr/syntax is ok/, 'syntax is ok');

# ---- Debian's default events block (worker_connections 768) with the module: the derived whatsapp_max_sessions
# fits whatever the open-file limit; an explicit value above what the helper can hold is refused by nginx -t.
{
    (my $debian = $prod) =~ s/worker_connections 1024;/worker_connections 768;/ or die 'conf/nginx.conf has no worker_connections 1024';
    ($rc, $out) = nginx_t($debian, 'debian.conf');
    is($rc, 0, 'conf/nginx.conf with Debian\'s worker_connections 768 passes nginx -t') or diag $out;
    (my $over = $debian) =~ s/(whatsapp_zone .*\n)/$1    whatsapp_max_sessions 10000;\n/;
    ($rc, $out) = nginx_t($over, 'debian-over.conf');
    is($rc, 1, 'with whatsapp_max_sessions 10000 nginx -t fails');
    like($out, qr/whatsapp_max_sessions 10000 is more than the helper can hold: worker_connections 768 .* leave room for \d+ sessions/,
        'naming both directives');
    unlink "$d/error.log";    # the refused configuration's [emerg] is expected
}

# ---- conf/run.conf.in as conf/run.sh fills it.
my $run = WaTest::slurp("$root/conf/run.conf.in");
my $port = free_port();
$run =~ s{\@MODULE\@}{$d/module.so}g;
$run =~ s/\@VAR\@/$d/g;
$run =~ s/\@PORT\@/$port/g;
$run =~ s{\@SERVER\@}{wss://web.whatsapp.com/ws/chat}g;
$run =~ s/\@ROOT_KEY\@//g;
$run =~ s/\@USER\@/nobody nogroup/g;
mkdir "$d/$_" for qw(tmp logs);    # conf/run.sh creates these
WaTest::spew("$d/api.key", "$WaTest::KEY\n", 0600);
unlike($run, qr/\@\w+\@/, 'every placeholder of run.conf.in is filled');
($rc, $out) = nginx_t($run, 'run.conf');
is($rc, 0, 'conf/run.conf.in passes nginx -t') or diag $out;

# ---- conf/demo.conf.in (make demo) as conf/demo.sh fills it: the production shape of conf/nginx.conf on loopback.
my $demo = WaTest::slurp("$root/conf/demo.conf.in");
my %demo_fill = (MODULE => "$d/module.so", VAR => $d, PORT => free_port(), DJANGO_PORT => free_port(),
                 SERVER => 'ws://127.0.0.1:9/ws/chat', ROOT_KEY => 'whatsapp_root_key ' . ('A' x 43) . '=;',
                 USER => 'nobody nogroup');
$demo =~ s/\@(\w+)\@/$demo_fill{$1} \/\/ "\@$1\@"/ge;
unlike($demo, qr/\@\w+\@/, 'every placeholder of demo.conf.in is known to this test (conf/demo.sh fills the same)');
my $demo_sh = WaTest::slurp("$root/conf/demo.sh");
for my $ph (keys %demo_fill) { like($demo_sh, qr/\@$ph\@/, "conf/demo.sh fills \@$ph\@") }
like($demo, qr{location / \{\s*proxy_pass http://django;}, 'demo: Django proxied at /');
like($demo, qr{location /whatsapp/ \{\s*allow 127\.0\.0\.1;.*deny all;\s*whatsapp_api;}s, 'demo: the API under /whatsapp/, loopback only');
like($demo, qr{location /whatsapp-live/ \{\s*whatsapp_api token_only;\s*\}}, 'demo: the token-only live routes');
($rc, $out) = nginx_t($demo, 'demo.conf');
is($rc, 0, 'conf/demo.conf.in passes nginx -t') or diag $out;

unlike(WaTest::slurp("$d/error.log"), qr/\[(alert|emerg|crit)\]/, 'error.log has no [alert]/[emerg]/[crit]');
done_testing;

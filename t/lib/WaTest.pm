package WaTest;
# Minimal harness for the ngx_whatsapp integration tests (no Test::Nginx on Debian 12).
#   my $t = WaTest->new;                       # own 0755 temp dir, own port, private copy of the module
#   $t->write_conf(http => "...", server => "...");
#   $t->start;                                  # pid file, port, helper active
#   my ($st, $hdr, $json, $body) = $t->api(GET => '/api/status/23');
#   $t->reload; $t->quit; $t->stop;             # stop = quit + "no [alert]/[emerg]/[crit]" check
#   my $sim = WaTest::Sim->start($t->{dir});    # t/wa-sim (->stats, ->reset), killed at END
#   my $ctr = WaTest::WsCounter->start($dir);    # exact TCP-level WebSocket counter (->stats, close codes)
#   WaTest::background(sub { ... });            # forked helper loop (pollers, fake servers), killed at END
#   WaTest::make_ca / make_cert                 # test PKI with the openssl CLI
#   $t->helper_pids, $t->worker_pids, $t->health, $t->status($org), $t->connections (all pages), $t->error_log,
#   wait_until(sub {...}, $s)
# Env: TEST_NGINX_BINARY, TEST_NGINX_MODULE, TEST_NGINX_LEAVE (keep temp dirs), TEST_NGINX_CATLOG (always
# print error.log), TEST_NGINX_LOG_LEVEL (default info).
# Every process started here is in its own process group and is killed at END, even after a die.
use strict;
use warnings;
use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h setpgid);
use Time::HiRes qw(time sleep);
use Test::More ();
use Exporter 'import';

our @EXPORT_OK = qw(wait_until free_port json_enc json_dec http_request make_ca make_cert proc_list alive);
our $ROOT   = abs_path(dirname(__FILE__) . '/../..');
our $NGINX  = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $MODULE = $ENV{TEST_NGINX_MODULE} || "$ROOT/objs/ngx_http_whatsapp_module.so";
our $KEY    = 'test-key-0123456789abcdef';
# What nginx's master logs when a test kills a process with SIGKILL: the exit, and, when the process held a
# shared zone's mutex at that instant (the helper does for microseconds at a time, hundreds of times a second
# during a burst), that it force-unlocked it (ngx_unlock_mutexes() in src/os/unix/ngx_process.c).
our $KILLED = qr/worker process \d+ exited on signal 9|shared memory zone "[^"]+" was locked by \d+/;
# Every test talks to loopback only: a proxy in the environment (curl, Node, Python's requests and selenium all
# honour one) must not take those requests elsewhere, in this process or any it starts.
delete @ENV{qw(http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY)};
my (@INSTANCES, @SIMS, @BACKGROUND);
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

sub json_enc { $JSON->encode($_[0]) }
sub json_dec { my $v = eval { $JSON->decode($_[0]) }; $v }

sub wait_until {
    my ($cond, $timeout, $step) = @_;
    my $end = time + ($timeout // 10);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return undef if time > $end;
        sleep($step // 0.05);
    }
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "cannot bind a free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub alive {
    my ($pid) = @_;
    return 0 unless $pid && kill(0, $pid);
    my $st = proc_stat($pid) or return 0;
    return $st->{state} ne 'Z';
}

sub proc_stat {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/stat") or return undef;
    my $s = <$fh> // return undef;
    close $fh;
    my $r = rindex($s, ')');
    my @f = split ' ', substr($s, $r + 2);
    return { pid => $pid, state => $f[0], ppid => $f[1], pgid => $f[2] };
}

# All processes: [{pid, ppid, pgid, state, cmd}]
sub proc_list {
    my @out;
    opendir(my $d, '/proc') or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my $st = proc_stat($pid) or next;
        open(my $fh, '<', "/proc/$pid/cmdline") or next;
        local $/;
        my $cmd = <$fh> // '';
        $cmd =~ s/\0+$//;
        $cmd =~ s/\0/ /g;
        push @out, { %$st, cmd => $cmd };
    }
    return @out;
}

# Local ports of this host's ESTABLISHED TCP connections to 127.0.0.1:$remote_port (the clients' side).
sub established_ports {
    my ($remote_port) = @_;
    my @ports;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open(my $fh, '<', $f) or next;
        <$fh>;
        while (<$fh>) {
            my (undef, $local, $remote, $st) = split ' ';
            next unless $st eq '01' && $remote =~ /:([0-9A-F]{4})$/ && hex($1) == $remote_port;
            push @ports, hex($1) if $local =~ /:([0-9A-F]{4})$/;
        }
    }
    return @ports;
}

# Forks $argv in its own process group, stdout/stderr to files (or stdout to a pipe when $o{pipe}).
sub spawn {
    my (%o) = @_;
    my ($r, $w);
    pipe($r, $w) or die "pipe: $!" if $o{pipe};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgid(0, 0);
        if ($o{pipe}) { close $r; open(STDOUT, '>&', $w) or POSIX::_exit(127) }
        else { open(STDOUT, '>>', $o{stdout} // '/dev/null') or POSIX::_exit(127) }
        open(STDERR, '>>', $o{stderr} // '/dev/null') or POSIX::_exit(127);
        open(STDIN, '<', '/dev/null');
        chdir $o{chdir} if $o{chdir};
        @ENV{ keys %{ $o{env} } } = values %{ $o{env} } if $o{env};
        exec { $o{argv}[0] } @{ $o{argv} } or POSIX::_exit(127);
    }
    setpgid($pid, $pid);
    close $w if $o{pipe};
    return wantarray ? ($pid, $r) : $pid;
}

# Runs $code in a forked child (own process group) that END kills; returns its pid.
sub background {
    my ($code) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgid(0, 0);
        eval { $code->() };
        POSIX::_exit(0);
    }
    setpgid($pid, $pid);
    push @BACKGROUND, $pid;
    return $pid;
}

# waitpid with a deadline; returns the exit status ($?) or undef on timeout.
sub wait_exit {
    my ($pid, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return 0 if $r == -1;
        sleep 0.02;
    }
    return undef;
}

sub kill_group {
    my ($pid, $grace) = @_;
    return unless $pid;
    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    if (!defined wait_exit($pid, $grace // 3)) { kill 'KILL', -$pid; kill 'KILL', $pid; waitpid($pid, 0) }
    kill 'KILL', -$pid;    # stray members of the group (workers of a killed master)
}

# Runs a command to completion (timeout), returns (exit code, combined output).
sub run_cmd {
    my ($argv, $timeout, $outfile) = @_;
    unlink $outfile;
    my $pid = spawn(argv => $argv, stdout => $outfile, stderr => $outfile);
    my $st = wait_exit($pid, $timeout // 20);
    if (!defined $st) { kill 'KILL', -$pid; waitpid($pid, 0); $st = -1 }
    return ($st == -1 ? -1 : $st >> 8, slurp($outfile), $pid);
}

sub slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub spew {
    my ($f, $s, $mode) = @_;
    open(my $fh, '>', $f) or die "$f: $!";
    print $fh $s;
    close $fh;
    chmod $mode, $f if defined $mode;
}

# ------------------------------------------------------------------------------------------------ HTTP

# Raw request bytes to 127.0.0.1:$port; returns the raw response (read to EOF) or undef on timeout.
sub http_raw {
    my ($port, $req, %o) = @_;
    my $timeout = $o{timeout} // 15;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
        or return undef;
    binmode $s;
    my $end = time + $timeout;
    for (my $off = 0; $off < length $req;) {
        my $n = syswrite($s, $req, length($req) - $off, $off);
        return undef unless defined $n;
        $off += $n;
    }
    return $s if $o{no_read};
    my $sel = IO::Select->new($s);
    my $resp = '';
    while (1) {
        my $left = $end - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, my $buf, 65536);
        last if !$n;
        $resp .= $buf;
    }
    close $s;
    return $resp;
}

sub parse_response {
    my ($raw) = @_;
    return (0, {}, undef, '') unless defined $raw && $raw =~ /\r\n\r\n/;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my @lines = split /\r\n/, $head;
    my ($status) = (shift(@lines) // '') =~ m{^HTTP/\d\.\d (\d{3})};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    return ($status // 0, \%h, json_dec($body), $body);
}

# http_request($port, METHOD, PATH, headers => {...}, body => STRING|REF, timeout => S)
#   -> (status, {lc header => value}, decoded JSON or undef, body)
sub http_request {
    my ($port, $method, $path, %o) = @_;
    my %h = (Host => 'localhost', Connection => 'close', %{ $o{headers} // {} });
    my $body = $o{body};
    if (ref $body) {
        $body = json_enc($body);
        $h{'Content-Type'} //= 'application/json';
    }
    $h{'Content-Length'} = length($body) if defined $body && !exists $h{'Content-Length'} && !$h{'Transfer-Encoding'};
    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "$_: $h{$_}\r\n" for grep { defined $h{$_} } sort keys %h;
    $req .= "\r\n" . ($body // '');
    return parse_response(http_raw($port, $req, timeout => $o{timeout}));
}

# ------------------------------------------------------------------------------------------------ nginx

sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('wa-test-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_LEAVE});
    chmod 0755, $dir;    # CI runs as root: workers (nobody) must reach the state dir
    copy($MODULE, "$dir/module.so") or die "copy $MODULE: $!";    # immune to rebuilds during the run
    my $self = bless { dir => $dir, port => free_port(), key => $KEY, state_dir => "$dir/state", %o }, $class;
    push @INSTANCES, $self;
    return $self;
}

# Builds nginx.conf. Options: http (extra http-level lines), server (extra server lines), locations
# (replaces the default /api/ and = /health locations), zone, key (undef: none), state_dir, level,
# master (on|off), workers, connections (worker_connections, default 256), main (extra main-level lines).
sub conf_text {
    my ($self, %o) = @_;
    my $d = $self->{dir};
    my $level = $o{level} // $ENV{TEST_NGINX_LOG_LEVEL} // 'info';
    my $key = exists $o{key} ? $o{key} : $self->{key};
    my $locations = $o{locations} // "location /api/ { whatsapp_api; }\n        location = /health { whatsapp_api; }";
    my $zone = exists $o{zone} ? $o{zone} : 'whatsapp_zone wa 1m;';
    my $state = $o{state_dir} // $self->{state_dir};
    return <<"EOF";
load_module $d/module.so;
daemon off;
master_process @{[ $o{master} // 'on' ]};
worker_processes @{[ $o{workers} // 2 ]};
pid $d/nginx.pid;
error_log $d/error.log $level;
@{[ $o{main} // '' ]}
events { worker_connections @{[ $o{connections} // 256 ]}; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    $zone
    whatsapp_state_dir $state;
@{[ defined $key ? "    whatsapp_api_key $key;" : '' ]}
    @{[ $o{http} // '' ]}
    server {
        listen 127.0.0.1:$self->{port};
        @{[ $o{server} // '' ]}
        $locations
    }
}
EOF
}

sub write_conf {
    my ($self, %o) = @_;
    $self->{conf_opts} = \%o;
    spew("$self->{dir}/nginx.conf", defined $o{text} ? $o{text} : $self->conf_text(%o));
    return "$self->{dir}/nginx.conf";
}

sub nginx_argv {
    my ($self, @extra) = @_;
    my $d = $self->{dir};
    return [$NGINX, '-p', "$d/", '-c', "$d/nginx.conf", '-e', "$d/error.log", @extra];
}

# nginx -t: returns (exit code, output, pid).
sub test_config {
    my ($self) = @_;
    return run_cmd($self->nginx_argv('-t'), 20, "$self->{dir}/nginx-t.out");
}

sub start {
    my ($self, %o) = @_;
    my $d = $self->{dir};
    unlink "$d/nginx.pid";
    $self->{pid} = spawn(argv => $self->nginx_argv, stdout => "$d/stderr.log", stderr => "$d/stderr.log");
    my $ok = wait_until(sub { -s "$d/nginx.pid" || !alive($self->{pid}) }, 10) && alive($self->{pid});
    $ok &&= wait_until(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Timeout => 1);
        close $s if $s;
        $s;
    }, 10);
    croak "nginx did not start:\n" . slurp("$d/stderr.log") . $self->error_log unless $ok;
    if ($o{wait_helper} // 1) {
        # Active in /api/health (set while the helper initializes) and titled (set on its first event-loop turn).
        my $master = ($self->{conf_opts}{master} // 'on') eq 'on' && !defined $self->{conf_opts}{text};
        croak "the whatsapp helper did not become active:\n" . $self->error_log
            unless wait_until(sub { ($self->health->{helper}{state} // '') eq 'active' && (!$master || $self->helper_pids) }, 10);
        # The helper names itself on its first event-loop turn, after it became active (nginx titles a worker
        # after its init_process): wait for the title too, or helper_pids may not find it yet on a busy machine.
        wait_until(sub { scalar(my @h = $self->helper_pids) }, 5) if ($self->{conf_opts}{master} // 'on') ne 'off';
    }
    return $self;
}

# http{} lines for checking that API keys never reach a log. "full.log" holds the request line and every header the
# module sets; "control.log" logs X-API-Key itself: a key the client sent shows there, so searching the other logs
# for it is a check that can fail.
sub key_logs_conf {
    my ($self) = @_;
    my $d = $self->{dir};
    return "log_format wa_full '\$remote_addr \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" \"\$http_user_agent\" "
        . "\"\$sent_http_content_type\" \"\$sent_http_retry_after\" \"\$sent_http_allow\" \"\$sent_http_cache_control\"';\n"
        . "    access_log $d/full.log wa_full;\n"
        . "    log_format wa_control 'key=\$http_x_api_key';\n"
        . "    access_log $d/control.log wa_control;";
}

# After key_logs_conf: each key was seen by nginx (control.log) and is in neither error.log nor full.log.
sub keys_not_logged {
    my ($self, @keys) = @_;
    my ($control, $full, $err) = (slurp("$self->{dir}/control.log"), slurp("$self->{dir}/full.log"), $self->error_log);
    Test::More::ok(length $full, 'full.log (request line and response headers) was written');
    for my $k (@keys) {
        Test::More::ok(index($control, $k) >= 0, "control: key $k... reached nginx (a format with \$http_x_api_key logs it)");
        Test::More::ok(index($err, $k) < 0, "key $k... not in error.log");
        Test::More::ok(index($full, $k) < 0, "key $k... not in an access log with the request line and response headers");
    }
}

sub http { my $self = shift; http_request($self->{port}, @_) }

# Like http, with the API key.
sub api {
    my ($self, $method, $path, %o) = @_;
    $o{headers} = { 'X-API-Key' => $self->{key}, %{ $o{headers} // {} } };
    return http_request($self->{port}, $method, $path, %o);
}

sub health { my ($s, undef, $j) = $_[0]->api(GET => '/api/health'); return ($s // 0) == 200 && $j ? $j : {} }
sub status { my ($s, undef, $j) = $_[0]->api(GET => "/api/status/$_[1]"); return $j // {} }

# Rows of the helper's store (<state_dir>/whatsapp.db), read-only through the sqlite3 CLI while nginx runs.
sub db {
    my ($self, $sql) = @_;
    my $db = "$self->{state_dir}/whatsapp.db";
    return [] unless -f $db;
    open(my $fh, '-|', 'sqlite3', '-readonly', '-json', $db, $sql) or die "sqlite3: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    return WaTest::json_dec($out // '') // [];
}

# The live (not cleared) orgs row of an organization, or undef.
sub org_row {
    my ($self, $org) = @_;
    die "bad org id" unless $org =~ /^[A-Za-z0-9_-]+$/;
    return $self->db("SELECT * FROM orgs WHERE org = '$org' AND cleared_at IS NULL")->[0];
}

# Every organization of /api/connections, following next_cursor page by page; () if a page fails.
sub connections {
    my ($self, %o) = @_;
    my ($cursor, @all) = ('');
    for (1 .. 1000) {
        my ($s, undef, $j) = $self->api(GET => "/api/connections?limit=" . ($o{limit} // 1000) . $cursor);
        return () unless ($s // 0) == 200 && $j && ref $j->{items} eq 'ARRAY';
        push @all, @{ $j->{items} };
        return @all unless defined $j->{next_cursor};
        $cursor = "&cursor=$j->{next_cursor}";
    }
    return ();
}

sub master_pid { $_[0]{pid} }

sub children {
    my ($self, $re) = @_;
    my $m = $self->{pid} or return ();
    return map { $_->{pid} } grep { $_->{ppid} == $m && $_->{state} ne 'Z' && $_->{cmd} =~ $re } proc_list();
}

# lists in list context, counts in scalar context
sub helper_pids { my @l = sort { $a <=> $b } $_[0]->children(qr/whatsapp helper process/); @l }
sub worker_pids { my @l = sort { $a <=> $b } $_[0]->children(qr/nginx: worker process/); @l }
sub error_log   { slurp("$_[0]{dir}/error.log") }

# {local port => [organizations]}: the WebSockets to server port $server_port the helpers logged as open, in
# order. A port comes back for another connection once the previous one closed (on loopback Linux reuses
# ports in TIME_WAIT), so the n-th opening the server saw from a port belongs to the n-th organization here.
sub ws_port_history {
    my ($self, $server_port) = @_;
    my ($log, %p) = ($self->error_log);
    # "open", or "closed during its upgrade" for one the helper gave up before reading the server's 101
    while ($log =~ m{whatsapp org=(\S+): WebSocket to wss?://[^/\s]+:(\d+)/\S* (?:open|closed during its upgrade) \(local port (\d+)\)}g) {
        push @{ $p{$3} }, $1 if $2 == $server_port;
    }
    return \%p;
}

# {local port => organization} of the latest WebSocket to $server_port logged from each port.
sub ws_ports {
    my ($self, $server_port) = @_;
    my $h = $self->ws_port_history($server_port);
    return { map { $_ => $h->{$_}[-1] } keys %$h };
}
sub access_log  { slurp("$_[0]{dir}/access.log") }

# HUP, then wait until a helper of a higher generation is active and the old helper is gone.
sub reload {
    my ($self, %o) = @_;
    my $h = $self->health;
    my $gen = $h->{helper}{generation} // 0;
    my $old = $h->{helper}{pid};
    kill 'HUP', $self->{pid} or croak "HUP: $!";
    my $ok = wait_until(sub {
        my $n = $self->health;
        # new_zone: the zone changed size, so the generation counter starts again in the new zone
        ($n->{helper}{state} // '') eq 'active' && ($o{new_zone} ? $n->{helper}{pid} != ($old // 0) : $n->{helper}{generation} > $gen)
            && !($old && alive($old)) ? $n : undef;
    }, $o{timeout} // 10);
    croak "reload: no new active helper (generation > $gen, old pid @{[ $old // '-' ]} gone)" unless $ok;
    return $ok;
}

# QUIT and wait for the master; returns seconds taken, or undef if it had to be killed.
sub quit {
    my ($self, %o) = @_;
    my $pid = delete $self->{pid} or return 0;
    my $t0 = time;
    kill 'QUIT', $pid;
    my $st = wait_exit($pid, $o{timeout} // 10);
    if (!defined $st) { kill_group($pid, 1); return undef }
    kill 'KILL', -$pid;
    return time - $t0;
}

# Quit, then fail the test if error.log holds [alert], [emerg] or [crit] lines not matched by $o{allow}.
sub stop {
    my ($self, %o) = @_;
    my $t = $self->quit;
    Test::More::ok(defined $t, "nginx exited on QUIT");
    $self->check_log(%o);
}

sub check_log {
    my ($self, %o) = @_;
    my @bad = grep { /\[(alert|emerg|crit)\]/ } split /\n/, $self->error_log;
    @bad = grep { $_ !~ $o{allow} } @bad if $o{allow};
    Test::More::ok(!@bad, "error.log has no [alert]/[emerg]/[crit]") or Test::More::diag(join "\n", @bad);
    # `make asan`: nginx runs with libasan preloaded; a report lands in its stderr.
    my $se = -f "$self->{dir}/stderr.log" ? slurp("$self->{dir}/stderr.log") : '';
    Test::More::unlike($se, qr/AddressSanitizer|LeakSanitizer/, 'no AddressSanitizer report') if $ENV{WA_ASAN} || $se =~ /Sanitizer/;
}

# ------------------------------------------------------------------------------------------------ TLS

sub openssl { my ($dir, @a) = @_; my ($rc, $out) = run_cmd(['openssl', @a], 30, "$dir/openssl.out"); die "openssl @a: $out" if $rc; }

# make_ca($dir, $name) -> {cert, key}
sub make_ca {
    my ($dir, $name) = @_;
    my %ca = (cert => "$dir/$name.pem", key => "$dir/$name.key");
    openssl($dir, qw(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2),
        -keyout => $ca{key}, -out => $ca{cert}, -subj => "/CN=$name test CA",
        -addext => 'basicConstraints=critical,CA:TRUE', -addext => 'keyUsage=critical,keyCertSign,cRLSign');
    return \%ca;
}

# make_cert($dir, $ca, $name, @san) -> {cert, key}; @san like ('DNS:localhost', 'IP:127.0.0.1')
sub make_cert {
    my ($dir, $ca, $name, @san) = @_;
    my %c = (cert => "$dir/$name.pem", key => "$dir/$name.key");
    my ($cn) = ($san[0] // 'DNS:localhost') =~ /:(.*)/;
    openssl($dir, qw(req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes),
        -keyout => $c{key}, -out => "$dir/$name.csr", -subj => "/CN=$cn");
    spew("$dir/$name.ext", "subjectAltName=" . join(',', @san) . "\nbasicConstraints=CA:FALSE\n"
        . "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
    openssl($dir, qw(x509 -req -days 2 -CAcreateserial), -in => "$dir/$name.csr", -CA => $ca->{cert},
        -CAkey => $ca->{key}, -out => $c{cert}, -extfile => "$dir/$name.ext");
    chmod 0644, $c{key};
    return \%c;
}

# ------------------------------------------------------------------------------------------------ END

END {
    my $status = $?;
    my $tb = Test::More->builder;
    kill_group($_, 1) for grep { waitpid($_, WNOHANG) == 0 } @BACKGROUND;
    for my $t (@INSTANCES) {
        if ($t->{pid}) { kill 'CONT', -$t->{pid}; kill 'QUIT', $t->{pid}; kill_group($t->{pid}, 5) if !defined wait_exit($t->{pid}, 5); kill 'KILL', -$t->{pid} }
        if (!$tb->is_passing || $ENV{TEST_NGINX_CATLOG}) {
            my $log = $t->error_log;
            $log = substr($log, -20000) if length $log > 20000;
            Test::More::diag("---- $t->{dir}/error.log ----\n$log") if length $log;
            Test::More::diag("(left in $t->{dir})") if $ENV{TEST_NGINX_LEAVE};
        }
    }
    for my $s (@SIMS) {
        kill_group($s->{pid}, 3) if $s->{pid};
        Test::More::diag("---- simulator log ----\n" . substr(slurp($s->{log}), -5000)) if !$tb->is_passing && $s->{log};
    }
    $? = $status;
}

# ------------------------------------------------------------------------------------------------ exact WS counter

package WaTest::WsCounter;
# A minimal ws:// server (forked, single select loop) that counts WebSockets at the TCP level: a connection
# counts as open from its 101 answer until its close frame or EOF. In every round the known connections are
# read before a new one is accepted, so a FIN that the kernel queued before a new SYN is always seen first:
# "max_open" is exactly what a server would see. Stats: $c->stats -> {open, max_open, total,
# close_codes => {1000 => n, 1001 => n, none => n (EOF without a close frame)}}. $c->events: every opening and
# closing in the order the server saw them, as [open|close, client port] (the helper logs its local port
# with each WebSocket it opens, which ties a connection to its organization).
use IO::Select;
use IO::Socket::INET;
use Digest::SHA qw(sha1);
use MIME::Base64 qw(encode_base64);

sub start {
    my ($class, $dir) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 128, ReuseAddr => 1)
        or die "WsCounter listen: $!";
    my $port = $l->sockport;
    my $file = "$dir/wscounter.$port";
    WaTest::spew($file, "0 0 0\n");
    WaTest::spew("$file.events", '');
    my $pid = WaTest::background(sub {
        open(my $ev, '>>', "$file.events") or die "$file.events: $!";
        $ev->autoflush(1);
        my (%c, %codes, $open, $max, $total);
        ($open, $max, $total) = (0, 0, 0);
        my $parent = getppid();
        while (getppid() == $parent) {
            my $sel = IO::Select->new($l, map { $_->{s} } values %c);
            my @r = $sel->can_read(0.5);
            my $changed = 0;
            # read everything first, then count the closes, then the upgrades (fd order is no time order)
            my @eof;
            for my $s (grep { $_ != $l } @r) {
                my $c = $c{ fileno $s } or next;
                my $n = sysread($s, my $buf, 65536);
                if ($n) { $c->{buf} .= $buf } else { push @eof, $c }
            }
            for my $c (values %c) {
                next unless $c->{up} == 1;
                # Walk the frames that arrived (a data frame may come in the same read as the close frame); a
                # frame cut short stays in buf for the next round.
                my ($buf, $close) = ($c->{buf});
                while (length $buf >= 2) {
                    my ($b0, $b1) = (ord($buf), ord(substr($buf, 1, 1)));
                    my ($len, $off) = ($b1 & 0x7f, 2);
                    if ($len == 126) { last if length $buf < 4; ($len, $off) = (unpack('n', substr($buf, 2, 2)), 4) }
                    elsif ($len == 127) { last if length $buf < 10; ($len, $off) = (unpack('Q>', substr($buf, 2, 8)), 10) }
                    my $mask = $b1 & 0x80 ? substr($buf, $off, 4) : '';
                    $off += 4 if $b1 & 0x80;
                    last if length $buf < $off + $len;
                    if (($b0 & 0x0f) == 8) {    # close frame: the code in the first two payload bytes
                        $close = substr($buf, $off, $len);
                        $close ^= substr($mask x (int($len / 4) + 1), 0, $len) if length $mask;
                        last;
                    }
                    $buf = substr($buf, $off + $len);
                }
                $c->{buf} = $buf;
                my $is_close = defined $close;
                if ($is_close) {
                    $codes{ length $close >= 2 ? unpack('n', $close) : 1005 }++;
                } elsif (grep { $_ == $c } @eof) {
                    $codes{none}++;    # closed without a close frame
                }
                if ($is_close || grep { $_ == $c } @eof) {
                    $c->{up} = 2;    # close frame or EOF: no longer counted
                    $open--;
                    $changed = 1;
                    print $ev "close $c->{port}\n";
                }
            }
            for my $c (values %c) {
                next unless !$c->{up} && $c->{buf} =~ /\r\n\r\n/;
                next if grep { $_ == $c } @eof;    # the client went away with its request: never a WebSocket
                my ($key) = $c->{buf} =~ /^Sec-WebSocket-Key:\s*(\S+)/mi;
                my $acc = encode_base64(sha1(($key // '') . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
                syswrite($c->{s}, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    . "Sec-WebSocket-Accept: $acc\r\n\r\n");
                $c->{up} = 1;
                $c->{buf} =~ s/^.*?\r\n\r\n//s;    # frames start after the upgrade request
                print $ev "open $c->{port}\n";
                $open++;
                $total++;
                $max = $open if $open > $max;
                $changed = 1;
            }
            $_->{up} == 2 and $_->{buf} = '' for values %c;
            for my $c (@eof) { delete $c{ fileno $c->{s} }; close $c->{s} }
            if (grep { $_ == $l } @r) {
                my $n = $l->accept;
                $c{ fileno $n } = { s => $n, buf => '', up => 0, port => $n->peerport } if $n;
            }
            if ($changed) {
                WaTest::spew("$file.tmp", "$open $max $total " . join(',', map { "$_:$codes{$_}" } sort keys %codes) . "\n");
                rename "$file.tmp", $file;
            }
        }
    });
    close $l;
    return bless { port => $port, file => $file, pid => $pid, url => "ws://127.0.0.1:$port/ws/chat" }, $class;
}

sub events { map { [ split ' ' ] } split /\n/, WaTest::slurp("$_[0]{file}.events") }

sub stats {
    my ($self) = @_;
    my ($open, $max, $total, $codes) = split ' ', WaTest::slurp($self->{file});
    my %codes = map { split /:/ } split /,/, $codes // '';
    return { open => $open // 0, max_open => $max // 0, total => $total // 0, close_codes => \%codes };
}

# ------------------------------------------------------------------------------------------------ simulator

package WaTest::Sim;
use Time::HiRes qw(time);

# WaTest::Sim->start($dir, tls => [cert, key], args => [simulator options], node_args => [node options])
#   -> {ws_url, control_url, root_key, ws_port, control_port}
sub start {
    my ($class, $dir, %o) = @_;
    my $bin = "$WaTest::ROOT/t/wa-sim/bin/wa-sim.mjs";
    my $n = scalar(@SIMS) + 1;
    my $log = "$dir/sim$n.log";
    my @argv = ('node', @{ $o{node_args} || [] }, $bin, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0');
    push @argv, '--tls', join(',', @{ $o{tls} }) if $o{tls};
    push @argv, @{ $o{args} } if $o{args};
    my ($pid, $out) = WaTest::spawn(argv => \@argv, pipe => 1, stderr => $log);
    my $self = bless { pid => $pid, log => $log }, $class;
    push @SIMS, $self;
    my $sel = IO::Select->new($out);
    my $line = '';
    my $end = time + 20;
    while ($line !~ /\n/ && time < $end && $sel->can_read($end - time)) {
        my $r = sysread($out, my $buf, 4096);
        last unless $r;
        $line .= $buf;
    }
    my $info = WaTest::json_dec((split /\n/, $line)[0] // '');
    die "wa-sim did not start:\n" . WaTest::slurp($log) unless $info && $info->{ws_url};
    $self->{out} = $out;    # keep the pipe open: the simulator must not get SIGPIPE
    %$self = (%$self, %$info);
    ($self->{ws_port}) = $info->{ws_url} =~ m{:(\d+)/};
    ($self->{control_port}) = $info->{control_url} =~ m{:(\d+)$};
    return $self;
}

sub control {
    my ($self, $method, $path, %o) = @_;
    return WaTest::http_request($self->{control_port}, $method, $path, %o);
}

sub stats {
    my ($self) = @_;
    my ($s, undef, $j) = $self->control(GET => '/stats', timeout => 5);
    die "wa-sim /stats answered $s" unless $s == 200 && $j;
    return $j;
}

sub reset { my ($s, undef, $j) = $_[0]->control(POST => '/stats/reset', body => {}); $j }

sub stop {
    my ($self) = @_;
    WaTest::kill_group(delete $self->{pid}, 3);
}

1;

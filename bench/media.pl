#!/usr/bin/env perl
# Benchmark (not a test): POST /api/send-media through the module to a 1-device simulated contact, against the
# simulator's HTTPS media host (issue 13). Prints and writes bench/out/media.md:
#   - wall time and helper CPU (from /proc) of one 2 MB and one 16 MB document (median of RUNS);
#   - peak helper RSS (VmRSS polled every 10 ms, and VmHWM) while 10 requests of 16 MB each run at once, against
#     its high-water mark before: the helper streams (two encryption passes of 64 KiB chunks), so the growth must
#     stay far below 160 MB; and the busiest worker's high-water mark and private memory (RssAnon, polled): workers
#     decode the base64 where it lies in the mapped body, into the spool file.
# The contact downloads and decrypts every file (Node), which shares the machine: times include that load.
#   RUNS=3 perl bench/media.pl
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../t/lib";
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(encode_base64);
use IO::Select;
use WaTest qw(wait_until);

my $RUNS = $ENV{RUNS} || 3;
my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir}, args => ['--media-dir', "$t->{dir}/media"]);
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_ssl_trusted_certificate $sim->{media_ca};\n    whatsapp_send_timeout 120s;\n"
    . "    whatsapp_send_rate 1000r/s burst=1000;", level => 'warn');
$t->start;
$t->api(POST => '/api/start-session', body => { organization_id => 'bench' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/bench'); $q && $q->{success} ? $q : undef }, 10) or die 'no QR';
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => '573006660001' });
wait_until(sub { ($t->status('bench')->{status} // '') eq 'connected' }, 10) or die 'not connected';
my $C = '573007770001';
$sim->control(POST => '/contacts', body => { phone => $C, devices => 1 });
sleep 2;
$t->api(POST => '/api/send-message', body => { organization_id => 'bench', phone => $C, message => 'hola' });

sub cpu_ticks { my ($pid) = @_; open(my $f, '<', "/proc/$pid/stat") or return 0; my @f = split ' ', <$f>; return $f[13] + $f[14] }
sub rss_kib { my ($pid) = @_; open(my $f, '<', "/proc/$pid/status") or return 0; while (my $l = <$f>) { return $1 if $l =~ /^VmRSS:\s+(\d+)/ } 0 }
sub anon_kib { my ($pid) = @_; open(my $f, '<', "/proc/$pid/status") or return 0; while (my $l = <$f>) { return $1 if $l =~ /^RssAnon:\s+(\d+)/ } 0 }
sub hwm_kib { my ($pid) = @_; open(my $f, '<', "/proc/$pid/status") or return 0; while (my $l = <$f>) { return $1 if $l =~ /^VmHWM:\s+(\d+)/ } 0 }
my $HZ = `getconf CLK_TCK` + 0 || 100;
my ($hp) = $t->helper_pids;
srand(7);
sub pdf { my $n = shift; my $b = "%PDF-1.4\n" . join('', map { pack 'N', int(rand(2**32)) } 1 .. int($n / 4) + 1); substr($b, 0, $n) }
sub body_for { my ($data) = @_; WaTest::json_enc({ organization_id => 'bench', phone => $C, type => 'document',
    data => encode_base64($data, ''), filename => 'bench.pdf', mimetype => 'application/pdf' }) }
sub median { my @s = sort { $a <=> $b } @_; $s[int(@s / 2)] }

my @rows;
for my $size (2 * 1024 * 1024, 16 * 1024 * 1024) {
    my $body = body_for(pdf($size));
    my (@wall, @cpu);
    for (1 .. $RUNS) {
        my $c0 = cpu_ticks($hp);
        my $t0 = time;
        my ($s, undef, $j) = $t->api(POST => '/api/send-media', body => $body, headers => { 'Content-Type' => 'application/json' }, timeout => 120);
        die "send-media $size: $s " . ($j->{code} // '') unless $s == 200;
        push @wall, time - $t0;
        push @cpu, (cpu_ticks($hp) - $c0) / $HZ;
        sleep 0.5;
    }
    push @rows, sprintf('| %d MB document | %.0f ms | %.0f ms |', $size / 1024 / 1024, median(@wall) * 1000, median(@cpu) * 1000);
    printf "%d MB: wall %.0f ms, helper CPU %.0f ms (median of %d)\n", $size / 1024 / 1024, median(@wall) * 1000, median(@cpu) * 1000, $RUNS;
}

# 10 concurrent 16 MB sends: requests written at once, helper RSS polled until every answer is in.
my $rss0 = hwm_kib($hp);    # the high-water mark so far (the 16 MB sends above included)
my @wp = $t->worker_pids;
my %w0 = map { $_ => hwm_kib($_) } @wp;
my %wpeak = %w0;
my %wanon = map { $_ => anon_kib($_) } @wp;
my $wanon0 = (sort { $b <=> $a } values %wanon)[0];
my $poll_workers = sub {
    for (@wp) {
        my $r = rss_kib($_);
        $wpeak{$_} = $r if $r > $wpeak{$_};
        my $anon_now = anon_kib($_);    # private memory: a mapped request body file is page cache, not counted here
        $wanon{$_} = $anon_now if $anon_now > $wanon{$_};
    }
};
my @bodies = map { body_for(pdf(16 * 1024 * 1024 - $_)) } 1 .. 10;
my @socks;
my $peak = $rss0;
for my $b (@bodies) {
    my $s = WaTest::http_raw($t->{port}, "POST /api/send-media HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-API-Key: $t->{key}\r\n"
        . "Content-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b", no_read => 1) or die 'connect';
    push @socks, $s;
    my $r = rss_kib($hp);
    $peak = $r if $r > $peak;
    $poll_workers->();
}
my $t0 = time;
my $sel = IO::Select->new(@socks);
my %resp;
while ($sel->count && time - $t0 < 300) {
    for my $s ($sel->can_read(0.01)) {
        my $n = sysread($s, my $buf, 65536);
        if ($n) { $resp{$s} .= $buf } else { $sel->remove($s); close $s }
    }
    my $r = rss_kib($hp);
    $peak = $r if $r > $peak;
    $poll_workers->();
}
# VmHWM (the kernel's high-water mark) catches peaks between two polls.
my $hwm = hwm_kib($hp);
$peak = $hwm if $hwm > $peak;
my $wgrow = 0;    # (now: the largest worker high-water mark)
for (@wp) { my $h = hwm_kib($_); $wpeak{$_} = $h if $h > $wpeak{$_}; $wgrow = $wpeak{$_} if $wpeak{$_} > $wgrow }
my $ok = grep { m{^HTTP/1.1 200} } values %resp;
my $el = time - $t0;
my $anon = (sort { $b <=> $a } values %wanon)[0];
printf "busiest worker's private memory (RssAnon, polled every 10 ms): %.1f MB before, peak %.1f MB\n", $wanon0 / 1024, $anon / 1024;
printf "10 x 16 MB at once: %d answered 200 in %.1f s; helper RSS %.1f MB before, peak %.1f MB (+%.1f MB); "
    . "busiest worker's peak RSS (VmHWM, all sends) %.1f MB (workers decode the bodies, one at a time each)\n",
    $ok, $el, $rss0 / 1024, $peak / 1024, ($peak - $rss0) / 1024, $wgrow / 1024;
mkdir "$Bin/out";
open(my $out, '>', "$Bin/out/media.md") or die;
print $out "| send-media | wall (median of $RUNS) | helper CPU |\n|---|---|---|\n", join("\n", @rows), "\n\n";
printf $out "10 concurrent 16 MB sends: %d/10 answered 200 in %.1f s; helper RSS %.1f MB before, peak %.1f MB (+%.1f MB); "
    . "busiest worker's peak RSS %.1f MB, its private memory (RssAnon, polled) %.1f MB before, peak %.1f MB.\n",
    $ok, $el, $rss0 / 1024, $peak / 1024, ($peak - $rss0) / 1024, $wgrow / 1024, $wanon0 / 1024, $anon / 1024;
close $out;
$t->stop;

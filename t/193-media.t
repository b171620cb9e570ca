# Documents and images end to end against the simulator's media host (issue 13): POST /api/send-media (JSON with
# base64 and multipart/form-data) → media_conn → streamed encryption and HTTPS upload verified against the test CA
# → DocumentMessage / ImageMessage to a 2-device contact, whose devices download, verify and decrypt it to the
# original SHA-256; 413 over whatsapp_max_media_size, 400 on a type contradicted by magic bytes, an upload host that
# refuses, stalls or answers garbage, and kill -9 of the helper mid-upload. No spool file may be left behind.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64);
use IO::Socket::INET;
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
# A webhook receiver (as in t/180): each request's body as one line of hooks.log.
my $hook_port = WaTest::free_port();
WaTest::background(sub {
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $hook_port, Listen => 64, ReuseAddr => 1) or die "listen: $!";
    while (my $c = $srv->accept) {
        my $buf = '';
        while ($buf !~ /\r\n\r\n/) { my $r = sysread($c, $buf, 65536, length $buf); last unless $r; }
        my ($head, $body) = split /\r\n\r\n/, $buf, 2;
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        while (length($body // '') < ($len // 0)) { my $r = sysread($c, $body, 65536, length $body); last unless $r; }
        open(my $fh, '>>', "$t->{dir}/hooks.log") or die;
        print $fh ($body // ''), "\n";
        close $fh;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        close $c;
    }
});
my $sim = WaTest::Sim->start($t->{dir}, args => ['--media-dir', "$t->{dir}/media"]);
ok($sim->{media_ca} && -f $sim->{media_ca}, 'the simulator runs a media host with a test CA');
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_ssl_trusted_certificate $sim->{media_ca};\n"
    . "    whatsapp_webhook http://127.0.0.1:$hook_port/hook events=message.received;\n"
    . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_send_rate 600r/m burst=300;\n    whatsapp_send_timeout 8s;");
$t->start;
my $spool = "$t->{state_dir}/spool";

my $ACCOUNT = '573001112233';
$t->api(POST => '/api/start-session', body => { organization_id => 'o1' });
my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => '/api/qr/o1'); $q && $q->{success} ? $q : undef }, 10);
$sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $ACCOUNT });
ok(wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10), 'o1 linked') or BAIL_OUT('no link');
wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);
my $C1 = '573009990001';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 2, name => 'Ana' });

sub spool_files { opendir(my $d, $spool) or return (); my @f = grep { !/^\./ } readdir $d; closedir $d; @f }
sub media_inbox {
    my ($phone, $id) = @_;
    my (undef, undef, $j) = $sim->control(GET => "/contacts/$phone/inbox");
    return [ grep { ($_->{id} // '') eq $id && $_->{media} } @{ ref $j eq 'ARRAY' ? $j : [] } ];
}
sub downloaded {    # both devices done downloading (ok or error)
    my ($phone, $id) = @_;
    wait_until(sub { my $m = media_inbox($phone, $id); @$m >= 2 && !grep({ $_->{media}{status} eq 'downloading' } @$m) ? $m : undef }, 15);
}
sub send_media {
    my (%b) = @_;
    return $t->api(POST => '/api/send-media', body => { organization_id => 'o1', %b }, timeout => 30);
}
sub multipart {
    my ($fields, $file, $fname, $ctype) = @_;
    my $b = 'wa-test-' . int(rand(1e9));
    my $body = '';
    $body .= "--$b\r\nContent-Disposition: form-data; name=\"$_\"\r\n\r\n$fields->{$_}\r\n" for sort keys %$fields;
    $body .= "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"$fname\"\r\nContent-Type: $ctype\r\n\r\n$file\r\n--$b--\r\n";
    return $t->api(POST => '/api/send-media', body => $body, timeout => 30,
        headers => { 'Content-Type' => "multipart/form-data; boundary=$b" });
}
srand(13);
sub random_bytes { my $n = shift; join '', map { pack 'N', int(rand(2**32)) } 1 .. int(($n + 3) / 4) }

# --------------------------------------------------------------------------------- a 2 MB PDF to 2 devices
my $pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n" . random_bytes(2 * 1024 * 1024);
$pdf = substr($pdf, 0, 2 * 1024 * 1024);
my $t0 = time;
my ($st, undef, $j) = send_media(phone => $C1, type => 'document', data => encode_base64($pdf, ''), filename => 'comprobante.pdf',
    mimetype => 'application/pdf', caption => 'Envío de comprobante');
is($st, 200, sprintf('send-media: a 2 MB PDF, 200 after the server ack (%.2f s)', time - $t0)) or diag explain $j;
is($j->{status}, 'sent', 'status sent');
like($j->{message_id} // '', qr/^3EB0[0-9A-F]{18}$/, 'a message id');
my $pdf_id = $j->{message_id} // '';
my $got = downloaded($C1, $pdf_id);
ok($got, "both of the contact's devices received the document") or diag explain media_inbox($C1, $pdf_id);
for my $m (@{ $got // [] }) {
    is($m->{media}{status}, 'ok', "device $m->{device}: downloaded, mac and hashes verified") or diag explain $m->{media};
    is($m->{media}{sha256}, sha256_hex($pdf), "device $m->{device}: the original SHA-256");
    is($m->{media}{size}, length $pdf, "device $m->{device}: the original size");
    is($m->{media}{type}, 'document', 'type document');
    is($m->{media}{filename}, 'comprobante.pdf', 'filename');
    is($m->{media}{mimetype}, 'application/pdf', 'mimetype');
    is($m->{media}{caption}, 'Envío de comprobante', 'caption');
}
{
    my $copy = wait_until(sub {
        my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT");
        my ($c) = grep { ($_->{id} // '') eq $pdf_id && $_->{media} && $_->{media}{status} ne 'downloading' } @{ $a->{phone_inbox} // [] };
        $c;
    }, 15);
    ok($copy && ($copy->{media}{sha256} // '') eq sha256_hex($pdf), "the account's phone got the copy with the same SHA-256");
    my $s = wait_until(sub { my (undef, undef, $m) = $t->api(GET => "/api/messages/o1/$pdf_id"); ($m->{status} // '') eq 'read' ? $m : undef }, 5);
    ok($s, 'status follows the receipts: read');
    is($s->{type}, 'document', 'GET /api/messages/:org/:id: type document') if $s;
}
is_deeply([ spool_files() ], [], 'no spool file left');
{
    my (undef, undef, $m) = $sim->control(GET => '/media');
    my ($up) = grep { ($_->{status} // 0) == 200 } @{ $m->{uploads} // [] };
    is($up->{origin}, 'https://web.whatsapp.com', 'uploaded with the Origin of WhatsApp Web') if $up;
}

# ------------------------------------------------------------------------ JSON as PHP writes it ('/' escaped as '\/')
# The worker decodes the base64 where it lies in the (mapped) body, unescaping as it goes: same file, same hash.
{
    my $doc = "%PDF-1.4\n" . random_bytes(300 * 1024);
    (my $b64 = encode_base64($doc, '')) =~ s{/}{\\/}g;
    my $body = qq({"organization_id":"o1","phone":"$C1","type":"document","filename":"php.pdf","data":"$b64"});
    my ($ps, undef, $pj) = $t->api(POST => '/api/send-media', body => $body, timeout => 30,
        headers => { 'Content-Type' => 'application/json' });
    is($ps, 200, sprintf('a body with \\/ escapes (%d of them, %d bytes): 200', ($b64 =~ tr{\\}{}), length $body)) or diag explain $pj;
    my $m = downloaded($C1, $pj->{message_id} // '');
    is_deeply([ map { $_->{media}{sha256} } @{ $m // [] } ], [ sha256_hex($doc), sha256_hex($doc) ], 'both devices: the original SHA-256');
}

# ---------------------------------------------------------------------------- a 3-page PDF: its page count
# Read off the helper's first pass over the file (wa/media/pdf.hpp): DocumentMessage.pageCount 3, which the
# contact's devices decode. The 2 MB "PDF" above has no page objects: no count.
{
    my $three = "%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >>\nendobj\n"
        . join('', map { "$_ 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n" } 3 .. 5)
        . "xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n9\n%%EOF\n";
    my ($ps, undef, $pj) = send_media(phone => $C1, type => 'document', data => encode_base64($three, ''), filename => 'factura.pdf');
    is($ps, 200, 'a 3-page PDF: 200') or diag explain $pj;
    my $m = downloaded($C1, $pj->{message_id} // '');
    is_deeply([ map { $_->{media}{page_count} } @{ $m // [] } ], [3, 3], 'both devices: pageCount 3');
    is_deeply([ map { $_->{media}{page_count} } @{ media_inbox($C1, $pdf_id) } ], [undef, undef], 'the 2 MB file without page objects: no pageCount');
}

# --------------------------------------------------------------------------------- a JPEG, multipart
my $jpeg = WaTest::slurp("$WaTest::ROOT/t/data/frames.jpg");    # 800×600, made with libjpeg (thumbnail.cpp)
($st, undef, $j) = multipart({ organization_id => 'o1', phone => $C1, type => 'image', caption => 'Montura' }, $jpeg, 'foto.jpg', 'image/jpeg');
is($st, 200, 'send-media multipart/form-data: a JPEG, 200') or diag explain $j;
$got = downloaded($C1, $j->{message_id} // '');
ok($got, 'both devices received the image');
for my $m (@{ $got // [] }) {
    is($m->{media}{status}, 'ok', "device $m->{device}: verified") or diag explain $m->{media};
    is($m->{media}{sha256}, sha256_hex($jpeg), "device $m->{device}: the original SHA-256");
    is($m->{media}{type}, 'image', 'type image');
    is($m->{media}{mimetype}, 'image/jpeg', 'mimetype from the part');
    ok(($m->{media}{thumbnail_bytes} // 0) > 100, "with a JPEG thumbnail ($m->{media}{thumbnail_bytes} bytes)");
    is("$m->{media}{width}x$m->{media}{height}", '800x600', 'and the dimensions');
}
is_deeply([ spool_files() ], [], 'no spool file left');

# --------------------------------------------------------------------------------- a PNG with transparency, JSON
{
    # 400x200 RGBA written here (zlib, CRC32): the top half opaque blue, the bottom half transparent
    require Compress::Zlib;
    my ($w, $h) = (400, 200);
    my $raw = join '', map { "\0" . ($_ < $h / 2 ? "\x20\x40\xC0\xFF" : "\0\0\0\0") x $w } 0 .. $h - 1;
    my $chunk = sub { my ($type, $data) = @_; pack('N', length $data) . $type . $data . pack('N', Compress::Zlib::crc32($type . $data)) };
    my $png = "\x89PNG\r\n\x1A\n" . $chunk->('IHDR', pack('NNCCCCC', $w, $h, 8, 6, 0, 0, 0))
        . $chunk->('IDAT', Compress::Zlib::compress($raw)) . $chunk->('IEND', '');
    ($st, undef, $j) = $t->api(POST => '/api/send-media', timeout => 30, body => { organization_id => 'o1', phone => $C1,
        type => 'image', data => encode_base64($png, ''), mimetype => 'image/png', filename => 'captura.png' });
    is($st, 200, 'send-media: a PNG image, 200') or diag explain $j;
    my $pg = downloaded($C1, $j->{message_id} // '');
    ok($pg, 'both devices received the PNG');
    for my $m (@{ $pg // [] }) {
        is($m->{media}{sha256}, sha256_hex($png), "device $m->{device}: the original SHA-256");
        ok(($m->{media}{thumbnail_bytes} // 0) > 100, "with a JPEG thumbnail made from the PNG ($m->{media}{thumbnail_bytes} bytes)");
        is("$m->{media}{width}x$m->{media}{height}", '400x200', 'and the dimensions');
    }
    is_deeply([ spool_files() ], [], 'no spool file left');
}

# --------------------------------------------------------------------------------- a retry receipt for a document
{
    my ($fs) = $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'retry_request', target => 'contact', device => 1, times => 1 });
    is($fs, 200, "the contact's device 1 will ask for a retry");
    my $small = "%PDF-1.3\n" . random_bytes(20_000);
    my ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64($small, ''), filename => 'otra.pdf');
    is($s, 200, 'send-media: 200');
    my $g = downloaded($C1, $x->{message_id} // '');
    my ($d1) = grep { $_->{device} == 1 } @{ $g // [] };
    ok($d1 && $d1->{media}{status} eq 'ok' && $d1->{media}{sha256} eq sha256_hex($small),
        'device 1 got the document on the resend (the message with its media key is kept for that)') or diag explain $g;
    ok(($sim->stats->{retry_receipts_sent} // 0) >= 1, 'after the simulator sent a retry receipt');
}

# --------------------------------------------------------------------------------- received documents and images
sub media_get {
    my ($id) = @_;
    my ($s, $h, undef, $raw) = $t->api(GET => "/api/messages/o1/$id/media", timeout => 20);
    return ($s, $h, $raw);
}
{
    my $doc = "%PDF-1.7\n" . random_bytes(400_000);
    my ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", timeout => 30, body => { to => $ACCOUNT,
        media => { type => 'document', data => encode_base64($doc, ''), filename => 'factura 7.pdf', mimetype => 'application/pdf' } });
    is($cs, 200, 'a contact sent a document') or diag explain $cj;
    my $id = $cj->{id} // '';
    my ($s, $h, $raw);
    wait_until(sub { ($s, $h, $raw) = media_get($id); $s == 200 }, 15);
    is($s, 200, 'GET /api/messages/:org/:id/media: 200');
    is($h->{'content-type'}, 'application/pdf', 'with the mimetype');
    ok(defined $raw && $raw eq $doc, 'byte-exact (' . length($raw // '') . ' bytes)');
    like($h->{'content-disposition'} // '', qr/filename="factura_7\.pdf"/, 'the file name, made safe');
    my $ev = wait_until(sub {
        my ($e) = grep { ($_->{data}{id} // '') eq $id } map { WaTest::json_dec($_) // () } split /\n/, WaTest::slurp("$t->{dir}/hooks.log");
        $e;
    }, 10);
    is($ev->{data}{type}, 'document', 'the message.received webhook: type document');
    is($ev->{data}{media_path}, "/api/messages/o1/$id/media", 'with media_path, the route that serves the file');
    my $img = "\x89PNG\r\n\x1A\n\0\0\0\rIHDR" . random_bytes(50_000);
    ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", timeout => 30, body => { to => $ACCOUNT,
        media => { type => 'image', data => encode_base64($img, ''), mimetype => 'image/png' } });
    my $iid = $cj->{id} // '';
    wait_until(sub { ($s, $h, $raw) = media_get($iid); $s == 200 }, 15);
    ok($s == 200 && $raw eq $img && $h->{'content-type'} eq 'image/png', 'a received image too, byte-exact, image/png');
    # A blob altered on the host: the checks (fileEncSha256, mac) keep it out.
    $sim->control(POST => '/media/fault', body => { type => 'corrupt', on => 'download', times => 1 });
    ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", timeout => 30, body => { to => $ACCOUNT,
        media => { type => 'document', data => encode_base64($doc . 'x', ''), filename => 'b.pdf', mimetype => 'application/pdf' } });
    my $bid = $cj->{id} // '';
    ok(wait_until(sub { $t->error_log =~ /media of message \Q$bid\E not stored: (fileEncSha256|media mac) mismatch/ }, 15),
        'a corrupted download is refused (fileEncSha256 checked)') or diag $t->error_log;
    ($s) = media_get($bid);
    is($s, 404, 'and not served: 404');
    $sim->control(POST => '/media/fault', body => { type => 'clear' });
    ($s) = media_get('3EB0000000000000000000');
    is($s, 404, 'an unknown message: 404');
    my @left = grep { /\.part$/ } glob("$t->{state_dir}/media/o1/*");
    is_deeply(\@left, [], 'no partial download left');
}

# --------------------------------------------------------------------------------- refusals before any upload
{
    my $png = "\x89PNG\r\n\x1A\n\0\0\0\rIHDR" . random_bytes(100);
    my ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64($png, ''), filename => 'a.pdf', mimetype => 'application/pdf');
    is($s, 400, 'a PNG declared as application/pdf: 400');
    is($x->{code}, 'invalid_media', 'invalid_media');
    ($s, undef, $x) = send_media(phone => $C1, type => 'image', data => encode_base64("a,b\n1,2\n", ''), mimetype => 'text/csv');
    is($s, 400, 'a CSV sent as an image: 400');
    ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64("qty,item\n2,lens\n", ''), filename => 'pedido.csv', mimetype => 'text/csv');
    is($s, 200, 'a CSV document (no magic bytes): 200') or diag explain $x;
    ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => 'not base64!', filename => 'x.pdf');
    is($x->{code}, 'invalid_media', 'data that is not base64: invalid_media');
    ($s, undef, $x) = send_media(phone => 'abc', type => 'document', data => encode_base64($pdf, ''));
    is($x->{code}, 'invalid_phone', 'the phone is validated as for send-message');
    ($s, undef, $x) = send_media(phone => $C1, type => 'video', data => encode_base64($pdf, ''));
    is($s, 400, 'type video: 400');
    ($s, undef, $x) = $t->api(POST => '/api/send-media', body => 'x', headers => { 'Content-Type' => 'text/plain' });
    is($s, 415, 'another content type: 415');
    my $big = 'x' x (16 * 1024 * 1024 + 1);
    ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64($big, ''), filename => 'big.txt', mimetype => 'text/plain');
    is($s, 413, '16m + 1 bytes: 413');
    is($x->{code}, 'media_too_large', 'media_too_large');
    ($s, undef, $x) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => $C1, message => 'y' x 70000 });
    is($s, 413, 'send-message keeps whatsapp_max_body');
    is_deeply([ spool_files() ], [], 'no spool file left');
}

# --------------------------------------------------------------------------------- a host that refuses, stalls, garbles
for my $case (['refuse', 'upload_refused', { code => 503 }], ['garbage', 'upload_bad_response', {}], ['stall', 'upload_timeout', {}]) {
    my ($fault, $code, $extra) = @$case;
    $sim->control(POST => '/media/fault', body => { type => $fault, on => 'upload', times => 1, %$extra });
    my $t1 = time;
    my ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64(substr($pdf, 0, 300_000), ''), filename => 'r.pdf');
    is($s, 502, sprintf('upload host %s: 502 (%.1f s)', $fault, time - $t1));
    is($x->{code}, $code, $code) or diag explain $x;
    like($x->{message_id} // '', qr/^3EB0/, 'with the message id');
    my (undef, undef, $m) = $t->api(GET => "/api/messages/o1/" . ($x->{message_id} // 'none'));
    is($m->{status}, 'failed', 'the message is failed');
    is_deeply([ spool_files() ], [], 'no spool file left');
    $sim->control(POST => '/media/fault', body => { type => 'clear' });
}

# --------------------------------------------------------------------------------- kill -9 of the helper mid-upload
{
    $sim->control(POST => '/media/fault', body => { type => 'stall', on => 'upload' });
    my $body = WaTest::json_enc({ organization_id => 'o1', phone => $C1, type => 'document', data => encode_base64($pdf, ''),
        filename => 'receta.pdf', mimetype => 'application/pdf', idempotency_key => 'media-kill-1' });
    my $sock = WaTest::http_raw($t->{port}, "POST /api/send-media HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "X-API-Key: $t->{key}\r\nContent-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body", no_read => 1);
    ok(wait_until(sub { my (undef, undef, $m) = $sim->control(GET => '/media'); ($m->{stalled} // 0) > 0 }, 10), 'the upload is under way (stalled)');
    ok(scalar(spool_files()) >= 1, 'its spool file exists meanwhile');
    my ($helper) = $t->helper_pids;
    kill 'KILL', $helper;
    ok(wait_until(sub { my @h = $t->helper_pids; @h == 1 && $h[0] != $helper }, 15), 'a new helper took over');
    ok(wait_until(sub { !spool_files() }, 12), 'no spool file after the restart (removed once 5 s old)') or diag explain [ spool_files() ];
    close $sock;
    $sim->control(POST => '/media/fault', body => { type => 'clear' });
    ok(wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 15), 'o1 connected again');
    my ($s, undef, $x) = send_media(phone => $C1, type => 'document', data => encode_base64($pdf, ''), filename => 'receta.pdf',
        mimetype => 'application/pdf', idempotency_key => 'media-kill-1');
    is($s, 200, 'the idempotent retry: 200') or diag explain $x;
    my $id = $x->{message_id} // '';
    my $g = downloaded($C1, $id);
    ok($g, 'delivered');
    is(scalar(grep { $_->{device} == 0 } @{ $g // [] }), 1, 'sent once (one copy on device 0)');
    is(($g // [])->[0]{media}{sha256}, sha256_hex($pdf), 'with the original SHA-256') if $g;
    my ($s2, undef, $x2) = send_media(phone => $C1, type => 'document', data => encode_base64($pdf, ''), filename => 'receta.pdf',
        mimetype => 'application/pdf', idempotency_key => 'media-kill-1');
    is($x2->{message_id}, $id, 'a further retry: the same message id');
    sleep 0.5;
    is(scalar(grep { $_->{device} == 0 } @{ media_inbox($C1, $id) }), 1, 'still sent once');
    is_deeply([ spool_files() ], [], 'no spool file left');
}

unlike($t->error_log, qr/auth=|mediaKey|media_key/i, 'no media auth or key in the error log');
{
    my @stored = glob("$t->{state_dir}/media/o1/*");
    ok(@stored >= 2, 'received media is stored under the state directory (' . scalar(@stored) . ' files)');
    my @modes = map { (stat $_)[2] & 07777 } @stored;
    is_deeply([ grep { $_ != 0600 } @modes ], [], 'each file 0600');
    $t->api(POST => '/api/logout', body => { organization_id => 'o1' }, timeout => 20);
    my ($s) = $t->api(POST => '/api/purge', body => { organization_id => 'o1' }, timeout => 20);
    is($s, 200, 'purge after logout: 200');
    ok(!-e "$t->{state_dir}/media/o1", "purge removed the organization's media");
}
$t->stop(allow => $WaTest::KILLED);
done_testing;

# Messages end to end against the simulator: text to a 2-device contact (LID first), the deviceSentMessage copy
# on the account's phone, status sent → delivered → read, receiving, idempotency, not on WhatsApp, ack errors
# and the restriction that follows, a send during a 515 reconnect, retry receipts, sessions kept across restarts.
use strict;
use warnings;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use WaTest qw(wait_until);

my $t = WaTest->new;
my $sim = WaTest::Sim->start($t->{dir});
$t->write_conf(http => "whatsapp_server $sim->{ws_url};\n    whatsapp_root_key $sim->{root_key};\n"
    . "    whatsapp_reconnect_backoff 1s 2s;\n    whatsapp_send_rate 600r/m burst=300;\n    whatsapp_send_timeout 10s;");
$t->start;

my $ACCOUNT = '573001112233';
sub link_org {
    my ($org, $phone) = @_;
    $t->api(POST => '/api/start-session', body => { organization_id => $org });
    my $qr = wait_until(sub { my (undef, undef, $q) = $t->api(GET => "/api/qr/$org"); $q && $q->{success} ? $q : undef }, 10);
    my ($st) = $sim->control(POST => '/scan', body => { qr => $qr->{qr_text}, phone => $phone });
    die "scan $st" unless $st == 200;
    wait_until(sub { ($t->status($org)->{status} // '') eq 'connected' }, 10) or die "$org not connected";
    # the first login uploads 812 prekeys; let it settle
    wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$phone"); ($a->{devices}[0]{prekeys} // 0) >= 812 }, 10);
}
sub inbox {
    my ($phone) = @_;
    my (undef, undef, $j) = $sim->control(GET => "/contacts/$phone/inbox");
    return ref $j eq 'ARRAY' ? $j : [];
}
sub send_msg {
    my (%b) = @_;
    my %h;
    $h{'Idempotency-Key'} = delete $b{key} if $b{key};
    return $t->api(POST => '/api/send-message', body => { organization_id => 'o1', %b }, headers => \%h, timeout => 20);
}

link_org('o1', $ACCOUNT);
my $C1 = '573009990001';
$sim->control(POST => '/contacts', body => { phone => $C1, devices => 2, name => 'Ana' });

# ---------------------------------------------------------------------------------------------- a text to 2 devices
my $text = "Hola 👋 ¿cómo está? ñandú\nCita: mañana 10:00";
my $t0 = time;
my ($st, undef, $j) = send_msg(phone => '3009990001', message => $text);
my $el = time - $t0;
is($st, 200, sprintf('send-message: 200 after the server ack (%.2f s)', $el)) or diag explain $j, $t->error_log;
ok($j->{success}, 'success');
like($j->{message_id} // '', qr/^3EB0[0-9A-F]{18}$/, "message id in WhatsApp's format ($j->{message_id})");
is($j->{to}, $C1, 'to: E.164 digits (national number with the CO region)');
is($j->{status}, 'sent', 'status sent');
my $id = $j->{message_id};
my $got = wait_until(sub { my $in = inbox($C1); my @m = grep { $_->{id} eq ($id // '') } @$in; @m >= 2 ? \@m : undef }, 5);
ok($got, 'both contact devices received it') or diag explain inbox($C1);
is_deeply([ sort map { $_->{device} } @{ $got // [] } ], [ 0, 1 ], 'devices 0 and 1') if $got;
is(scalar(grep { ($_->{text} // '') eq $text } @{ $got // [] }), 2, 'both hold the exact text (emoji, accents, newline)');
my @lid = grep { ($_->{addressing} // '') eq 'lid' } @{ $got // [] };
is(scalar @lid, 2, 'addressed by LID (whatsmeow), with the phone number alongside') or diag explain $got;
my (undef, undef, $acct) = $sim->control(GET => "/accounts/$ACCOUNT");
my ($copy) = grep { ($_->{id} // '') eq ($id // '') } @{ $acct->{phone_inbox} // [] };
ok($copy && $copy->{dsm}, "the account's phone got the deviceSentMessage copy") or diag explain $acct->{phone_inbox};
is($copy->{text}, $text, 'with the same text') if $copy;
my $s = wait_until(sub { my (undef, undef, $m) = $t->api(GET => "/api/messages/o1/$id"); ($m->{status} // '') eq 'read' ? $m : undef }, 5);
ok($s, 'status follows the receipts: read');
ok($s->{sent_at} && $s->{delivered_at} && $s->{read_at}, 'sent_at, delivered_at and read_at set') if $s;
($st, undef, $j) = $t->api(GET => '/api/messages/o1/3EB0000000000000000000');
is($st, 404, 'an unknown message id: 404');

# ---------------------------------------------------------------------------------------------- receiving
{
    my ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => 'Confirmo ✅' });
    is($cs, 200, 'the contact sent a message');
    my $in = wait_until(sub {
        my (undef, undef, $l) = $t->api(GET => '/api/messages/o1?direction=in');
        my ($m) = grep { $_->{message_id} eq $cj->{id} } @{ $l->{items} // [] };
        $m;
    }, 5);
    ok($in, 'stored and readable with GET /api/messages/:org?direction=in');
    is($in->{text}, 'Confirmo ✅', 'exact text') if $in;
    my (undef, undef, $c) = $sim->control(GET => "/contacts/$C1");
    my ($rec) = grep { $_->{id} eq $cj->{id} } @{ $c->{sent} // $c->{messages} // [] };
    ok($rec && @{ $rec->{delivered} // [] }, 'the contact got our receipt (sent after the message was stored)') or diag explain $c;
}

# ---------------------------------------------------------------------------------------------- idempotency
{
    my ($a1, undef, $j1) = send_msg(phone => $C1, message => 'Recordatorio', key => 'idem-1');
    my ($a2, undef, $j2) = send_msg(phone => $C1, message => 'Recordatorio', key => 'idem-1');
    is($a1, 200, 'first request with an Idempotency-Key: 200');
    is($a2, 200, 'the retried request: 200');
    is($j2->{message_id}, $j1->{message_id}, 'the same message id');
    sleep 0.3;
    my @n = grep { $_->{id} eq $j1->{message_id} && $_->{device} == 0 } @{ inbox($C1) };
    is(scalar @n, 1, 'sent once');
    my ($a3, undef, $j3) = send_msg(phone => $C1, message => 'Otro texto', key => 'idem-1');
    is($a3, 409, 'the same key with another body: 409');
    is($j3->{code}, 'idempotency_conflict', 'idempotency_conflict');
    my ($a4, undef, $j4) = $t->api(POST => '/api/send-message', body => { organization_id => 'o1', phone => $C1, message => 'Recordatorio', idempotency_key => 'idem-1' });
    is($j4->{message_id}, $j1->{message_id}, 'idempotency_key in the body works the same');
}

# ---------------------------------------------------------------------------------------------- not on WhatsApp
{
    my ($a, undef, $x) = send_msg(phone => '573005550000', message => 'hola');
    is($a, 422, 'a number without WhatsApp: 422');
    is($x->{code}, 'not_on_whatsapp', 'not_on_whatsapp');
    my ($c, undef, $cj) = $t->api(GET => '/api/contacts/o1/573005550000');
    is($c, 200, 'contacts lookup: 200');
    ok(!$cj->{on_whatsapp}, 'on_whatsapp false');
    ($c, undef, $cj) = $t->api(GET => "/api/contacts/o1/$C1");
    ok($cj->{on_whatsapp}, 'a contact: on_whatsapp true');
    like($cj->{lid} // '', qr/\@lid$/, "with its LID ($cj->{lid})");
}

# ---------------------------------------------------------------------------------------------- a send during a 515
{
    $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'stream_error', code => 515 });
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'durante el reinicio');
    is($a, 200, 'a send while the session restarts (515) waits for it and is sent, not 409') or diag explain $x;
    ok(wait_until(sub { grep { $_->{id} eq ($x->{message_id} // '') } @{ inbox($C1) } }, 5), 'and delivered');
}

# ---------------------------------------------------------------------------------------------- retry receipts
{
    # a contact message whose ciphertext is corrupted: we ask for a retry, the resend decrypts
    $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'bad_ciphertext' });
    my ($cs, undef, $cj) = $sim->control(POST => "/contacts/$C1/send", body => { to => $ACCOUNT, text => 'segundo intento' });
    my $m = wait_until(sub { my (undef, undef, $x) = $t->api(GET => "/api/messages/o1/$cj->{id}"); $x && $x->{success} ? $x : undef }, 8);
    ok($m, 'corrupted ciphertext → retry receipt → decrypted on the resend');
    is($m->{text}, 'segundo intento', 'the resend holds the text') if $m;
    ok($sim->stats->{retry_receipts_received} >= 1, 'the simulator got our retry receipt');
}

# ---------------------------------------------------------------------------------------------- retry receipts from a recipient
{
    # the contact's device 1 refuses the next message twice (counts 1 and 2, <keys> on 2): we resend to it alone
    my ($fs, undef, $fj) = $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'retry_request', target => 'contact', device => 1, times => 2 });
    is($fs, 200, 'the contact device 1 will ask for two retries') or diag explain $fj;
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'reintento');
    is($a, 200, 'send: 200');
    my $e = wait_until(sub { my ($m) = grep { $_->{id} eq ($x->{message_id} // '') && $_->{device} == 1 } @{ inbox($C1) }; $m }, 8);
    ok($e, 'after two retry receipts, device 1 decrypted our resend') or diag explain inbox($C1);
    is($e->{text}, 'reintento', 'with the text') if $e;
    my (undef, undef, $c) = $sim->control(GET => "/contacts/$C1");
    ok(($sim->stats->{retry_receipts_sent} // 0) >= 2, 'the simulator sent the retry receipts');
}

# ---------------------------------------------------------------------------------------------- prekey top-up
{
    my (undef, undef, $a0) = $sim->control(GET => "/accounts/$ACCOUNT");
    my ($fs) = $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'drain_prekeys', keep => 2 });
    is($fs, 200, 'the server says our prekey stock is low (2 left)');
    my $n = wait_until(sub { my (undef, undef, $a) = $sim->control(GET => "/accounts/$ACCOUNT"); my ($d) = grep { $_->{id} == 1 } @{ $a->{devices} }; ($d->{prekeys} // 0) >= 52 ? $d->{prekeys} : undef }, 5);
    is($n, 52, 'we uploaded 50 more (whatsmeow prekeys.go WantedPreKeyCount)');
}

# ---------------------------------------------------------------------------------------------- restart reuses sessions
{
    my $stock = sub { my (undef, undef, $c) = $sim->control(GET => "/contacts/$C1"); join ',', map { $_->{prekeys} } @{ $c->{devices} // [] } };
    my $before = $stock->();
    $t->quit;
    $t->start;
    ok(wait_until(sub { ($t->status('o1')->{status} // '') eq 'connected' }, 10), 'connected again after an nginx restart');
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'después del reinicio');
    is($a, 200, 'send after the restart: 200');
    my $got2 = wait_until(sub { my @m = grep { $_->{id} eq ($x->{message_id} // '') } @{ inbox($C1) }; @m >= 2 ? \@m : undef }, 5);
    is(scalar(@{ $got2 // [] }), 2, 'both devices got it');
    is($stock->(), $before, 'no prekey bundle was fetched again: the stored Signal sessions were reused');
    my ($d0) = grep { $_->{device} == 0 } @{ $got2 // [] };
    is($d0->{type}, 'msg', 'the device that has answered us gets a msg (an established session), not a pkmsg') if $d0;
}

# ---------------------------------------------------------------------------------------------- PN and LID addressing
{
    my ($a, undef, $x) = $t->api(GET => "/api/contacts/o1/$C1");
    my ($b, undef, $y) = send_msg(jid => $x->{lid}, message => 'por LID');
    is($b, 200, 'send to a JID as given (the LID): 200') or diag explain $y;
    ok(wait_until(sub { grep { $_->{id} eq ($y->{message_id} // '') } @{ inbox($C1) } }, 5), 'delivered');
}

# ---------------------------------------------------------------------------------------------- privacy tokens
{
    my $iqs = $sim->stats->{privacy_token_iqs} // 0;
    my ($ps, undef, $pj) = $sim->control(POST => "/contacts/$C1/privacy-token", body => { to => $ACCOUNT });
    is($ps, 200, 'the contact issued its trusted-contact token (privacy_token notification)') or diag explain $pj;
    sleep 0.3;
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'con token');
    is($a, 200, 'send: 200');
    my $m = wait_until(sub { my ($e) = grep { $_->{id} eq ($x->{message_id} // '') && $_->{device} == 0 } @{ inbox($C1) }; $e }, 5);
    ok($m && $m->{tctoken_valid}, 'the message carried the contact\'s token (<tctoken>, whatsmeow tctoken.go)') or diag explain $m;
    ok(($sim->stats->{privacy_token_iqs} // 0) > $iqs || $iqs > 0, 'we issued our own token (privacy iq) once per 7-day bucket');
}

# ---------------------------------------------------------------------------------------------- reach-out timelock
{
    my ($fs) = $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'reachout_timelock', seconds => 600 });
    is($fs, 200, 'the server announced a reach-out timelock (mex notification)');
    my $s = wait_until(sub { my $x = $t->status('o1'); $x->{restricted_until} ? $x : undef }, 5);
    ok($s, "restricted_until in the status ($s->{restricted_until})") if 1;
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'bloqueado');
    is($a, 429, 'sends answer 429 account_restricted until it ends');
    ok($x->{code} && $x->{code} eq 'account_restricted', 'account_restricted');
    $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'reachout_timelock', active => JSON::PP::false });
    ok(wait_until(sub { !$t->status('o1')->{restricted_until} }, 5), 'lifted by the next notification');
}

# ---------------------------------------------------------------------------------------------- ack errors
{
    $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'ack_error', code => 479 });
    my ($a, undef, $x) = send_msg(phone => $C1, message => 'inválido');
    is($a, 502, 'an ack with error 479: the request fails');
    is($x->{error_code}, 479, 'with the code in the body');
    my (undef, undef, $m) = $t->api(GET => "/api/messages/o1/$x->{message_id}");
    is($m->{status}, 'failed', 'the message is failed');
    is($m->{error_code}, 479, 'error_code 479');
    $sim->control(POST => "/devices/$ACCOUNT:1/fault", body => { type => 'ack_error', code => 463 });
    ($a, undef, $x) = send_msg(phone => $C1, message => 'restringido');
    is($x->{error_code}, 463, 'an ack with error 463: failed with the code');
    ($a, undef, $x) = send_msg(phone => $C1, message => 'otro');
    is($a, 429, 'then the number is restricted: 429');
    is($x->{code}, 'account_restricted', 'account_restricted');
    my $until = $t->status('o1')->{restricted_until};
    ok($until, 'restricted_until in the status');

    # The restriction is stored: a helper killed and respawned still knows it, and still refuses the send.
    my ($hp) = $t->helper_pids;
    kill 'KILL', $hp;
    ok(wait_until(sub { my @p = $t->helper_pids; @p == 1 && $p[0] != $hp && $t->status('o1')->{status} eq 'connected' }, 15),
        'after kill -9 of the helper, o1 is connected again');
    is($t->status('o1')->{restricted_until}, $until, "restricted_until survived the restart ($until)");
    ($a, undef, $x) = send_msg(phone => $C1, message => 'después del reinicio');
    is($a, 429, 'and sends still answer 429 account_restricted');
}

$t->stop(allow => $WaTest::KILLED);
done_testing;

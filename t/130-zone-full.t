# A whatsapp_zone too small for the organizations asked for: the API says so (503 zone_full with
# Retry-After), never reports success for a session whose status it cannot show, still lets the operator
# stop sessions (logout, clear-session), and a reload with a
# bigger zone brings every started session back into view.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(wait_until free_port);

my $closed = free_port();
my $t = WaTest->new;
$t->write_conf(zone => 'whatsapp_zone wa 256k;',
    http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_reconnect_backoff 60s 60s;");
$t->start;

my (%answer, @started, @bad_shape);
for my $i (1 .. 300) {
    my ($st, $h, $j) = $t->api(POST => '/api/start-session', body => { organization_id => "z$i" });
    my $k = "$st " . ($j->{code} // $j->{status} // '');
    $answer{$k}++;
    push @started, "z$i" if $st == 200;
    push @bad_shape, "z$i: $k" unless $k eq '200 connecting' || ($k eq '503 zone_full' && ($h->{'retry-after'} // '') =~ /^\d+$/);
}
diag explain \%answer;
is(scalar @bad_shape, 0, 'every start-session answered 200 connecting or 503 zone_full with Retry-After')
    or diag join "\n", @bad_shape[0 .. 4];
ok($answer{'503 zone_full'}, 'the 256k zone did fill up');
ok(@started > 50, scalar(@started) . ' sessions started before that');

my @invisible = grep { ($t->status($_)->{status} // '') eq 'disconnected' } @started;
is(scalar @invisible, 0, 'every session that start-session reported as started shows up in its status')
    or diag "answered 200 connecting but GET /api/status says disconnected: @invisible";
is(scalar(my @conns = $t->connections), scalar @started, '/api/connections lists every started session');

# the operator can still stop sessions in a full zone
{
    my ($st, undef, $j) = $t->api(POST => '/api/logout', body => { organization_id => $started[0] });
    is("$st " . ($j->{status} // $j->{code} // ''), '200 logged_out', "logout of $started[0] works in a full zone");
    ($st, undef, $j) = $t->api(POST => '/api/clear-session', body => { organization_id => $started[1] });
    is("$st " . ($j->{status} // $j->{code} // ''), '200 disconnected', "clear-session of $started[1] works in a full zone");
    ($st, undef, $j) = $t->api(POST => '/api/send-message', body => { organization_id => $started[2], phone => '3001234567', message => 'x' });
    is("$st " . ($j->{code} // ''), '409 not_connected', 'send-message still answers for a known organization');
    ($st, undef, $j) = $t->api(POST => '/api/start-session', body => { organization_id => 'one-more' });
    is("$st " . ($j->{code} // ''), '503 zone_full', 'a new organization is still refused');
    is($t->status('one-more')->{status}, 'disconnected', 'and was not started');
}
shift @started for 1 .. 2;    # no longer running

my ($st, undef, $hj) = $t->api(GET => '/api/health');
is($st, 200, '/api/health answers with a full zone');
is($hj->{shared_memory}{organizations}, scalar(@started) + 2, 'health: organizations = sessions started (and the two stopped)');

# a bigger zone (a new one, by reload): every wanted session comes back, visible
$t->write_conf(%{ $t->{conf_opts} }, zone => 'whatsapp_zone wa 4m;');
ok(eval { $t->reload(new_zone => 1) }, 'reload with a 4m zone') or diag $@;
ok(wait_until(sub { my @c = $t->connections; @c >= @started }, 10),
    'after the reload every started session is listed');
my @still;
wait_until(sub { @still = grep { ($t->status($_)->{status} // '') eq 'disconnected' } @started; !@still }, 5);
is(scalar @still, 0, 'and all of them are running again') or diag "still disconnected: @still";
$t->stop;
done_testing;

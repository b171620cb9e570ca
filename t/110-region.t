# whatsapp_default_region decides how national numbers are read: with US, a Colombian mobile without its
# country code is no longer valid, while numbers with a country code are valid whatever the region.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use WaTest qw(free_port);

my $closed = free_port();
my $t = WaTest->new;
$t->write_conf(http => "whatsapp_server ws://127.0.0.1:$closed/ws/chat;\n    whatsapp_default_region US;");
$t->start;
for my $case ([ '3001234567', 400, 'invalid_phone' ], [ '+573001234567', 409, 'not_connected' ],
    [ '+57 300 123 4567', 409, 'not_connected' ], [ '(202) 555-0123', 409, 'not_connected' ],
    [ '202-555-0123', 409, 'not_connected' ], [ '+1 202 555 0123', 409, 'not_connected' ],
    [ '+57300123456', 400, 'invalid_phone' ], [ '+99912345', 400, 'invalid_phone' ],
    [ '2025550123 ext 5', 400, 'invalid_phone' ], [ '', 400, 'invalid_phone' ]) {
    my ($phone, $st, $code) = @$case;
    my ($s, undef, $j) = $t->api(POST => '/api/send-message', body => { organization_id => 'reg1', phone => $phone, message => 'x' });
    is("$s " . ($j->{code} // ''), "$st $code", "region US: phone \"$phone\" → $st $code");
}
$t->stop;
done_testing;

package WaSse;
# A small server-sent-events client for the tests (HTTP/1.1, chunked or not).
#   my $s = WaSse->open($port, '/api/events/23', headers => {'X-API-Key' => $key});
#   $s->status, $s->headers                       # once the response head arrived (open waits for it)
#   my $ev = $s->next(5);                          # {event, id, data, json, t} or undef on timeout/EOF
#   my $ev = $s->wait_for(sub { $_[0]{event} eq 'status' && $_[0]{json}{status} eq 'connected' }, 5);
#   $s->comments, $s->eof, $s->events (all parsed so far), $s->close
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use JSON::PP;

my $JSON = JSON::PP->new->utf8->allow_nonref;

sub open {
    my ($class, $port, $path, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
        or return undef;
    binmode $s;
    my %h = (Host => 'localhost', Accept => 'text/event-stream', %{ $o{headers} // {} });
    my $req = "GET $path HTTP/1.1\r\n" . join('', map { "$_: $h{$_}\r\n" } grep { defined $h{$_} } sort keys %h) . "\r\n";
    syswrite($s, $req);
    my $self = bless { s => $s, buf => '', body => '', events => [], queue => [], comments => 0, eof => 0,
                       chunked => 0, head => undef, opened => time }, $class;
    $self->_pump($o{timeout} // 5) until defined $self->{head} || $self->{eof} || time - $self->{opened} > ($o{timeout} // 5);
    return $self;
}

sub status  { $_[0]{status} // 0 }
sub headers { $_[0]{headers} // {} }
sub eof     { $_[0]{eof} }
sub events  { @{ $_[0]{events} } }
sub comments { $_[0]{comments} }
sub body    { $_[0]{body} }    # the decoded body so far (an error's JSON)
sub socket  { $_[0]{s} }

sub close { my $s = delete $_[0]{s}; close $s if $s; $_[0]{eof} = 1 }

# Reads what is there (waiting at most $wait seconds for something), decodes, parses events.
sub _pump {
    my ($self, $wait) = @_;
    return if $self->{eof} || !$self->{s};
    my $sel = IO::Select->new($self->{s});
    return unless $sel->can_read($wait);
    my $n = sysread($self->{s}, my $buf, 65536);
    if (!$n) { $self->{eof} = 1; $self->{eof_at} = time; return }
    $self->{buf} .= $buf;
    if (!defined $self->{head}) {
        my $i = index($self->{buf}, "\r\n\r\n");
        return if $i < 0;
        $self->{head} = substr($self->{buf}, 0, $i);
        substr($self->{buf}, 0, $i + 4) = '';
        my @l = split /\r\n/, $self->{head};
        ($self->{status}) = (shift(@l) // '') =~ m{^HTTP/\d\.\d (\d+)};
        for (@l) { my ($k, $v) = /^([^:]+):\s*(.*)$/ or next; $self->{headers}{ lc $k } = $v }
        $self->{chunked} = ($self->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
    }
    if ($self->{chunked}) {
        while ($self->{buf} =~ /^([0-9a-fA-F]+)[^\r]*\r\n/) {
            my ($hdr, $len) = (length($&), hex $1);
            if ($len == 0) { $self->{last_chunk} = 1; $self->{buf} = ''; $self->{eof} = 1; $self->{eof_at} = time; last }
            last if length($self->{buf}) < $hdr + $len + 2;
            $self->{body} .= substr($self->{buf}, $hdr, $len);
            substr($self->{buf}, 0, $hdr + $len + 2) = '';
        }
    } else {
        $self->{body} .= $self->{buf};
        $self->{buf} = '';
    }
    $self->_parse;
}

sub _parse {
    my ($self) = @_;
    return unless ($self->{status} // 0) == 200;
    while ($self->{body} =~ s/^(.*?)\n\n//s) {
        my $block = $1;
        my %ev;
        my @data;
        for my $line (split /\n/, $block) {
            if ($line =~ /^:/) { $self->{comments}++; $self->{last_comment_at} = time; next }
            my ($k, $v) = $line =~ /^([^:]+):\s?(.*)$/ or next;
            if ($k eq 'data') { push @data, $v } else { $ev{$k} = $v }
        }
        next unless @data || $ev{event};
        $ev{data} = join("\n", @data);
        $ev{json} = eval { $JSON->decode($ev{data}) };
        $ev{t} = time;
        push @{ $self->{events} }, \%ev;
        push @{ $self->{queue} }, \%ev;
    }
}

# The next event not yet returned, waiting up to $timeout seconds.
sub next {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (!@{ $self->{queue} }) {
        my $left = $end - time;
        return undef if $left <= 0 || $self->{eof};
        $self->_pump($left);
    }
    return shift @{ $self->{queue} };
}

# The first event (from those not yet returned) for which $cond is true, skipping the others.
sub wait_for {
    my ($self, $cond, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (1) {
        my $left = $end - time;
        my $ev = $self->next($left > 0 ? $left : 0) // return undef;
        return $ev if $cond->($ev);
    }
}

# Waits until EOF (the server ended the stream); true if it did within $timeout.
sub wait_eof {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 5);
    $self->_pump($end - time) while !$self->{eof} && time < $end;
    return $self->{eof};
}

sub pump { $_[0]->_pump($_[1] // 0) }

1;

package healthcheck

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsProber asks one question over UDP. An answer counts when its ID, QR bit,
// opcode (QUERY) and question match ours; NOERROR and NXDOMAIN pass (both
// are answers from the server's data: the server works), every other RCODE
// fails. An error answer without a question section counts too. Other
// datagrams on the socket are ignored until the timeout.
type dnsProber struct {
	spec Spec
	name dnsmessage.Name
}

func newDNSProber(s Spec) (*dnsProber, error) {
	n, err := dnsName(s.Query)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return &dnsProber{spec: s, name: n}, nil
}

func (p *dnsProber) Probe(ctx context.Context, t Target) error {
	what := "dns query " + p.spec.Query + " A"
	ap, err := checkTarget(p.spec, t)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", ap.String())
	if err != nil {
		return fmt.Errorf("%s: %w", what, netFailure(ctx, err, p.spec.Timeout))
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }) // wakes a blocked Read
	defer stop()

	id := uint16(rand.Uint32())
	q, err := p.query(id)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := c.Write(q); err != nil {
		return fmt.Errorf("%s: %w", what, netFailure(ctx, err, p.spec.Timeout))
	}
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			// A closed port answers with ICMP port unreachable: "connection refused".
			return fmt.Errorf("%s: %w", what, netFailure(ctx, err, p.spec.Timeout))
		}
		rcode, ok := matchAnswer(buf[:n], id, p.name)
		if !ok {
			continue
		}
		if rcode == dnsmessage.RCodeSuccess || rcode == dnsmessage.RCodeNameError {
			return nil
		}
		return fmt.Errorf("%s: rcode %s", what, rcodeName(rcode))
	}
}

func (p *dnsProber) query(id uint16) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: p.name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// opQuery is the standard query opcode (RFC 1035 4.1.1).
const opQuery dnsmessage.OpCode = 0

// matchAnswer returns the RCODE of msg if it is a response to our standard
// query id about name. A response without a question section (some servers
// send FORMERR or REFUSED that way) matches on the ID alone, but only with
// an error RCODE: a question-less NOERROR or NXDOMAIN answers nothing we
// asked, so it must not pass the check.
func matchAnswer(msg []byte, id uint16, name dnsmessage.Name) (dnsmessage.RCode, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.ID != id || !h.Response || h.OpCode != opQuery {
		return 0, false
	}
	q, err := p.Question()
	if err == dnsmessage.ErrSectionDone {
		return h.RCode, h.RCode != dnsmessage.RCodeSuccess && h.RCode != dnsmessage.RCodeNameError
	}
	if err != nil || q.Type != dnsmessage.TypeA || q.Class != dnsmessage.ClassINET ||
		!strings.EqualFold(q.Name.String(), name.String()) {
		return 0, false
	}
	return h.RCode, true
}

func rcodeName(r dnsmessage.RCode) string {
	switch r {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return strconv.Itoa(int(r))
}

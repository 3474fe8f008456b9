package dnsmsg

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// query builds a query with golang.org/x/net/dns/dnsmessage, an independent encoder.
func query(t testing.TB, names ...string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(n), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestParseQuery(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".exfil.example."
	m, err := ParseQuery(query(t, long), false)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 0x1234 || len(m.Questions) != 1 || m.Questions[0].Name != strings.TrimSuffix(long, ".") || m.Questions[0].Type != 1 || m.Questions[0].Class != 1 {
		t.Fatalf("%+v", m)
	}
	// TCP: the length prefix, and a second message after it is not read.
	q := query(t, "a.example.", "b.example.")
	tcp := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	tcp = append(append(tcp, q...), 0xff, 0xff)
	m, err = ParseQuery(tcp, true)
	if err != nil || len(m.Questions) != 2 || m.Questions[1].Name != "b.example" {
		t.Fatalf("tcp: %+v %v", m, err)
	}
	// Cut after the first question (the kernel's capture bound): the first is kept.
	m, err = ParseQuery(q[:len(q)-3], false)
	if err != nil || len(m.Questions) != 1 || !m.More {
		t.Fatalf("cut: %+v %v", m, err)
	}
}

func TestEscaping(t *testing.T) {
	msg := query(t, "x.example.")
	msg[13] = 0 // the label "x" becomes a NUL byte
	m, err := ParseQuery(msg, false)
	if err != nil || m.Questions[0].Name != `\000.example` {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestRejects(t *testing.T) {
	q := query(t, "a.example.")
	resp := append([]byte(nil), q...)
	resp[2] |= 0x80
	pointer := append(append([]byte(nil), q[:12]...), 0xc0, 0x0c, 0, 1, 0, 1)
	reserved := append(append([]byte(nil), q[:12]...), 0x41, 'a', 0, 0, 1, 0, 1)
	var long []byte
	long = append(long, q[:12]...)
	for i := 0; i < 5; i++ {
		long = append(long, 63)
		long = append(long, []byte(strings.Repeat("z", 63))...)
	}
	long = append(long, 0, 0, 1, 0, 1)
	none := append([]byte(nil), q...)
	none[5] = 0
	opcode := append([]byte(nil), q...)
	opcode[2] |= 0x28
	for _, tc := range []struct {
		name   string
		msg    []byte
		tcp    bool
		reason string
	}{
		{"short", q[:11], false, ReasonShort},
		{"response", resp, false, ReasonResponse},
		{"pointer", pointer, false, ReasonCompression},
		{"reserved label type", reserved, false, ReasonLabelType},
		{"name over 255 bytes", long, false, ReasonNameTooLong},
		{"no question", none, false, ReasonNoQuestion},
		{"opcode", opcode, false, ReasonOpcode},
		{"truncated name", q[:14], false, ReasonTruncated},
		{"truncated type", q[:len(q)-2], false, ReasonTruncated},
		{"tcp without prefix", []byte{0}, true, ReasonShort},
		{"tcp length under a header", []byte{0, 5, 1, 2, 3, 4, 5}, true, ReasonTCPLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuery(tc.msg, tc.tcp)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason {
				t.Fatalf("error %v, want reason %s", err, tc.reason)
			}
		})
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add(query(f, "a.example."), false)
	f.Add(query(f, strings.Repeat("q", 63)+".t.example.", "b."), false)
	q := query(f, "c.example.")
	f.Add(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...), true)
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c}, false)
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		m, err := ParseQuery(b, tcp)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if len(m.Questions) == 0 || len(m.Questions) > MaxQuestions {
			t.Fatalf("%d questions", len(m.Questions))
		}
		for _, q := range m.Questions {
			// Each wire byte becomes at most 4 (\DDD): the name stays bounded.
			if len(q.Name) > 4*MaxNameBytes {
				t.Fatalf("name of %d bytes", len(q.Name))
			}
		}
	})
}

package tls

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

func tinySSL(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "elf", "libssl_tiny.so"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestExportsOpenSSLFrom: SSL_read and SSL_write both defined make OpenSSL; one renamed does not.
func TestExportsOpenSSLFrom(t *testing.T) {
	lib := tinySSL(t)
	if found, err := exportsOpenSSLFrom(bytes.NewReader(lib)); !found || err != nil {
		t.Errorf("libssl_tiny.so: found %v, err %v", found, err)
	}
	renamed := bytes.Replace(lib, []byte("SSL_write\x00"), []byte("SSL_wrote\x00"), 1)
	if found, err := exportsOpenSSLFrom(bytes.NewReader(renamed)); found || err != nil {
		t.Errorf("without SSL_write: found %v, err %v", found, err)
	}
	if found, err := exportsOpenSSLFrom(bytes.NewReader(lib[:100])); found || err == nil {
		t.Errorf("cut: found %v, err %v", found, err)
	}
}

// FuzzExportsOpenSSL: an executable a traced process chose is read without a panic (through its
// GNU hash table or its whole dynamic symbol table), and an error never comes with a finding.
func FuzzExportsOpenSSL(f *testing.F) {
	elfinfo.StrictPanics(true) // our own panics (the GNU hash lookup's) are raised, not recovered
	for _, lib := range [][]byte{tinySSL(f), tinyGNU(f)} {
		f.Add(lib)
		f.Add(bytes.Replace(lib, []byte("SSL_write\x00"), []byte("SSL_wrote\x00"), 1))
		f.Add(lib[:64])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		found, err := exportsOpenSSLFrom(bytes.NewReader(b))
		if found && err != nil {
			t.Fatalf("found with an error: %v", err)
		}
		// The whole table read where the hash table would be: also without a panic.
		if offs, err := offsetsOf(bytes.NewReader(b), false); err != nil && len(offs) > 0 {
			t.Fatalf("offsets with an error: %v", err)
		}
	})
}

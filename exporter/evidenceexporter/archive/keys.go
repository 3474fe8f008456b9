package archive

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// maxKeyFileBytes bounds what is read from a signing key file: the PEM of an Ed25519 PKCS #8
// key is 119 bytes, so a file this large is not one, and a mistyped path (a log, a device) is
// not read into memory.
const maxKeyFileBytes = 64 << 10

// LoadSigningKey reads an Ed25519 private key stored as a PEM "PRIVATE KEY" block holding
// PKCS #8, the form written by `openssl genpkey -algorithm ed25519` and by GenerateSigningKey.
// The file must be a regular file that only its owner can access (mode & 0o077 == 0): a
// signing key that others can read can be used to forge sealed segments. Errors name the file
// but never include its content.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	k, err := CheckSigningKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// CheckSigningKeyFile reads and checks the signing key file at path (see LoadSigningKey). Its
// errors do not repeat the path, so that callers can quote it with their own key name.
func CheckSigningKeyFile(path string) (ed25519.PrivateKey, error) {
	// Stat before opening: opening a FIFO for reading would block until a writer appears.
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New("does not exist")
	case errors.Is(err, fs.ErrPermission):
		return nil, errors.New("unreadable: permission denied")
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, errors.New("is a directory, not a key file")
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		what := "readable by group or others"
		if perm&0o044 == 0 {
			what = "writable or executable by group or others"
		}
		return nil, fmt.Errorf("%s (mode %04o); chmod 600 it", what, perm)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, errors.New("unreadable: permission denied")
		}
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("larger than %d KiB, not an Ed25519 key", maxKeyFileBytes>>10)
	}
	return ParseSigningKey(data)
}

// ParseSigningKey parses the PEM "PRIVATE KEY" (PKCS #8) form of an Ed25519 private key.
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not PEM: want a PEM \"PRIVATE KEY\" block (openssl genpkey -algorithm ed25519)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\" (PKCS #8 Ed25519)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an Ed25519 key (%T)", k)
	}
	return ek, nil
}

// GenerateSigningKey creates a new Ed25519 key, writes it to path as PEM PKCS #8 with mode
// 0600 (failing if path exists) and returns its public key.
func GenerateSigningKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	// The umask cannot widen 0600, but an explicit chmod documents the intent.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return pub, f.Close()
}

// PublicKeyPEM returns the PEM "PUBLIC KEY" (PKIX) form of pub, as `openssl pkey -pubout`
// writes it.
func PublicKeyPEM(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey accepts 64 hex digits, or the name of a file holding either 64 hex digits or a
// PEM "PUBLIC KEY" block (PKIX, as `openssl pkey -pubout` writes).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	if k, ok := parseHexKey(s); ok {
		return k, nil
	}
	data, err := readFileLimited(s, maxKeyFileBytes)
	if err != nil {
		return nil, fmt.Errorf("public key %q is neither 64 hex digits nor a readable key file: %w", s, err)
	}
	if k, ok := parseHexKey(strings.TrimSpace(string(data))); ok {
		return k, nil
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key file %s: want 64 hex digits or a PEM \"PUBLIC KEY\" block", s)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", s, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("public key file " + s + ": not an Ed25519 key")
	}
	return ek, nil
}

func parseHexKey(s string) (ed25519.PublicKey, bool) {
	s = strings.ToLower(s)
	if !isLowerHex(s, 2*ed25519.PublicKeySize) {
		return nil, false
	}
	k, _ := hex.DecodeString(s)
	return ed25519.PublicKey(k), true
}

package archive

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadSigningKey reads an Ed25519 private key stored as a PEM "PRIVATE KEY" block holding
// PKCS #8, the form written by `openssl genpkey -algorithm ed25519` and by GenerateSigningKey.
// Errors name the file but never include its content.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	return parseSigningKey(data, path)
}

func parseSigningKey(data []byte, path string) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: not PKCS #8", path)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an Ed25519 key", path)
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
	data, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("public key %q is neither 64 hex digits nor a readable file: %w", s, err)
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

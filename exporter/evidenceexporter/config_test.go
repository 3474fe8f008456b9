package evidenceexporter

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const dir, key = "/var/lib/agenttrail/evidence", "/etc/agenttrail/evidence.key"
	realKey := filepath.Join(t.TempDir(), "evidence.key")
	if _, err := archive.GenerateSigningKey(realKey); err != nil {
		t.Fatal(err)
	}
	withDefaults := func(f func(*Config)) *Config {
		cfg := createDefaultConfig().(*Config)
		cfg.Directory, cfg.SigningKeyFile = dir, key
		if f != nil {
			f(cfg)
		}
		return cfg
	}
	tests := []struct {
		name    string
		want    *Config
		wantErr string
	}{
		{name: "", want: withDefaults(nil)},
		{name: "all", want: withDefaults(func(c *Config) {
			c.SegmentMaxBytes = 1 << 20
			c.SegmentMaxAge = 10 * time.Minute
			c.Retention = "sox"
			c.RetentionCheckInterval = 30 * time.Minute
			c.Fsync = false
			storage := component.MustNewID("file_storage")
			q := c.QueueConfig.Get()
			q.StorageID = &storage
			q.QueueSize = 5000
			c.RetryConfig.MaxElapsedTime = 0
		})},
		{name: "pci_dss", want: withDefaults(func(c *Config) { c.Retention = "pci_dss" })},
		{name: "nydfs_500", want: withDefaults(func(c *Config) { c.Retention = "nydfs_500" })},
		{name: "duration", want: withDefaults(func(c *Config) { c.Retention = "720h" })},
		{name: "bad_retention", wantErr: `"retention": want pci_dss, nydfs_500, sox or a positive duration such as 720h, got "forever"`},
		{name: "negative_retention", wantErr: `"retention": want pci_dss, nydfs_500, sox or a positive duration such as 720h, got "-24h"`},
		{name: "missing_directory", wantErr: `"directory" must not be empty`},
		{name: "missing_key", wantErr: `"signing_key_file" must not be empty`},
		{name: "zero_segment_bytes", wantErr: `"segment_max_bytes" must be positive`},
		{name: "zero_segment_age", wantErr: `"segment_max_age" must be positive`},
		{name: "zero_check_interval", wantErr: `"retention_check_interval" must be positive`},
	}
	for _, tt := range tests {
		t.Run("evidence/"+tt.name, func(t *testing.T) {
			id := component.NewIDWithName(metadata.Type, tt.name)
			sub, err := cm.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := createDefaultConfig().(*Config)
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			// Validate reads the key file: the path in testdata stands for a real key.
			if cfg.SigningKeyFile == key {
				cfg.SigningKeyFile = realKey
			}
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			cfg.SigningKeyFile = key
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("config\n got %+v\nwant %+v", cfg, tt.want)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	if cfg.SegmentMaxBytes != 64<<20 || cfg.SegmentMaxAge != time.Hour || cfg.Retention != "" ||
		cfg.RetentionCheckInterval != time.Hour || !cfg.Fsync || !cfg.QueueConfig.HasValue() || !cfg.RetryConfig.Enabled {
		t.Errorf("defaults %+v", cfg)
	}
	if err := confmap.Validate(cfg); err == nil || err.Error() != `"directory" must not be empty` {
		t.Errorf("the default config must ask for a directory, got %v", err)
	}
}

// keyFile writes data to a fresh file with the given mode (chmod, so the umask does not
// interfere) and returns its path.
func keyFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "evidence.key")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func goodKeyPEM(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "good.key")
	if _, err := archive.GenerateSigningKey(p); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestValidateSigningKeyFile(t *testing.T) {
	good := goodKeyPEM(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string // the error after the quoted path; "" for a valid key
	}{
		{"valid 0600", func(t *testing.T) string { return keyFile(t, good, 0o600) }, ""},
		{"valid 0400", func(t *testing.T) string { return keyFile(t, good, 0o400) }, ""},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing.key") }, "does not exist"},
		{"directory", func(t *testing.T) string { return t.TempDir() }, "is a directory, not a key file"},
		{"fifo", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo.key")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			return p
		}, "not a regular file (p---------)"},
		{"readable by others", func(t *testing.T) string { return keyFile(t, good, 0o644) }, "readable by group or others (mode 0644); chmod 600 it"},
		{"readable by group", func(t *testing.T) string { return keyFile(t, good, 0o640) }, "readable by group or others (mode 0640); chmod 600 it"},
		{"writable by group", func(t *testing.T) string { return keyFile(t, good, 0o620) }, "writable or executable by group or others (mode 0620); chmod 600 it"},
		{"not pem", func(t *testing.T) string { return keyFile(t, []byte("this is not a key\n"), 0o600) },
			`not PEM: want a PEM "PRIVATE KEY" block (openssl genpkey -algorithm ed25519)`},
		{"empty", func(t *testing.T) string { return keyFile(t, nil, 0o600) },
			`not PEM: want a PEM "PRIVATE KEY" block (openssl genpkey -algorithm ed25519)`},
		{"public key", func(t *testing.T) string {
			return keyFile(t, archive.PublicKeyPEM(testKeyPub(t, good)), 0o600)
		}, `PEM block is "PUBLIC KEY", want "PRIVATE KEY" (PKCS #8 Ed25519)`},
		{"pkcs1 rsa", func(t *testing.T) string {
			return keyFile(t, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600)
		}, `PEM block is "RSA PRIVATE KEY", want "PRIVATE KEY" (PKCS #8 Ed25519)`},
		{"pkcs8 rsa", func(t *testing.T) string { return keyFile(t, pkcs8PEM(t, rsaKey), 0o600) }, "not an Ed25519 key (*rsa.PrivateKey)"},
		{"pkcs8 ecdsa", func(t *testing.T) string { return keyFile(t, pkcs8PEM(t, ecKey), 0o600) }, "not an Ed25519 key (*ecdsa.PrivateKey)"},
		{"pem garbage", func(t *testing.T) string {
			return keyFile(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), 0o600)
		}, "not a PKCS #8 private key"},
		{"huge", func(t *testing.T) string {
			return keyFile(t, append(bytes.Repeat([]byte("#"), 100<<10), good...), 0o600)
		}, "larger than 64 KiB, not an Ed25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.Directory = "/var/lib/agenttrail/evidence"
			cfg.SigningKeyFile = tt.path(t)
			err := confmap.Validate(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			want := fmt.Sprintf(`"signing_key_file" %s: %s`, cfg.SigningKeyFile, tt.want)
			if err == nil || err.Error() != want {
				t.Fatalf("Validate() = %v\nwant %s", err, want)
			}
		})
	}
}

func testKeyPub(t *testing.T, keyPEM []byte) []byte {
	t.Helper()
	k, err := archive.ParseSigningKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().(ed25519.PublicKey)
}

const validateHelperEnv = "AGENTTRAIL_EVIDENCE_VALIDATE_KEY"

// TestHelperValidate is not a test on its own: TestValidateUnreadableKey runs the test binary
// again as an unprivileged user, with this test selected and validateHelperEnv set.
func TestHelperValidate(t *testing.T) {
	p := os.Getenv(validateHelperEnv)
	if p == "" {
		t.Skip("helper process of TestValidateUnreadableKey")
	}
	cfg := createDefaultConfig().(*Config)
	cfg.Directory = "/var/lib/agenttrail/evidence"
	cfg.SigningKeyFile = p
	fmt.Printf("validate: %v\n", confmap.Validate(cfg))
}

func TestValidateUnreadableKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evidence.key")
	// Mode 0200 passes the "only the owner" check; only reading it fails.
	mode := os.FileMode(0o200)
	if os.Geteuid() == 0 {
		// Root reads any file: check as nobody a key that only root may read.
		mode = 0o600
	}
	if err := os.WriteFile(p, goodKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"signing_key_file" %s: unreadable: permission denied`, p)
	if os.Geteuid() != 0 {
		cfg := createDefaultConfig().(*Config)
		cfg.Directory = "/var/lib/agenttrail/evidence"
		cfg.SigningKeyFile = p
		if err := confmap.Validate(cfg); err == nil || err.Error() != want {
			t.Fatalf("Validate() = %v\nwant %s", err, want)
		}
		return
	}
	// nobody must be able to reach the key and run the test binary: open up the temporary
	// directories (0700 by default) and copy the binary beside the key.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "validate.test")
	copyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^TestHelperValidate$", "-test.count=1")
	cmd.Env = append(os.Environ(), validateHelperEnv+"="+p)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as nobody: %v\n%s", err, out)
	}
	got := ""
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "validate: "); ok {
			got = v
		}
	}
	if got != want {
		t.Fatalf("Validate() as nobody = %q\nwant %q\n%s", got, want, out)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

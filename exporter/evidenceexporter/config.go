package evidenceexporter // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter"

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

// Config defines the configuration of the evidence exporter.
type Config struct {
	// Directory holds the archive (segments/ and quarantine/). Required.
	Directory string `mapstructure:"directory"`
	// SigningKeyFile is an Ed25519 private key, PEM "PRIVATE KEY" (PKCS #8), as written by
	// `openssl genpkey -algorithm ed25519` or `agenttrail evidence keygen`, in a regular file
	// that only its owner can access. Required. Only the path is ever logged.
	SigningKeyFile string `mapstructure:"signing_key_file"`
	// SegmentMaxBytes seals the open segment once it has reached this size.
	SegmentMaxBytes int64 `mapstructure:"segment_max_bytes"`
	// SegmentMaxAge seals the open segment once it is this old.
	SegmentMaxAge time.Duration `mapstructure:"segment_max_age"`
	// Retention is pci_dss, nydfs_500, sox or a Go duration; "" keeps segments forever.
	Retention string `mapstructure:"retention"`
	// RetentionCheckInterval is how often expired segments are looked for.
	RetentionCheckInterval time.Duration `mapstructure:"retention_check_interval"`
	// Fsync syncs the segment file after every batch before the batch is acknowledged.
	Fsync bool `mapstructure:"fsync"`

	QueueConfig configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration. It reads the signing key file (and only that): a key
// that is missing, unreadable, malformed or readable by others must fail
// `otelcol-agenttrail validate`, not the start of a collector hours later. The directory is
// not touched; it is created in Start.
func (cfg *Config) Validate() error {
	if cfg.Directory == "" {
		return errors.New(`"directory" must not be empty`)
	}
	if cfg.SigningKeyFile == "" {
		return errors.New(`"signing_key_file" must not be empty`)
	}
	if _, err := archive.CheckSigningKeyFile(cfg.SigningKeyFile); err != nil {
		return fmt.Errorf(`"signing_key_file" %s: %w`, cfg.SigningKeyFile, err)
	}
	if cfg.SegmentMaxBytes <= 0 {
		return errors.New(`"segment_max_bytes" must be positive`)
	}
	if cfg.SegmentMaxAge <= 0 {
		return errors.New(`"segment_max_age" must be positive`)
	}
	if _, err := archive.ParseRetention(cfg.Retention); err != nil {
		return fmt.Errorf(`"retention": %w`, err)
	}
	if cfg.RetentionCheckInterval <= 0 {
		return errors.New(`"retention_check_interval" must be positive`)
	}
	return nil
}

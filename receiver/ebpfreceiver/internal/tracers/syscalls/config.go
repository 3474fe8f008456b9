package syscalls

import "fmt"

// ContentConfig is the receiver's `content_sampling:` section: the beginning of files traced
// processes open for reading is checked for sensitive data (never exported).
type ContentConfig struct {
	// Enabled samples files opened for reading (openat must be among the traced syscalls).
	Enabled bool `mapstructure:"enabled"`
	// MaxBytes read from the start of each file.
	MaxBytes int `mapstructure:"max_bytes"`
	// MaxFilesPerMinute bounds the files read across all processes; one process gets at most a
	// quarter of it, so a process opening files in a loop cannot starve the others.
	MaxFilesPerMinute int `mapstructure:"max_files_per_minute"`
}

// MaxContentBytes bounds max_bytes: the sample is scanned on the receiver's reader goroutine.
const MaxContentBytes = 65536

// DefaultContentConfig is the section's default: on, 8 KiB, 600 files a minute.
func DefaultContentConfig() ContentConfig {
	return ContentConfig{Enabled: true, MaxBytes: 8192, MaxFilesPerMinute: 600}
}

// Validate checks the section; keys are quoted as written in YAML.
func (c ContentConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.MaxBytes < 1 || c.MaxBytes > MaxContentBytes {
		return fmt.Errorf(`"content_sampling.max_bytes" must be between 1 and %d, got %d`, MaxContentBytes, c.MaxBytes)
	}
	if c.MaxFilesPerMinute < 1 {
		return fmt.Errorf(`"content_sampling.max_files_per_minute" must be positive, got %d`, c.MaxFilesPerMinute)
	}
	return nil
}

package componenttestkit

import (
	"reflect"
	"strings"
	"testing"
)

// ValidateCase is one row of a Validate table: Mutate changes a valid config; WantErr is a
// part of the error Validate must return, or "" for a config that stays valid.
type ValidateCase[C any] struct {
	Name    string
	Mutate  func(*C)
	WantErr string
}

// CheckValidate runs each case on a config from valid: Validate returns the case's error (or
// none), leaves the config as it was (Validate is pure), and its error never holds one of
// secrets (a config's secret must not reach a log through an error).
func CheckValidate[C any, P interface {
	*C
	Validate() error
}](t *testing.T, valid func() P, cases []ValidateCase[C], secrets ...string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			cfg := valid()
			tc.Mutate(cfg)
			before := *cfg
			err := cfg.Validate()
			if !reflect.DeepEqual(before, *cfg) {
				t.Errorf("Validate modified the config: %+v, was %+v", *cfg, before)
			}
			if tc.WantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
				t.Fatalf("Validate error %v, want one containing %q", err, tc.WantErr)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Validate error %q holds a secret", err)
				}
			}
		})
	}
}

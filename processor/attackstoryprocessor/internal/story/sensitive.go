package story

import (
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
)

// AttrSensitiveContent: the receiver's detectors that matched the beginning of a file a process
// opened for reading (card_number, us_ssn, iban, private_key, api_key), whatever its path.
const AttrSensitiveContent = "agenttrail.file.sensitive_content"

// ContentPatternPrefix starts the pattern a read that is sensitive by its content (not by its
// path) is reported and learned under: "content:card_number,us_ssn".
const ContentPatternPrefix = "content:"

// Bounds of what is taken from agenttrail.file.sensitive_content: spans come from the network
// (OTLP), and a detector name is a short word.
const (
	maxContentDetectors = 8
	maxDetectorName     = 32
)

// SensitivePattern says whether the file access is a sensitive read and under which pattern:
// the first sensitive_paths pattern naming its path, else its content's detectors
// ("content:card_number,us_ssn"), so a customer file under an innocuous name is one too.
func (fa *FileAccess) SensitivePattern(patterns []match.Path) (string, bool) {
	if p, ok := match.Any(patterns, fa.Path); ok {
		return p, true
	}
	if len(fa.Content) > 0 {
		return ContentPatternPrefix + strings.Join(fa.Content, ","), true
	}
	return "", false
}

// SensitiveContent reads agenttrail.file.sensitive_content: the detector names, sorted and
// without repeats, at most 8 of at most 32 bytes of [a-z0-9_] each (anything else is not a
// detector name the receiver writes, and is dropped).
func SensitiveContent(m pcommon.Map) []string {
	v, ok := m.Get(AttrSensitiveContent)
	if !ok || v.Type() != pcommon.ValueTypeSlice {
		return nil
	}
	var out []string
	sl := v.Slice()
	for i := range min(sl.Len(), 64) {
		e := sl.At(i)
		if e.Type() != pcommon.ValueTypeStr || !detectorName(e.Str()) || slices.Contains(out, e.Str()) {
			continue
		}
		out = append(out, e.Str())
		if len(out) == maxContentDetectors {
			break
		}
	}
	slices.Sort(out)
	return out
}

func detectorName(s string) bool {
	if s == "" || len(s) > maxDetectorName {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

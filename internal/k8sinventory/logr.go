package k8sinventory

import (
	"github.com/go-logr/logr"
	"go.uber.org/zap"
)

// zapSink routes client-go's contextual (klog/logr) logging to the collector's logger at debug
// level: the informers' retries are summarised by the observers (Informers.Observe), and nothing
// reaches stderr directly.
type zapSink struct {
	logger *zap.Logger
}

// NewZapLogr is a logr.Logger writing to l at debug level.
func NewZapLogr(l *zap.Logger) logr.Logger {
	return logr.New(zapSink{logger: l.Named("client-go")})
}

func (s zapSink) Init(logr.RuntimeInfo) {}

func (s zapSink) Enabled(int) bool { return s.logger.Core().Enabled(zap.DebugLevel) }

func (s zapSink) Info(level int, msg string, kv ...any) {
	s.logger.Debug(msg, append(zapFields(kv), zap.Int("v", level))...)
}

func (s zapSink) Error(err error, msg string, kv ...any) {
	s.logger.Debug(msg, append(zapFields(kv), zap.Error(err))...)
}

func (s zapSink) WithValues(kv ...any) logr.LogSink {
	return zapSink{logger: s.logger.With(zapFields(kv)...)}
}

func (s zapSink) WithName(name string) logr.LogSink {
	return zapSink{logger: s.logger.Named(name)}
}

func zapFields(kv []any) []zap.Field {
	out := make([]zap.Field, 0, len(kv)/2+1)
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = "key"
		}
		out = append(out, zap.Any(k, kv[i+1]))
	}
	return out
}

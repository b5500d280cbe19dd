// Package logging builds the operator's zap logger and routes client-go's
// klog output into it, so that every line the process writes has one format.
package logging

import (
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// Formats accepted by New.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options select the logger.
type Options struct {
	// Level is debug, info, warn or error; or a number: 0 is info, each step
	// above shows one more level of klog verbosity (2 shows V(2) lines).
	Level string
	// Format is json (production) or console (local runs).
	Format string
}

// New builds the zap logger and installs it as klog's backend. It returns
// the zap logger and a logr view of it for contextual logging.
func New(o Options) (*zap.Logger, logr.Logger, error) {
	level, err := parseLevel(o.Level)
	if err != nil {
		return nil, logr.Discard(), err
	}
	var cfg zap.Config
	switch o.Format {
	case FormatJSON, "":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	case FormatConsole:
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	default:
		return nil, logr.Discard(), fmt.Errorf("unknown log format %q: use json or console", o.Format)
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = level > zapcore.DebugLevel
	// Sampling drops repeated lines, which hides exactly the repetitions
	// that point at a reconcile loop.
	cfg.Sampling = nil
	z, err := cfg.Build()
	if err != nil {
		return nil, logr.Discard(), err
	}
	l := zapr.NewLogger(z)
	klog.SetLogger(l)
	return z, l, nil
}

// parseLevel maps names and klog verbosities onto zap levels: zapr logs
// logr's V(n) at zap level -n, so verbosity 2 is zap level -2.
func parseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	var v int
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || v < 0 || v > 10 {
		return 0, fmt.Errorf("unknown log level %q: use debug, info, warn, error or a verbosity 0-10", s)
	}
	return zapcore.Level(-v), nil
}

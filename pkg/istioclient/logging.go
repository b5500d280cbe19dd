package istioclient

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	istiolog "istio.io/istio/pkg/log"
)

// RouteLogs sends the output of Istio's global log scopes (used by its
// installer and renderer) into the operator's logger, each line tagged with
// its scope. Istio's installer is chatty at info level: its scopes log at
// warn unless the operator runs at debug.
//
// Istio's log.Configure also takes over klog and zap's globals; callers
// install their own klog backend after this (cmd/istio-operator does).
func RouteLogs(z *zap.Logger) error {
	opts := istiolog.DefaultOptions()
	level := istiolog.WarnLevel
	if z.Core().Enabled(zapcore.DebugLevel) {
		level = istiolog.DebugLevel
	}
	opts.SetDefaultOutputLevel(istiolog.DefaultScopeName, level)
	for name := range istiolog.Scopes() {
		opts.SetDefaultOutputLevel(name, level)
	}
	core := z.Named("istio").Core()
	opts.WithExtension(func(zapcore.Core) (zapcore.Core, func() error, error) {
		return core, func() error { return nil }, nil
	})
	return istiolog.Configure(opts)
}

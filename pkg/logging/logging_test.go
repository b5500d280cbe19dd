package logging

import (
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestParseLevel(t *testing.T) {
	cases := map[string]struct {
		want    zapcore.Level
		wantErr bool
	}{
		"":      {want: zapcore.InfoLevel},
		"info":  {want: zapcore.InfoLevel},
		"DEBUG": {want: zapcore.DebugLevel},
		"warn":  {want: zapcore.WarnLevel},
		"error": {want: zapcore.ErrorLevel},
		"0":     {want: zapcore.InfoLevel},
		"4":     {want: zapcore.Level(-4)},
		"loud":  {wantErr: true},
		"11":    {wantErr: true},
		"-1":    {wantErr: true},
	}
	for in, tc := range cases {
		t.Run(in, func(t *testing.T) {
			got, err := parseLevel(in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseLevel(%q) = %v, want an error", in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseLevel(%q) = %v, %v; want %v", in, got, err, tc.want)
			}
		})
	}
}

func TestNewRejectsUnknownFormat(t *testing.T) {
	if _, _, err := New(Options{Format: "xml"}); err == nil {
		t.Fatal("New accepted log format xml")
	}
	if _, _, err := New(Options{Format: FormatConsole, Level: "debug"}); err != nil {
		t.Fatalf("New(console, debug): %v", err)
	}
}

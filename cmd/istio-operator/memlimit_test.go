package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDecideMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    memoryLimitDecision
		wantErr string
	}{
		{
			name: "the manifest's 512Mi limit gives 90%",
			env:  map[string]string{"MEMORY_LIMIT": "536870912"},
			want: memoryLimitDecision{Set: true, Limit: 483183820, Container: 512 * mib, Source: "90% of MEMORY_LIMIT"},
		},
		{
			name: "1Gi",
			env:  map[string]string{"MEMORY_LIMIT": "1073741824"},
			want: memoryLimitDecision{Set: true, Limit: 966367641, Container: 1024 * mib, Source: "90% of MEMORY_LIMIT"},
		},
		{
			name: "rounded down",
			env:  map[string]string{"MEMORY_LIMIT": "19"},
			want: memoryLimitDecision{Set: true, Limit: 17, Container: 19, Source: "90% of MEMORY_LIMIT"},
		},
		{
			name: "surrounding blanks",
			env:  map[string]string{"MEMORY_LIMIT": " 1000\n"},
			want: memoryLimitDecision{Set: true, Limit: 900, Container: 1000, Source: "90% of MEMORY_LIMIT"},
		},
		{
			name: "no overflow near the int64 maximum",
			env:  map[string]string{"MEMORY_LIMIT": "9223372036854775807"},
			want: memoryLimitDecision{Set: true, Limit: math.MaxInt64 / 100 * 90, Container: math.MaxInt64, Source: "90% of MEMORY_LIMIT"},
		},
		{
			name: "an explicit GOMEMLIMIT wins",
			env:  map[string]string{"MEMORY_LIMIT": "536870912", "GOMEMLIMIT": "300MiB"},
			want: memoryLimitDecision{Source: "GOMEMLIMIT=300MiB"},
		},
		{
			name: "neither: no limit",
			env:  map[string]string{},
			want: memoryLimitDecision{Source: "no MEMORY_LIMIT and no GOMEMLIMIT: no soft memory limit"},
		},
		{name: "a quantity is not bytes", env: map[string]string{"MEMORY_LIMIT": "512Mi"}, wantErr: `MEMORY_LIMIT="512Mi"`},
		{name: "zero", env: map[string]string{"MEMORY_LIMIT": "0"}, wantErr: `MEMORY_LIMIT="0"`},
		{name: "negative", env: map[string]string{"MEMORY_LIMIT": "-1"}, wantErr: `MEMORY_LIMIT="-1"`},
		{name: "too large", env: map[string]string{"MEMORY_LIMIT": "9223372036854775808"}, wantErr: "positive number of bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decideMemoryLimit(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q (decision %+v)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got.Set && (got.Limit > got.Container/10*9+got.Container%10 || got.Limit < got.Container/10*9-1) {
				t.Errorf("limit %d is not 90%% of %d", got.Limit, got.Container)
			}
		})
	}
}

// TestApplyMemoryLimit checks that the decision reaches the runtime.
func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	if got := applyMemoryLimit(memoryLimitDecision{Set: true, Limit: 450 << 20}); got != 450<<20 {
		t.Errorf("applied limit %d, want %d", got, 450<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 450<<20 {
		t.Errorf("runtime limit %d, want %d", got, 450<<20)
	}
	// Not set: the runtime's limit (from GOMEMLIMIT, or none) stays.
	if got := applyMemoryLimit(memoryLimitDecision{Source: "GOMEMLIMIT=1GiB"}); got != 450<<20 {
		t.Errorf("an unset decision changed the limit to %d", got)
	}
}

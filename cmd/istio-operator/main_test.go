package main

import "testing"

// Flags the operator cannot run with stop it at start with exit code 2,
// before it connects anywhere.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--proxy-restarts-per-second=0.05"},
		{"--proxy-restarts-per-second=-1"},
		{"--istio-registry=https://registry.example.com"},
		{"--image-pull-secrets=Not_A_Name"},
		{"--platform-namespaces=Bad_Namespace"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

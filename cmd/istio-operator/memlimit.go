package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

const (
	// memoryLimitEnv holds the container's memory limit in bytes
	// (deploy/base/deployment.yaml fills it from limits.memory).
	memoryLimitEnv = "MEMORY_LIMIT"
	// memoryLimitPercent is the share of the container's memory limit the
	// Go runtime's soft limit is set to. The rest is for what the Go heap
	// limit does not cover: goroutine stacks beyond the runtime's
	// accounting, the binary's mapped pages, fragmentation, and the page
	// cache of what Istio's renderer writes to /tmp, which the kernel
	// charges to the container. At 100% the runtime starts collecting hard
	// only when the kernel is about to OOM-kill the process.
	memoryLimitPercent = 90
)

// memoryLimitDecision is what the operator does with the Go runtime's soft
// memory limit at start-up.
type memoryLimitDecision struct {
	// Set is whether the operator calls debug.SetMemoryLimit(Limit).
	Set bool
	// Limit is the soft limit in bytes (when Set).
	Limit int64
	// Container is the container's memory limit read from MEMORY_LIMIT,
	// 0 when unset.
	Container int64
	// Source says where the limit comes from, for the log.
	Source string
}

// decideMemoryLimit computes the Go runtime's soft memory limit: an
// explicit GOMEMLIMIT wins (the runtime has already applied it); else
// memoryLimitPercent of MEMORY_LIMIT; else none. A MEMORY_LIMIT that is
// not a positive number of bytes is an error: the manifest sets it from
// resourceFieldRef, which gives a plain integer.
func decideMemoryLimit(getenv func(string) string) (memoryLimitDecision, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return memoryLimitDecision{Source: "GOMEMLIMIT=" + v}, nil
	}
	raw := strings.TrimSpace(getenv(memoryLimitEnv))
	if raw == "" {
		return memoryLimitDecision{Source: "no " + memoryLimitEnv + " and no GOMEMLIMIT: no soft memory limit"}, nil
	}
	container, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || container <= 0 {
		return memoryLimitDecision{}, fmt.Errorf("%s=%q: want the container's memory limit as a positive number of bytes", memoryLimitEnv, raw)
	}
	return memoryLimitDecision{
		Set:       true,
		Limit:     percentOf(container, memoryLimitPercent),
		Container: container,
		Source:    fmt.Sprintf("%d%% of %s", memoryLimitPercent, memoryLimitEnv),
	}, nil
}

// percentOf returns p% of n, rounded down, without overflowing.
func percentOf(n int64, p int64) int64 {
	if n > math.MaxInt64/100 {
		return n / 100 * p
	}
	return n * p / 100
}

// applyMemoryLimit sets the Go runtime's soft memory limit as decided and
// returns the limit in force (math.MaxInt64 when there is none).
func applyMemoryLimit(d memoryLimitDecision) int64 {
	if d.Set {
		debug.SetMemoryLimit(d.Limit)
	}
	return debug.SetMemoryLimit(-1)
}

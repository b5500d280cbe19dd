package operatorproc

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// Seeded returns a test's random source of fault points. The seed is
// logged, and the environment variable env sets it, so that a failing
// run's fault points can be repeated.
func Seeded(t *testing.T, env string) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, s, err)
		}
		seed = v
	}
	t.Logf("random fault points from seed %d (repeat with %s=%d)", seed, env, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

package exepages

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

const sample = `00400000-0210a000 r--p 00000000 fe:00 42 /bin/op
Size:              29736 kB
Rss:                3432 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
0210a000-04e11000 r-xp 01d0a000 fe:00 42 /bin/op
Rss:               37064 kB
Anonymous:             0 kB
08983000-08984000 r--p 08582000 fe:00 42 /bin/op
Rss:                   4 kB
Anonymous:             4 kB
08984000-08af3000 rw-p 08583000 fe:00 42 /bin/op
Rss:                1076 kB
Anonymous:           420 kB
08af3000-08b00000 r--p 00000000 fe:00 43 /lib/other.so
Rss:                  12 kB
Anonymous:             0 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             4 kB
`

func TestReleasableOnlyUncopiedReadOnlyPagesOfTheExecutable(t *testing.T) {
	got := releasable([]byte(sample), 42)
	want := []mapping{
		{start: 0x400000, end: 0x210a000, rss: 3432 << 10},
		{start: 0x210a000, end: 0x4e11000, rss: 37064 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("releasable = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReleaseLowersFileBackedResidentMemory(t *testing.T) {
	before := rssFile(t)
	released, err := release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if released <= 0 {
		t.Fatalf("released %d bytes, want some", released)
	}
	// The test binary keeps running code, which maps some pages again.
	if after >= before {
		t.Fatalf("RssFile %d KiB before and %d KiB after releasing %d KiB", before, after, released>>10)
	}
	t.Logf("RssFile %d KiB -> %d KiB (released %d KiB)", before, after, released>>10)
}

func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

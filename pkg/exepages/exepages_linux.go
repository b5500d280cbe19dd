package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Release drops the mappings of the executable's read-only pages. A failure
// costs only memory, so it is logged, not returned.
func Release(logger klog.Logger) {
	released, err := release()
	if err != nil {
		logger.Error(err, "Releasing the executable's pages")
		return
	}
	logger.V(1).Info("Released the executable's pages", "MiB", released>>20)
}

// release returns how many resident bytes it released.
func release() (int64, error) {
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	st, ok := exe.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("no inode for /proc/self/exe")
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range releasable(smaps, st.Ino) {
		// Without huge page mappings, a fault maps what runs, not the 2 MiB
		// around it.
		for _, advice := range []uintptr{syscall.MADV_NOHUGEPAGE, syscall.MADV_DONTNEED} {
			if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, advice); errno != 0 {
				return released, fmt.Errorf("madvise(%d) %#x-%#x: %w", advice, m.start, m.end, errno)
			}
		}
		released += m.rss
	}
	dropCache.Do(func() { err = dropPageCache() })
	return released, err
}

// dropCache drops the executable's page cache once: afterwards the cache
// holds the pages that faults read, in folios the size of a fault's
// read-ahead, and releases only need to unmap.
var dropCache sync.Once

// dropPageCache lets the kernel drop the executable's page cache that no
// process maps. Writing or unpacking the binary leaves it in folios of up to
// 2 MiB, and a fault maps a whole folio: one byte of code run makes 2 MiB
// resident. Read again by faults, pages come in read-ahead sized folios.
func dropPageCache() error {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	return nil
}

type mapping struct {
	start, end uintptr
	rss        int64
}

// releasable parses smaps and returns the private, non-writable mappings of
// the file with the given inode that hold no anonymous (copied) page.
func releasable(smaps []byte, inode uint64) []mapping {
	var (
		out     []mapping
		cur     mapping
		inScope bool
		anon    int64
	)
	flush := func() {
		if inScope && anon == 0 && cur.rss > 0 {
			out = append(out, cur)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping header: start-end perms offset dev inode [path].
			flush()
			cur, inScope, anon = mapping{}, false, 0
			if len(f) < 5 {
				continue
			}
			start, end, found := strings.Cut(f[0], "-")
			s, err1 := strconv.ParseUint(start, 16, 64)
			e, err2 := strconv.ParseUint(end, 16, 64)
			ino, err3 := strconv.ParseUint(f[4], 10, 64)
			perms := f[1]
			inScope = found && err1 == nil && err2 == nil && err3 == nil &&
				ino == inode && len(perms) == 4 && perms[1] == '-' && perms[3] == 'p'
			cur = mapping{start: uintptr(s), end: uintptr(e)}
			continue
		}
		if !inScope || len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = kib(f[1])
		case "Anonymous:":
			anon = kib(f[1])
		}
	}
	flush()
	return out
}

func kib(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n << 10
}

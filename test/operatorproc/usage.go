package operatorproc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// Usage is what the kernel accounts to the operator process.
type Usage struct {
	// CPUSeconds is user plus system time, including any reaped children.
	CPUSeconds float64
	// RSSBytes is the current resident set; PeakRSSBytes is VmHWM, the peak
	// since the process started or since ResetPeakRSS.
	RSSBytes     int64
	PeakRSSBytes int64
	// AnonRSSBytes is the resident anonymous memory (heap, stacks);
	// FileRSSBytes the resident pages of files, mostly the binary's own.
	// The kernel may map a binary's text in 2 MiB pages (FilePmdMapped in
	// /proc/<pid>/smaps), so that all of it counts as resident.
	AnonRSSBytes int64
	FileRSSBytes int64
}

// ReadUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadUsage(pid int) (Usage, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("reading the operator's CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing parenthesis, which is field 3.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, s)
	}
	var ticks int64
	// utime, stime, cutime, cstime are fields 14-17 (1-based), i.e. 11-14
	// counted from field 3.
	for _, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return Usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	u := Usage{CPUSeconds: float64(ticks) / clockTicks}

	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("reading the operator's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &u.RSSBytes
		case "VmHWM":
			dst = &u.PeakRSSBytes
		case "RssAnon":
			dst = &u.AnonRSSBytes
		case "RssFile":
			dst = &u.FileRSSBytes
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Usage{}, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return u, sc.Err()
}

// ResetPeakRSS sets VmHWM back to the current RSS (clear_refs value 5), so
// that a phase's peak is measured apart from the install before it, whose
// chart rendering is the process's largest allocation.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

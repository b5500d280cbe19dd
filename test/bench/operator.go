package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// operatorProcess is the operator binary running as a child process, so that
// its CPU time and memory are its own and not mixed with the harness's.
type operatorProcess struct {
	cmd        *exec.Cmd
	logPath    string
	logFile    *os.File
	metricsURL string
	readyzURL  string
	exited     chan struct{}
	waitErr    error
	http       *http.Client
}

// buildOperator compiles the operator into out, as `make build` does.
func buildOperator(ctx context.Context, root, out string) error {
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	ldflags := "-X main.commit=" + gitCommit(root)
	cmd := exec.CommandContext(ctx, goTool, "build", "-ldflags", ldflags, "-o", out, "./cmd/istio-operator")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the operator: %w", err)
	}
	return nil
}

// supportedFlags returns the flag names the binary's usage text lists, so
// that the harness can run against an operator built before a flag existed.
func supportedFlags(ctx context.Context, binary string) (map[string]bool, error) {
	cmd := exec.CommandContext(ctx, binary, "-h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// -h exits 0 with ContinueOnError; any exit code still printed the usage.
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("%s -h: %w", binary, err)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-") {
			continue
		}
		name := strings.TrimLeft(strings.Fields(line)[0], "-")
		flags[name] = true
	}
	return flags, nil
}

// startOperator starts binary with args plus free loopback ports for metrics
// and health, logging to logPath. The child gets its own process group, so a
// Ctrl-C reaches only the harness, which then stops the operator first and
// the cluster after it; and it gets SIGTERM should the harness die.
func startOperator(binary, logPath string, args []string) (*operatorProcess, error) {
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	healthAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args = append([]string{
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", healthAddr,
		"--log-format", "console",
	}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	p := &operatorProcess{
		cmd:        cmd,
		logPath:    logPath,
		logFile:    logFile,
		metricsURL: "http://" + metricsAddr + "/metrics",
		readyzURL:  "http://" + healthAddr + "/readyz",
		exited:     make(chan struct{}),
		http:       &http.Client{Timeout: 10 * time.Second},
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (p *operatorProcess) pid() int { return p.cmd.Process.Pid }

// alive returns an error, with the tail of the operator's log, once the
// process has exited: every wait checks it, so that a crash fails the run at
// once instead of running into a timeout.
func (p *operatorProcess) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("the operator exited (%v); last lines of %s:\n%s", p.waitErr, p.logPath, tailFile(p.logPath, 30))
	default:
		return nil
	}
}

// waitReady waits until /readyz answers 200: every cache has synced and the
// workers run.
func (p *operatorProcess) waitReady(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, 100*time.Millisecond, "the operator's /readyz", func(ctx context.Context) (bool, error) {
		if err := p.alive(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.readyzURL, nil)
		if err != nil {
			return false, err
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// stop sends SIGTERM (a clean stop: workers drain, the process exits 0) and
// kills the process if it has not exited within grace.
func (p *operatorProcess) stop(grace time.Duration) error {
	defer p.logFile.Close()
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping the operator: %w", err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("the operator exited with %v after SIGTERM (log: %s)", p.waitErr, p.logPath)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("the operator did not exit within %s of SIGTERM; killed it (log: %s)", grace, p.logPath)
	}
}

// usage is what the kernel accounts to the operator process.
type usage struct {
	// CPUSeconds is user plus system time, including any reaped children.
	CPUSeconds float64
	// RSSBytes is the current resident set; PeakRSSBytes is VmHWM, the peak
	// since the process started or since resetPeakRSS.
	RSSBytes     int64
	PeakRSSBytes int64
}

// readUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func readUsage(pid int) (usage, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading the operator's CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing parenthesis, which is field 3.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return usage{}, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, s)
	}
	var ticks int64
	// utime, stime, cutime, cstime are fields 14-17 (1-based), i.e. 11-14
	// counted from field 3.
	for _, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	u := usage{CPUSeconds: float64(ticks) / clockTicks}

	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading the operator's memory: %w", err)
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
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return u, sc.Err()
}

// resetPeakRSS sets VmHWM back to the current RSS (clear_refs value 5), so
// that a phase's peak is measured apart from the install before it, whose
// chart rendering is the process's largest allocation.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricSet is one scrape of the operator's /metrics.
type metricSet []sample

// scrape fetches and parses /metrics.
func (p *operatorProcess) scrape(ctx context.Context) (metricSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	// Ask for the classic text format, not OpenMetrics or protobuf.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the operator's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the operator's metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics parses the text exposition format with Prometheus' own
// parser and flattens it into samples as they appear on the wire:
// histograms as name_bucket{le}, name_sum and name_count.
func parseMetrics(r io.Reader) (metricSet, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the operator's metrics: %w", err)
	}
	var set metricSet
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(name string, extra map[string]string, v float64) {
				ls := maps.Clone(labels)
				maps.Copy(ls, extra)
				set = append(set, sample{name: name, labels: ls, value: v})
			}
			switch {
			case m.Histogram != nil:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					add(name+"_bucket", map[string]string{"le": strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)}, float64(b.GetCumulativeCount()))
				}
				if !inf {
					add(name+"_bucket", map[string]string{"le": "+Inf"}, float64(h.GetSampleCount()))
				}
				add(name+"_sum", nil, h.GetSampleSum())
				add(name+"_count", nil, float64(h.GetSampleCount()))
			case m.Counter != nil:
				add(name, nil, m.GetCounter().GetValue())
			case m.Gauge != nil:
				add(name, nil, m.GetGauge().GetValue())
			case m.Untyped != nil:
				add(name, nil, m.GetUntyped().GetValue())
			case m.Summary != nil:
				add(name+"_sum", nil, m.GetSummary().GetSampleSum())
				add(name+"_count", nil, float64(m.GetSummary().GetSampleCount()))
			}
		}
	}
	return set, nil
}

// sum adds up the samples of name whose labels match every pair in match.
func (m metricSet) sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range m {
		if s.name == name && matches(s.labels, match) {
			total += s.value
		}
	}
	return total
}

// sumBy adds up the samples of name grouped by the value of label.
func (m metricSet) sumBy(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.name == name {
			out[s.labels[label]] += s.value
		}
	}
	return out
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

const apiRequestsMetric = "istio_operator_api_requests_total"

// requestCounts are the operator's API requests by verb and by resource.
type requestCounts struct {
	ByVerb     map[string]float64 `json:"byVerb"`
	ByResource map[string]float64 `json:"byResource"`
	Total      float64            `json:"total"`
}

func (m metricSet) requests() requestCounts {
	rc := requestCounts{
		ByVerb:     m.sumBy(apiRequestsMetric, "verb"),
		ByResource: map[string]float64{},
	}
	for _, s := range m {
		if s.name == apiRequestsMetric {
			rc.ByResource[s.labels["verb"]+" "+s.labels["resource"]] += s.value
			rc.Total += s.value
		}
	}
	return rc
}

// minus is the difference of two cumulative counts, zeros left out.
func (rc requestCounts) minus(before requestCounts) requestCounts {
	diff := func(a, b map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range a {
			if d := v - b[k]; d != 0 {
				out[k] = d
			}
		}
		return out
	}
	return requestCounts{
		ByVerb:     diff(rc.ByVerb, before.ByVerb),
		ByResource: diff(rc.ByResource, before.ByResource),
		Total:      rc.Total - before.Total,
	}
}

// writeVerbs are the verbs that change the cluster; the operator counts a
// create as "post".
var writeVerbs = []string{"create", "post", "update", "patch", "apply", "delete", "deletecollection"}

func (rc requestCounts) writes() float64 {
	var n float64
	for _, v := range writeVerbs {
		n += rc.ByVerb[v]
	}
	return n
}

func tailFile(path string, lines int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func gitCommit(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

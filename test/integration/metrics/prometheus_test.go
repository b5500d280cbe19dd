package metrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/meshkeeper/istio-operator/test/cluster"
	"github.com/meshkeeper/istio-operator/test/metricsdoc"
	"github.com/meshkeeper/istio-operator/test/operatorproc"
)

const (
	// scrapeConfigPath is the scrape configuration the test runs
	// Prometheus with, relative to the repository root.
	scrapeConfigPath = "hack/prometheus/prometheus.yml"
	scrapeJob        = "istio-operator"
	// scrapeInterval is short so that rate() has samples within seconds.
	scrapeInterval = "1s"
)

// prometheusBinary is the Prometheus `make tools` builds from the pinned
// module (hack/prometheus), or $PROMETHEUS_BINARY: the screenshot needs the
// web UI's assets, which a module build leaves out and a release binary
// carries. Without one the test fails: it is the point of the test.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PROMETHEUS_BINARY"); bin != "" {
		return bin
	}
	bin, err := cluster.Tool("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// prometheusServer is a Prometheus process that scrapes the operator.
type prometheusServer struct {
	url     string
	api     promv1.API
	started time.Time
}

// scrapeConfig is the repository's scrape configuration with target as the
// operator's address and a short scrape interval.
func scrapeConfig(t *testing.T, target string) []byte {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, scrapeConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", scrapeConfigPath, err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	global["scrape_interval"], global["evaluation_interval"] = scrapeInterval, scrapeInterval
	found := false
	jobs, _ := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		if job["job_name"] != scrapeJob {
			continue
		}
		statics, _ := job["static_configs"].([]any)
		if len(statics) != 1 {
			t.Fatalf("%s: job %s has %d static_configs, want 1", scrapeConfigPath, scrapeJob, len(statics))
		}
		statics[0].(map[string]any)["targets"] = []string{target}
		found = true
	}
	if !found {
		t.Fatalf("%s has no job %s", scrapeConfigPath, scrapeJob)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startPrometheus runs Prometheus until the test ends and waits until it
// has scraped the operator at target.
func startPrometheus(t *testing.T, bin, target string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, scrapeConfig(t, target), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := operatorproc.MustFreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Gone with the test binary, also when a test timeout panics it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return string(b)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("Prometheus log (tail):\n%s", logTail())
		}
	})

	client, err := promapi.NewClient(promapi.Config{Address: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	p := &prometheusServer{url: "http://" + addr, api: promv1.NewAPI(client), started: time.Now()}
	cluster.WaitFor(t, time.Minute, "Prometheus to scrape the operator at "+target, func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			t.Fatalf("Prometheus exited: %v\n%s", exitErr, logTail())
		default:
		}
		targets, err := p.api.Targets(ctx)
		if err != nil {
			return false, err
		}
		for _, tg := range targets.Active {
			if tg.ScrapePool != scrapeJob {
				continue
			}
			if tg.Health != promv1.HealthGood {
				return false, fmt.Errorf("target %s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
			return true, nil
		}
		return false, fmt.Errorf("no active target of job %s", scrapeJob)
	})
	return p
}

// waitScrapedAfter waits until Prometheus has scraped the operator after t0.
func (p *prometheusServer) waitScrapedAfter(t *testing.T, t0 time.Time) {
	t.Helper()
	cluster.WaitFor(t, 30*time.Second, "a scrape by Prometheus after "+t0.Format(time.StampMilli), func(ctx context.Context) (bool, error) {
		targets, err := p.api.Targets(ctx)
		if err != nil {
			return false, err
		}
		for _, tg := range targets.Active {
			if tg.ScrapePool == scrapeJob && tg.Health == promv1.HealthGood && tg.LastScrape.After(t0) {
				return true, nil
			}
		}
		return false, fmt.Errorf("targets: %+v", targets.Active)
	})
}

// waitForData waits until expr returns at least one series with a value
// (not NaN) and returns the series.
func (p *prometheusServer) waitForData(t *testing.T, expr string) model.Vector {
	t.Helper()
	var vec model.Vector
	cluster.WaitFor(t, 30*time.Second, "data from "+expr, func(ctx context.Context) (bool, error) {
		v, warnings, err := p.api.Query(ctx, expr, time.Now())
		if err != nil {
			return false, err
		}
		if len(warnings) > 0 {
			return false, fmt.Errorf("warnings: %v", warnings)
		}
		var ok bool
		if vec, ok = v.(model.Vector); !ok {
			return false, fmt.Errorf("a %s, want a vector", v.Type())
		}
		for _, s := range vec {
			if !math.IsNaN(float64(s.Value)) {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d series, none with a value: %v", len(vec), vec)
	})
	return vec
}

// screenshotQueries pick the queries of the picture in docs/metrics.md:
// restart rate, outdated proxies, p99 reconcile duration, queue depth.
var screenshotQueries = []string{"istio_operator_proxy_restarts_total", "istio_operator_outdated_proxies", "histogram_quantile", "workqueue_depth"}

// screenshot saves a headless Chromium picture of Prometheus' graph page
// showing the picked queries over the run.
func (p *prometheusServer) screenshot(t *testing.T, path string, queries []metricsdoc.Query) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("METRICS_SCREENSHOT needs Debian's chromium on PATH: apt-get install -y chromium")
	}
	// The graph page's path: Debian's build serves the classic UI.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	graph, err := resp.Location()
	if err != nil {
		t.Fatalf("Prometheus' / answers %s without a redirect to its graph page: %v", resp.Status, err)
	}
	span := time.Since(p.started).Truncate(time.Minute) + time.Minute
	params := url.Values{}
	for i, pick := range screenshotQueries {
		expr := ""
		for _, q := range queries {
			if strings.Contains(q.Expr, pick) {
				expr = q.Expr
				break
			}
		}
		if expr == "" {
			t.Fatalf("no documented query contains %q", pick)
		}
		g := fmt.Sprintf("g%d.", i)
		params.Set(g+"expr", expr)
		params.Set(g+"tab", "0")
		params.Set(g+"range_input", fmt.Sprintf("%dm", int(span.Minutes())))
	}
	graph.RawQuery = params.Encode()
	page := graph.String()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(abs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The virtual time budget lets the page's scripts query Prometheus and
	// draw before the picture is taken.
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), fmt.Sprintf("--window-size=1400,%d", 100+790*len(screenshotQueries)),
		"--virtual-time-budget=15000", "--screenshot="+abs, page)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if st, err := os.Stat(abs); err != nil || st.Size() == 0 {
		t.Fatalf("chromium wrote no picture to %s (%v):\n%s", abs, err, out)
	}
	t.Logf("screenshot of %s written to %s", page, abs)
}

package operatorproc

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one line of the Prometheus text exposition format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is one scrape of the operator's /metrics.
type Metrics []Sample

// Scrape fetches and parses /metrics.
func (p *Process) Scrape(ctx context.Context) (Metrics, error) {
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
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses the text exposition format with Prometheus' own
// parser and flattens it into samples as they appear on the wire:
// histograms as name_bucket{le}, name_sum and name_count.
func ParseMetrics(r io.Reader) (Metrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the operator's metrics: %w", err)
	}
	var set Metrics
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(name string, extra map[string]string, v float64) {
				ls := maps.Clone(labels)
				maps.Copy(ls, extra)
				set = append(set, Sample{Name: name, Labels: ls, Value: v})
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

// Sum adds up the samples of name whose labels match every pair in match.
func (m Metrics) Sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range m {
		if s.Name == name && matches(s.Labels, match) {
			total += s.Value
		}
	}
	return total
}

// SumBy adds up the samples of name grouped by the value of label.
func (m Metrics) SumBy(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.Name == name {
			out[s.Labels[label]] += s.Value
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

// RequestCounts are the operator's API requests by verb and by resource.
type RequestCounts struct {
	ByVerb     map[string]float64 `json:"byVerb"`
	ByResource map[string]float64 `json:"byResource"`
	Total      float64            `json:"total"`
}

// Requests returns the operator's cumulative API requests.
func (m Metrics) Requests() RequestCounts {
	rc := RequestCounts{
		ByVerb:     m.SumBy(apiRequestsMetric, "verb"),
		ByResource: map[string]float64{},
	}
	for _, s := range m {
		if s.Name == apiRequestsMetric {
			rc.ByResource[s.Labels["verb"]+" "+s.Labels["resource"]] += s.Value
			rc.Total += s.Value
		}
	}
	return rc
}

// Minus is the difference of two cumulative counts, zeros left out.
func (rc RequestCounts) Minus(before RequestCounts) RequestCounts {
	diff := func(a, b map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range a {
			if d := v - b[k]; d != 0 {
				out[k] = d
			}
		}
		return out
	}
	return RequestCounts{
		ByVerb:     diff(rc.ByVerb, before.ByVerb),
		ByResource: diff(rc.ByResource, before.ByResource),
		Total:      rc.Total - before.Total,
	}
}

// writeVerbs are the verbs that change the cluster; the operator counts a
// create as "post".
var writeVerbs = []string{"create", "post", "update", "patch", "apply", "delete", "deletecollection"}

// IsWrite reports whether verb, as the operator's metrics name it, changes
// the cluster.
func IsWrite(verb string) bool { return slices.Contains(writeVerbs, verb) }

// Writes is the number of requests that changed the cluster.
func (rc RequestCounts) Writes() float64 {
	var n float64
	for _, v := range writeVerbs {
		n += rc.ByVerb[v]
	}
	return n
}

// CPUProfile records the operator's CPU for the given time into path. The
// operator must run with --enable-profiling.
func (p *Process) CPUProfile(ctx context.Context, d time.Duration, path string) error {
	return p.saveProfile(ctx, fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), d, path)
}

// HeapProfile saves the operator's heap profile (live objects at the last
// GC, and allocations since the start) into path. The operator must run
// with --enable-profiling.
func (p *Process) HeapProfile(ctx context.Context, path string) error {
	return p.saveProfile(ctx, "heap?gc=1", 0, path)
}

// saveProfile saves one of Go's /debug/pprof profiles, which takes d to
// record, into path.
func (p *Process) saveProfile(ctx context.Context, profile string, d time.Duration, path string) error {
	url := strings.TrimSuffix(p.metricsURL, "/metrics") + "/debug/pprof/" + profile
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// The process's own client gives up after 10 s.
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("profiling the operator: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling the operator: %s (is it running with --enable-profiling?)", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

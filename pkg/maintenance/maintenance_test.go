package maintenance

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// win is a window: "Sat,Sun 22:00 4h Europe/Berlin"; days "*" for every day,
// zone left out for UTC.
func win(t *testing.T, s string) v1alpha2.MaintenanceWindow {
	t.Helper()
	f := strings.Fields(s)
	if len(f) < 3 {
		t.Fatalf("window %q: want days, start, duration [, zone]", s)
	}
	d, err := time.ParseDuration(f[2])
	if err != nil {
		t.Fatal(err)
	}
	w := v1alpha2.MaintenanceWindow{Start: f[1], Duration: metav1.Duration{Duration: d}}
	if f[0] != "*" {
		for _, day := range strings.Split(f[0], ",") {
			w.Days = append(w.Days, v1alpha2.Weekday(day))
		}
	}
	if len(f) > 3 {
		w.TimeZone = f[3]
	}
	return w
}

func schedule(t *testing.T, windows ...string) *Schedule {
	t.Helper()
	ws := make([]v1alpha2.MaintenanceWindow, len(windows))
	for i, s := range windows {
		ws[i] = win(t, s)
	}
	s, err := New(ws)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// format is t as the controller reports it: RFC 3339 in t's zone.
func format(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

func TestAt(t *testing.T) {
	// 2026-12-05 is a Saturday; 2026-03-29 and 2026-10-25 are the Sundays
	// Europe switches to and from daylight saving time, 2026-03-08 and
	// 2026-11-01 the United States'.
	for name, tc := range map[string]struct {
		windows []string
		now     string
		open    bool
		closes  string // when open; any zone
		next    string // RFC 3339 in the zone of the window that opens
	}{
		"before a daily window": {
			windows: []string{"* 02:00 1h"}, now: "2026-12-05T01:59:59Z",
			next: "2026-12-05T02:00:00Z",
		},
		"at its start": {
			windows: []string{"* 02:00 1h"}, now: "2026-12-05T02:00:00Z",
			open: true, closes: "2026-12-05T03:00:00Z", next: "2026-12-06T02:00:00Z",
		},
		"at its end": {
			windows: []string{"* 02:00 1h"}, now: "2026-12-05T03:00:00Z",
			next: "2026-12-06T02:00:00Z",
		},
		"a Saturday window across midnight, Sunday 01:00": {
			windows: []string{"Sat 22:00 4h"}, now: "2026-12-06T01:00:00Z",
			open: true, closes: "2026-12-06T02:00:00Z", next: "2026-12-12T22:00:00Z",
		},
		"a Saturday window across midnight, after it on Sunday": {
			windows: []string{"Sat 22:00 4h"}, now: "2026-12-06T02:00:00Z",
			next: "2026-12-12T22:00:00Z",
		},
		"a Saturday window, Saturday before it": {
			windows: []string{"Sat 22:00 4h"}, now: "2026-12-05T21:59:00Z",
			next: "2026-12-05T22:00:00Z",
		},
		"a weekend window over several days": {
			windows: []string{"Fri 20:00 60h"}, now: "2026-12-06T12:00:00Z",
			open: true, closes: "2026-12-07T08:00:00Z", next: "2026-12-11T20:00:00Z",
		},
		"only on its days: Tuesday waits for Wednesday": {
			windows: []string{"Mon,Wed 09:00 1h"}, now: "2026-12-01T10:00:00Z",
			next: "2026-12-02T09:00:00Z",
		},
		"only on its days: Wednesday after it waits for Monday": {
			windows: []string{"Mon,Wed 09:00 1h"}, now: "2026-12-02T10:30:00Z",
			next: "2026-12-07T09:00:00Z",
		},
		"a window of a week, once a week, never closes": {
			windows: []string{"Mon 00:00 168h"}, now: "2026-12-03T12:00:00Z",
			open: true, closes: "2026-12-14T00:00:00Z", next: "2026-12-07T00:00:00Z",
		},
		"overlapping windows close together": {
			windows: []string{"* 01:00 2h", "* 02:00 2h"}, now: "2026-12-05T01:30:00Z",
			open: true, closes: "2026-12-05T04:00:00Z", next: "2026-12-05T02:00:00Z",
		},
		"overlapping windows, inside the second": {
			windows: []string{"* 01:00 2h", "* 02:00 2h"}, now: "2026-12-05T03:30:00Z",
			open: true, closes: "2026-12-05T04:00:00Z", next: "2026-12-06T01:00:00Z",
		},
		"a window inside another": {
			windows: []string{"* 01:00 4h", "* 02:00 1h"}, now: "2026-12-05T02:30:00Z",
			open: true, closes: "2026-12-05T05:00:00Z", next: "2026-12-06T01:00:00Z",
		},
		"adjoining windows are one span": {
			windows: []string{"* 01:00 1h", "* 02:00 1h"}, now: "2026-12-05T01:30:00Z",
			open: true, closes: "2026-12-05T03:00:00Z", next: "2026-12-05T02:00:00Z",
		},
		"disjoint windows: between them, the later": {
			windows: []string{"* 05:00 1h", "* 01:00 1h"}, now: "2026-12-05T03:00:00Z",
			next: "2026-12-05T05:00:00Z",
		},
		"disjoint windows: inside the first, it alone closes": {
			windows: []string{"* 05:00 1h", "* 01:00 1h"}, now: "2026-12-05T01:30:00Z",
			open: true, closes: "2026-12-05T02:00:00Z", next: "2026-12-05T05:00:00Z",
		},
		"two windows opening at once: the first listed names the zone": {
			windows: []string{"* 03:00 1h Europe/Berlin", "* 02:00 1h"}, now: "2026-12-05T00:00:00Z",
			next: "2026-12-05T03:00:00+01:00",
		},
		"a zone east of UTC": {
			windows: []string{"* 02:00 1h Europe/Berlin"}, now: "2026-12-05T00:30:00Z",
			next: "2026-12-05T02:00:00+01:00",
		},
		"a zone east of UTC, open": {
			windows: []string{"* 02:00 1h Europe/Berlin"}, now: "2026-12-05T01:30:00Z",
			open: true, closes: "2026-12-05T02:00:00Z", next: "2026-12-06T02:00:00+01:00",
		},
		"a half-hour zone": {
			windows: []string{"* 00:00 30m Asia/Kolkata"}, now: "2026-12-05T18:00:00Z",
			next: "2026-12-06T00:00:00+05:30",
		},
		"days are the zone's: Monday 01:00 in Tokyo is Sunday in UTC": {
			windows: []string{"Mon 01:00 1h Asia/Tokyo"}, now: "2026-12-06T16:30:00Z",
			open: true, closes: "2026-12-06T17:00:00Z", next: "2026-12-14T01:00:00+09:00",
		},
		"days are the zone's: Sunday in Tokyo is not Monday": {
			windows: []string{"Mon 01:00 1h Asia/Tokyo"}, now: "2026-12-05T16:30:00Z",
			next: "2026-12-07T01:00:00+09:00",
		},
		"a zone west of UTC, its Saturday evening already Sunday in UTC": {
			windows: []string{"Sat 22:00 1h America/Argentina/Buenos_Aires"}, now: "2026-12-06T01:30:00Z",
			open: true, closes: "2026-12-06T02:00:00Z", next: "2026-12-12T22:00:00-03:00",
		},

		// Daylight saving time: a skipped start opens at the jump.
		"spring forward: a start the clocks skip opens at the jump": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-03-29T00:45:00Z",
			next: "2026-03-29T03:00:00+02:00",
		},
		"spring forward: open from the jump for the whole duration": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-03-29T01:30:00Z",
			open: true, closes: "2026-03-29T02:00:00Z", next: "2026-03-30T02:30:00+02:00",
		},
		"spring forward: a start at the jump itself": {
			windows: []string{"* 02:00 1h Europe/Berlin"}, now: "2026-03-29T00:30:00Z",
			next: "2026-03-29T03:00:00+02:00",
		},
		"spring forward: the day before": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-03-28T00:00:00Z",
			next: "2026-03-28T02:30:00+01:00",
		},
		"spring forward in New York": {
			windows: []string{"Sun 02:15 30m America/New_York"}, now: "2026-03-08T06:00:00Z",
			next: "2026-03-08T03:00:00-04:00",
		},
		"spring forward at midnight: the day's start is after the jump": {
			windows: []string{"* 00:30 1h America/Havana"}, now: "2026-03-08T04:00:00Z",
			next: "2026-03-08T01:00:00-04:00",
		},
		"a window across spring forward keeps its length": {
			windows: []string{"* 01:00 4h Europe/Berlin"}, now: "2026-03-29T00:30:00Z",
			open: true, closes: "2026-03-29T04:00:00Z", next: "2026-03-30T01:00:00+02:00",
		},

		// A repeated start opens at its first occurrence, once.
		"fall back: a start the clocks show twice opens at the first": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-10-25T00:00:00Z",
			next: "2026-10-25T02:30:00+02:00",
		},
		"fall back: open from the first": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-10-25T01:00:00Z",
			open: true, closes: "2026-10-25T01:30:00Z", next: "2026-10-26T02:30:00+01:00",
		},
		"fall back: the second 02:30 does not open it again": {
			windows: []string{"* 02:30 1h Europe/Berlin"}, now: "2026-10-25T01:45:00Z",
			next: "2026-10-26T02:30:00+01:00",
		},
		"fall back in New York": {
			windows: []string{"Sun 01:30 10m America/New_York"}, now: "2026-11-01T05:00:00Z",
			next: "2026-11-01T01:30:00-04:00",
		},
		"a window across fall back keeps its length": {
			windows: []string{"* 01:00 4h Europe/Berlin"}, now: "2026-10-25T02:30:00Z",
			open: true, closes: "2026-10-25T03:00:00Z", next: "2026-10-26T01:00:00+01:00",
		},
		"a skipped day: Samoa went from 29 to 31 December 2011": {
			windows: []string{"* 10:00 1h Pacific/Apia"}, now: "2011-12-29T21:00:00Z",
			next: "2011-12-31T00:00:00+14:00",
		},
		"the day after the skipped one": {
			windows: []string{"* 10:00 1h Pacific/Apia"}, now: "2011-12-30T11:00:00Z",
			next: "2011-12-31T10:00:00+14:00",
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := schedule(t, tc.windows...).At(at(t, tc.now))
			if got.Open != tc.open || tc.open && !got.Closes.Equal(at(t, tc.closes)) {
				t.Errorf("open %v until %s, want open %v until %s", got.Open, format(got.Closes), tc.open, tc.closes)
			}
			if format(got.Next) != tc.next {
				t.Errorf("next opens %s, want %s", format(got.Next), tc.next)
			}
		})
	}
}

// Minute by minute through the days of daylight saving changes, the
// schedule agrees with itself: closed until Next, when it opens; open until
// Closes, when it closes; and Next always within a week.
func TestAtIsConsistent(t *testing.T) {
	schedules := map[string][]string{
		"Berlin, daily in the changing hour": {"* 02:30 1h Europe/Berlin"},
		"Berlin, weekend across midnight":    {"Sat,Sun 23:00 4h Europe/Berlin", "Sun 02:00 30m Europe/Berlin"},
		"New York, overlapping":              {"* 01:00 2h America/New_York", "Sun,Mon 02:00 3h America/New_York"},
		"Santiago, midnight changes":         {"* 00:00 1h America/Santiago", "Sat 23:30 90m America/Santiago"},
		"Lord Howe, half-hour changes":       {"* 01:45 30m Australia/Lord_Howe"},
		"UTC and Kolkata":                    {"Wed 10:00 168h", "* 05:00 1m Asia/Kolkata"},
	}
	// The days around the 2026 changes of these zones.
	changes := []string{"2026-03-08", "2026-03-29", "2026-04-05", "2026-09-06", "2026-10-04", "2026-10-25", "2026-11-01"}
	for name, windows := range schedules {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := schedule(t, windows...)
			for _, day := range changes {
				begin := at(t, day+"T00:00:00Z").Add(-24 * time.Hour)
				prev := s.At(begin.Add(-time.Minute))
				for now := begin; now.Before(begin.Add(3 * 24 * time.Hour)); now = now.Add(time.Minute) {
					st := s.At(now)
					switch {
					case !st.Next.After(now) || st.Next.Sub(now) > 7*24*time.Hour+time.Hour:
						t.Fatalf("at %s: next %s, want within a week after", now, st.Next)
					case st.Open && !st.Closes.After(now):
						t.Fatalf("at %s: open until %s", now, st.Closes)
					case !prev.Open && st.Open && now.After(prev.Next):
						t.Fatalf("at %s: opened after %s, which Next promised", now, prev.Next)
					case !prev.Open && !st.Open && !prev.Next.After(now):
						t.Fatalf("at %s: still closed though Next said %s", now, prev.Next)
					case prev.Open && !st.Open && now.Before(prev.Closes):
						t.Fatalf("at %s: closed before %s", now, prev.Closes)
					case prev.Open && st.Open && now.After(prev.Closes):
						t.Fatalf("at %s: still open after %s", now, prev.Closes)
					}
					prev = st
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	if s, err := New(nil); s != nil || err != nil {
		t.Errorf("New(nil) = %v, %v; want no schedule", s, err)
	}
	ok := win(t, "* 02:00 1h")
	for name, tc := range map[string]struct {
		bad  func(*v1alpha2.MaintenanceWindow)
		want string
	}{
		"unknown time zone":   {func(w *v1alpha2.MaintenanceWindow) { w.TimeZone = "Mars/Olympus_Mons" }, `unknown time zone "Mars/Olympus_Mons"`},
		"the operator's zone": {func(w *v1alpha2.MaintenanceWindow) { w.TimeZone = "Local" }, `time zone "Local" is not an IANA time zone`},
		"start 24:00":         {func(w *v1alpha2.MaintenanceWindow) { w.Start = "24:00" }, `start "24:00" is not a time of day`},
		"start 2:00":          {func(w *v1alpha2.MaintenanceWindow) { w.Start = "2:00" }, `start "2:00" is not a time of day`},
		"a day's full name":   {func(w *v1alpha2.MaintenanceWindow) { w.Days = []v1alpha2.Weekday{"Monday"} }, `day "Monday" is not one of`},
		"30 seconds":          {func(w *v1alpha2.MaintenanceWindow) { w.Duration.Duration = 30 * time.Second }, "duration 30s is not from 1m0s to 168h0m0s"},
		"longer than a week":  {func(w *v1alpha2.MaintenanceWindow) { w.Duration.Duration = MaxDuration + time.Minute }, "duration 168h1m0s is not from"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := ok
			tc.bad(&bad)
			s, err := New([]v1alpha2.MaintenanceWindow{ok, bad})
			if s != nil || err == nil || !strings.Contains(err.Error(), tc.want) ||
				!strings.HasPrefix(err.Error(), "spec.proxyRestart.maintenanceWindows[1]: ") {
				t.Errorf("New = %v, %v; want an error for window 1 saying %q", s, err, tc.want)
			}
		})
	}
	for _, zone := range []string{"", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"} {
		w := ok
		w.TimeZone = zone
		if _, err := New([]v1alpha2.MaintenanceWindow{w}); err != nil {
			t.Errorf("time zone %q: %v", zone, err)
		}
	}
}

// Package maintenance turns the maintenance windows of an Istio resource
// (spec.proxyRestart.maintenanceWindows) into a schedule: whether a window
// is open at a given time and until when, and when the next one opens.
//
// A window opens on each of its days at its start, in its time zone, and
// stays open for its duration (elapsed time: a window across a change of
// daylight saving time keeps its length, and its end moves on the wall
// clock). It may run past midnight and into other days. Windows may
// overlap; the schedule is open while any of them is.
//
// Daylight saving time changes follow one rule. A start the clocks skip
// (02:30 when they jump from 02:00 to 03:00) opens the window at the jump,
// the first moment after the gap (03:00), with its full duration. A start
// the clocks show twice (02:30 when they fall back from 03:00 to 02:00)
// opens it once, at the first of the two (in daylight saving time).
package maintenance

import (
	"fmt"
	"slices"
	"strconv"
	"time"
	// The operator's image has no zoneinfo files; windows name IANA zones.
	_ "time/tzdata"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Bounds of a window's duration, as the schema enforces them; they also
// bound how far back and ahead the schedule looks.
const (
	MinDuration = time.Minute
	MaxDuration = 7 * 24 * time.Hour
)

// The schedule looks at the openings of each window whose start day lies
// from lookBack days before to lookAhead days after the day of the time
// asked about, in the window's zone. A window opened up to MaxDuration
// before may still be open (a day more covers a daylight saving change);
// every window opens again within a week.
const (
	lookBack  = 9
	lookAhead = 8
)

var weekdays = map[v1alpha2.Weekday]time.Weekday{
	"Sun": time.Sunday, "Mon": time.Monday, "Tue": time.Tuesday, "Wed": time.Wednesday,
	"Thu": time.Thursday, "Fri": time.Friday, "Sat": time.Saturday,
}

// Schedule is a set of weekly maintenance windows.
type Schedule struct {
	windows []window
}

type window struct {
	days         [7]bool // by time.Weekday of the day the window opens
	hour, minute int
	duration     time.Duration
	zone         *time.Location
}

// New reads the windows; it returns nil when there are none. A time zone
// unknown to the operator's zone database is an error naming the window
// (the schema cannot check zones), as is a value the schema refuses.
func New(windows []v1alpha2.MaintenanceWindow) (*Schedule, error) {
	if len(windows) == 0 {
		return nil, nil
	}
	s := &Schedule{windows: make([]window, 0, len(windows))}
	for i, mw := range windows {
		w, err := parse(mw)
		if err != nil {
			return nil, fmt.Errorf("spec.proxyRestart.maintenanceWindows[%d]: %w", i, err)
		}
		s.windows = append(s.windows, w)
	}
	return s, nil
}

func parse(mw v1alpha2.MaintenanceWindow) (window, error) {
	var w window
	if len(mw.Days) == 0 {
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range mw.Days {
		wd, ok := weekdays[d]
		if !ok {
			return w, fmt.Errorf("day %q is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun", d)
		}
		w.days[wd] = true
	}
	var err error
	if w.hour, w.minute, err = parseStart(mw.Start); err != nil {
		return w, err
	}
	w.duration = mw.Duration.Duration
	if w.duration < MinDuration || w.duration > MaxDuration {
		return w, fmt.Errorf("duration %v is not from %v to %v", w.duration, MinDuration, MaxDuration)
	}
	switch mw.TimeZone {
	case "":
		w.zone = time.UTC
	case "Local":
		// LoadLocation's name for the operator's own zone, not an IANA zone.
		return w, fmt.Errorf("time zone %q is not an IANA time zone", mw.TimeZone)
	default:
		// The schema's pattern admits no path tricks: a failure is a name
		// the zone database lacks.
		if w.zone, err = time.LoadLocation(mw.TimeZone); err != nil {
			return w, fmt.Errorf("unknown time zone %q", mw.TimeZone)
		}
	}
	return w, nil
}

// parseStart reads "HH:MM" (24 hours).
func parseStart(s string) (hour, minute int, err error) {
	if len(s) == 5 && s[2] == ':' {
		h, errH := strconv.Atoi(s[:2])
		m, errM := strconv.Atoi(s[3:])
		if errH == nil && errM == nil && h >= 0 && h < 24 && m >= 0 && m < 60 {
			return h, m, nil
		}
	}
	return 0, 0, fmt.Errorf("start %q is not a time of day as HH:MM", s)
}

// State is the schedule at one moment.
type State struct {
	// Open is true while a window is open.
	Open bool
	// Closes, while open, is when the schedule closes: the end of the span
	// the overlapping and adjoining windows keep open. Windows that keep it
	// open for longer than a week report a time a week or more ahead.
	Closes time.Time
	// Next is when a window opens next, after the moment asked about, in
	// that window's zone (the first of the windows when several open at
	// once).
	Next time.Time
}

// At is the schedule at now.
func (s *Schedule) At(now time.Time) State {
	var openings []opening
	for i := range s.windows {
		openings = s.windows[i].openings(now, openings)
	}
	// Stable: of windows opening at the same moment, the first listed wins.
	slices.SortStableFunc(openings, func(a, b opening) int { return a.start.Compare(b.start) })

	var st State
	for _, o := range openings {
		switch {
		case o.start.After(now):
			if st.Next.IsZero() {
				st.Next = o.start
			}
			// Adjoining or overlapping the open span: it stays open.
			if st.Open && !o.start.After(st.Closes) && o.end.After(st.Closes) {
				st.Closes = o.end
			}
		case o.end.After(now):
			st.Open = true
			if o.end.After(st.Closes) {
				st.Closes = o.end
			}
		}
	}
	return st
}

// opening is one occurrence of a window: open from start until end.
type opening struct {
	start, end time.Time
}

// openings appends the openings of w on the days around now's day in w's
// zone.
func (w *window) openings(now time.Time, out []opening) []opening {
	y, m, d := now.In(w.zone).Date()
	for offset := -lookBack; offset <= lookAhead; offset++ {
		// Calendar arithmetic in UTC: the weekday of a date does not depend
		// on the zone's offsets.
		day := time.Date(y, m, d+offset, 0, 0, 0, 0, time.UTC)
		if !w.days[day.Weekday()] {
			continue
		}
		start := w.startOn(day.Year(), day.Month(), day.Day())
		out = append(out, opening{start: start, end: start.Add(w.duration)})
	}
	return out
}

// startOn is the moment w opens on the given day: its start time there,
// or, where a daylight saving change skips or repeats that time, the
// moment the package's rule picks.
func (w *window) startOn(y int, m time.Month, d int) time.Time {
	t := time.Date(y, m, d, w.hour, w.minute, 0, 0, w.zone)
	want := time.Date(y, m, d, w.hour, w.minute, 0, 0, time.UTC)
	if got := wall(t); !got.Equal(want) {
		// The clocks skip the start: time.Date normalised it to one side of
		// the jump. The window opens at the jump itself.
		start, end := t.ZoneBounds()
		if got.After(want) && !start.IsZero() {
			return start
		}
		if got.Before(want) && !end.IsZero() {
			return end
		}
		return t
	}
	// The clocks may show the start twice: then open at the first, in the
	// zone in effect before the change.
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, before := start.Add(-time.Second).Zone()
	_, after := t.Zone()
	if first := t.Add(time.Duration(after-before) * time.Second); first.Before(start) && wall(first).Equal(want) {
		return first
	}
	return t
}

// wall is t's reading on the clocks of its zone, as a UTC time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

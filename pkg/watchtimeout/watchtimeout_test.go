package watchtimeout

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

type recorder struct{ got *http.Request }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.got = req
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

func TestWatchTimeouts(t *testing.T) {
	cases := []struct {
		name, method, query string
		want                url.Values // the query sent
	}{
		{
			name: "a reflector's watch is lengthened", method: http.MethodGet,
			query: "watch=true&timeoutSeconds=412&timeout=6m52s&resourceVersion=7&allowWatchBookmarks=true",
			want:  url.Values{"watch": {"true"}, "timeoutSeconds": {"2700"}, "timeout": {"45m0s"}, "resourceVersion": {"7"}, "allowWatchBookmarks": {"true"}},
		},
		{
			name: "watch=1 counts as a watch", method: http.MethodGet,
			query: "watch=1&timeoutSeconds=300",
			want:  url.Values{"watch": {"1"}, "timeoutSeconds": {"2700"}},
		},
		{
			name: "a long watch is left alone", method: http.MethodGet,
			query: "watch=true&timeoutSeconds=3600",
			want:  url.Values{"watch": {"true"}, "timeoutSeconds": {"3600"}},
		},
		{
			name: "a watch without a timeout gets the server's default", method: http.MethodGet,
			query: "watch=true",
			want:  url.Values{"watch": {"true"}},
		},
		{
			name: "a list keeps its timeout", method: http.MethodGet,
			query: "timeoutSeconds=10&limit=500",
			want:  url.Values{"timeoutSeconds": {"10"}, "limit": {"500"}},
		},
		{
			name: "not a GET", method: http.MethodPost,
			query: "watch=true&timeoutSeconds=300",
			want:  url.Values{"watch": {"true"}, "timeoutSeconds": {"300"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			tr := &Transport{next: rec, min: Min, jitter: func() float64 { return 0.5 }}
			req, err := http.NewRequest(tc.method, "https://api.example/api/v1/pods?"+tc.query, http.NoBody)
			if err != nil {
				t.Fatal(err)
			}
			before := req.URL.RawQuery
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if got := rec.got.URL.Query(); got.Encode() != tc.want.Encode() {
				t.Errorf("sent %s, want %s", got.Encode(), tc.want.Encode())
			}
			if req.URL.RawQuery != before {
				t.Errorf("the caller's request was changed: %s", req.URL.RawQuery)
			}
		})
	}
}

func TestJitterSpreadsBetweenMinAndTwiceMin(t *testing.T) {
	for _, j := range []float64{0, 0.999999} {
		rec := &recorder{}
		tr := &Transport{next: rec, min: Min, jitter: func() float64 { return j }}
		req, _ := http.NewRequest(http.MethodGet, "https://api.example/api/v1/pods?watch=true&timeoutSeconds=300", http.NoBody)
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		secs := rec.got.URL.Query().Get("timeoutSeconds")
		d, err := time.ParseDuration(secs + "s")
		if err != nil || d < Min || d >= 2*Min {
			t.Errorf("jitter %v: timeoutSeconds %s, want in [%s, %s)", j, secs, Min, 2*Min)
		}
	}
}

package message

import "testing"

func TestNamed(t *testing.T) {
	for _, tc := range []struct {
		names []string
		limit int
		want  string
	}{
		{nil, 3, ""},
		{[]string{"a"}, 3, "a"},
		{[]string{"a", "b", "c"}, 3, "a, b, c"},
		{[]string{"a", "b", "c", "d", "e"}, 2, "a, b and 3 more"},
	} {
		if got := Named(tc.names, tc.limit); got != tc.want {
			t.Errorf("Named(%v, %d) = %q, want %q", tc.names, tc.limit, got, tc.want)
		}
	}
}

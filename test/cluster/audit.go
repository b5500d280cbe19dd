package cluster

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type AuditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject            json.RawMessage `json:"requestObject"`
	RequestURI               string          `json:"requestURI"`
	RequestReceivedTimestamp metav1.Time     `json:"requestReceivedTimestamp"`
}

// AuditEvents calls each with every event of the cluster's audit log so
// far, in order, with its line number; the cluster must have been created
// with an AuditPolicy.
func (c *Cluster) AuditEvents(t *testing.T, each func(line int, ev *AuditEvent)) {
	t.Helper()
	f, err := os.Open(c.AuditLog())
	if err != nil {
		t.Fatalf("the API server's audit log: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var ev AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit log line %d: %v", line, err)
		}
		each(line, &ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("the API server's audit log: %v", err)
	}
}

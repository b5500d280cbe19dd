// Package message holds the wording helpers that the sentences of
// conditions and Events share, so that every controller and the installer
// list things the same way.
package message

import (
	"fmt"
	"strings"
)

// Named lists the first limit names and counts the rest: "a, b and 3 more".
func Named(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}

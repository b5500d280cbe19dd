//go:build !linux

package exepages

import "k8s.io/klog/v2"

// Release does nothing where the executable's mappings are not known.
func Release(klog.Logger) {}

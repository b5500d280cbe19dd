package v1alpha2

import "sort"

// Served picks, among the Istio resources of the operator's namespace, the
// one the operator serves: the oldest by creation time, then by name. The
// others are reported as not served (Kyma's rule: one resource per
// cluster). It returns nil for none and does not reorder istios.
func Served(istios []*Istio) *Istio {
	if len(istios) == 0 {
		return nil
	}
	sorted := append([]*Istio(nil), istios...)
	sort.Slice(sorted, func(i, j int) bool {
		ti, tj := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return sorted[i].Name < sorted[j].Name
	})
	return sorted[0]
}

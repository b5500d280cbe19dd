package istioclient

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is the Istio version this operator installs: the image tag of
// every component and proxy. The Helm charts are compiled in from the
// istio.io/istio module pinned in go.mod (a snapshot of the release-1.31
// branch, see the comment there); TestVersionMatchesModules keeps this
// constant and the istio.io/api and istio.io/client-go pins in step.
const Version = "1.31.1"

// Hub is the registry the images are pulled from.
const Hub = "docker.io/istio"

// SemVer is a major.minor.patch version; pre-release and build suffixes
// are kept for display and ignored in comparisons.
type SemVer struct {
	Major, Minor, Patch int
	Suffix              string
}

// ParseVersion parses "1.31.1", "v1.31.1" or "1.31.1-distroless".
func ParseVersion(s string) (SemVer, error) {
	orig := s
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	var v SemVer
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s, v.Suffix = s[:i], s[i:]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return SemVer{}, fmt.Errorf("version %q is not major.minor.patch", orig)
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return SemVer{}, fmt.Errorf("version %q is not major.minor.patch", orig)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// MustParseVersion parses a version known to be valid.
func MustParseVersion(s string) SemVer {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v SemVer) String() string {
	return fmt.Sprintf("%d.%d.%d%s", v.Major, v.Minor, v.Patch, v.Suffix)
}

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than o.
func (v SemVer) Compare(o SemVer) int {
	for _, d := range [][2]int{{v.Major, o.Major}, {v.Minor, o.Minor}, {v.Patch, o.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// UpgradeError explains why the installed version may not be changed to
// the target version.
type UpgradeError struct {
	Installed, Target SemVer
	Reason            string
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("Istio %s is installed and this operator installs %s: %s", e.Installed, e.Target, e.Reason)
}

// CheckUpgrade is the version gate: the same version, a patch upgrade or an
// upgrade by one minor version may proceed; a downgrade, a change of major
// version or a jump of more than one minor version may not, because Istio
// supports neither (its control plane and CRDs are only tested one minor
// apart).
func CheckUpgrade(installed, target SemVer) error {
	switch {
	case installed.Major != target.Major:
		return &UpgradeError{installed, target, "a change of major version is not supported"}
	case target.Compare(installed) < 0:
		return &UpgradeError{installed, target, "downgrades are not supported"}
	case target.Minor-installed.Minor > 1:
		return &UpgradeError{installed, target, "upgrades may skip no minor version; upgrade one minor version at a time"}
	}
	return nil
}

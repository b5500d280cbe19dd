package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// The SPDX 2.3 JSON document of one binary: the binary as the described
// package, statically linking the Go standard library and every module
// its build info lists. Only the fields this needs; see
// https://spdx.github.io/spdx-spec/v2.3/.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	Checksums             []spdxChecksum    `json:"checksums,omitempty"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	Comment               string            `json:"comment,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

const (
	spdxNoAssertion = "NOASSERTION"
	spdxBinaryID    = "SPDXRef-Package-istio-operator"
)

// sbomInput is what the SBOM says about one binary besides its modules.
type sbomInput struct {
	Source   Source
	Platform string // "linux/amd64"
	Binary   []byte
	Info     *debug.BuildInfo
}

// SourceURL is where the code lives: the module path as a URL (the
// org.opencontainers.image.source label).
const SourceURL = "https://github.com/meshkeeper/istio-operator"

// sbom returns the SPDX document of a binary, indented JSON. Everything in
// it derives from the binary and the source, so that it is reproducible:
// the creation time is the source epoch and the namespace (which SPDX
// requires to be unique per document) names the binary's digest.
func sbom(in sbomInput) ([]byte, error) {
	sum := sha256.Sum256(in.Binary)
	digest := hex.EncodeToString(sum[:])
	info := in.Info
	doc := spdxDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              fmt.Sprintf("istio-operator-%s-%s", in.Source.Version, strings.ReplaceAll(in.Platform, "/", "-")),
		DocumentNamespace: fmt.Sprintf("%s/spdx/istio-operator-%s-%s-sha256-%s", SourceURL, in.Source.Version, strings.ReplaceAll(in.Platform, "/", "-"), digest),
		CreationInfo: spdxCreationInfo{
			Created:  in.Source.Epoch.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: istio-operator-hack-image"},
		},
	}

	source := fmt.Sprintf("built from commit %s of %s", in.Source.Revision, SourceURL)
	if in.Source.Modified {
		source += " with uncommitted changes"
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		Name:                  "istio-operator",
		SPDXID:                spdxBinaryID,
		VersionInfo:           in.Source.Version,
		PrimaryPackagePurpose: "APPLICATION",
		DownloadLocation:      spdxNoAssertion,
		Checksums:             []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: digest}},
		SourceInfo:            source,
		Comment:               fmt.Sprintf("%s binary of Go module %s; build settings: %s -ldflags=%q", in.Platform, info.Main.Path, buildSettings(info), ldflags(in.Source)),
		ExternalRefs:          purl(info.Main.Path, ""),
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", spdxBinaryID})

	link := func(p spdxPackage) {
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{spdxBinaryID, "STATIC_LINK", p.SPDXID})
	}
	link(spdxPackage{
		Name:                  "stdlib",
		SPDXID:                "SPDXRef-Package-go-stdlib",
		VersionInfo:           info.GoVersion,
		PrimaryPackagePurpose: "LIBRARY",
		DownloadLocation:      spdxNoAssertion,
		Comment:               "the Go standard library and runtime",
		ExternalRefs:          purl("stdlib", info.GoVersion),
	})
	for _, m := range info.Deps {
		p := spdxPackage{
			Name:                  m.Path,
			SPDXID:                "SPDXRef-Package-go-module-" + spdxIDUnsafe.ReplaceAllString(m.Path, "-"),
			VersionInfo:           m.Version,
			PrimaryPackagePurpose: "LIBRARY",
			DownloadLocation:      spdxNoAssertion,
			ExternalRefs:          purl(m.Path, m.Version),
		}
		if r := m.Replace; r != nil {
			// The code compiled in is the replacement's.
			p.Comment = fmt.Sprintf("replaced by %s %s", r.Path, r.Version)
			p.VersionInfo = r.Version
			p.ExternalRefs = purl(r.Path, r.Version)
		}
		link(p)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// spdxIDUnsafe matches what an SPDX identifier may not hold (it allows
// letters, digits, "." and "-"); module paths are unique in a build, so
// the identifiers stay unique.
var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// purl is the package URL of a Go module, the identifier vulnerability
// scanners match on (https://github.com/package-url/purl-spec).
func purl(path, version string) []spdxExternalRef {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	loc := "pkg:golang/" + strings.Join(segs, "/")
	if version != "" && version != "(devel)" {
		loc += "@" + strings.ReplaceAll(url.PathEscape(version), "+", "%2B")
	}
	return []spdxExternalRef{{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: loc}}
}

func buildSettings(info *debug.BuildInfo) string {
	var parts []string
	for _, s := range info.Settings {
		parts = append(parts, s.Key+"="+s.Value)
	}
	return strings.Join(parts, " ")
}

// Package exepages releases the operator's own executable pages from its
// address space.
//
// The operator binary is about 200 MB, nearly all of it Istio's renderer and
// API definitions. Package initialisation touches most of its code and
// read-only data once (every protobuf descriptor is registered), and so does
// rendering Istio's charts; after that, a few MiB of code run. The pages
// touched once stay mapped, so they count as resident memory for the rest of
// the process's life, and the kernel keeps mapped executable pages in memory
// in preference to other page cache.
//
// Release drops these mappings, and disables huge page mappings of them, so
// that a fault maps the code it runs rather than the 2 MiB around it. Only
// read-only private mappings of the executable that no write has copied are
// released, so no content can change. The first release also lets the
// kernel drop the executable's page cache that no process maps: writing or
// unpacking a binary leaves it cached in large folios, and a fault maps a
// whole folio. Read again by faults, it comes in read-ahead sized pieces,
// and later releases leave it cached, so that code run again is mapped by a
// minor fault, without I/O.
package exepages

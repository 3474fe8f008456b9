// Package storyrouteexporter sends each trace an agent collector exports to one of several
// gateway replicas, chosen by the address of the client of the connection the trace took part
// in, so that the two halves of a story across nodes (the client's socket spans on one node,
// the server's accept and handler on another) reach the same replica's storyjoin processor. The
// replicas are a static list or the addresses of a DNS name (a headless Service), re-resolved
// periodically; a key goes to its replica by rendezvous hashing, so a replica change moves only
// the keys of the replica that came or went. See README.md.
//
// There is no `//go:generate mdatagen metadata.yaml` line: mdatagen cannot be had at the
// collector version this module pins, so internal/metadata is written by hand and held to
// metadata.yaml by its test and by component_test.go.
package storyrouteexporter // import "github.com/agenttrail/agenttrail/exporter/storyrouteexporter"

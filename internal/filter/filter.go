// Package filter decides which buckets are replicated: include and exclude
// lists of path.Match globs on the bucket name ("tenant/name" for a tenant's
// bucket). An empty include list means every bucket; exclude wins.
package filter

import (
	"fmt"
	"path"
	"strings"
)

// Buckets is a bucket filter. The zero value accepts everything.
type Buckets struct {
	include, exclude []string
}

// New checks the patterns.
func New(include, exclude []string) (*Buckets, error) {
	for _, p := range append(append([]string(nil), include...), exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("bucket filter pattern %q: %w", p, err)
		}
	}
	return &Buckets{include: include, exclude: exclude}, nil
}

// Bucket reports whether a bucket is replicated.
func (b *Buckets) Bucket(name string) bool {
	if b == nil {
		return true
	}
	for _, p := range b.exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if len(b.include) == 0 {
		return true
	}
	for _, p := range b.include {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Metadata reports whether a metadata key is replicated: bucket entry
// points ("[tenant/]name") and bucket instances ("[tenant/]name:instance")
// follow the bucket filter; other sections are always replicated.
func (b *Buckets) Metadata(section, key string) bool {
	switch section {
	case "bucket":
		return b.Bucket(key)
	case "bucket.instance":
		name, _, _ := strings.Cut(key, ":")
		return b.Bucket(name)
	}
	return true
}

// Patterns are the filter's include and exclude patterns (nil filter:
// none).
func (b *Buckets) Patterns() (include, exclude []string) {
	if b == nil {
		return nil, nil
	}
	return b.include, b.exclude
}

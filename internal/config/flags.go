package config

import (
	"flag"
	"fmt"
	"os"
)

// CommandLine is a binary's command line: -config (the YAML file) and flags
// that each override one setting of the file. Both binaries build theirs
// here, so a flag means the same on either side.
type CommandLine[T any] struct {
	fs   *flag.FlagSet
	path *string
	sets []func(*T)
}

// NewCommandLine starts the command line of binary name.
func NewCommandLine[T any](name string) *CommandLine[T] {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &CommandLine[T]{fs: fs, path: fs.String("config", "", "YAML configuration file")}
}

// Override adds -flag, whose value, when given, replaces the setting key of
// the file (field points at it).
func (c *CommandLine[T]) Override(flagName, key, usage string, field func(*T) *string) {
	v := c.fs.String(flagName, "", fmt.Sprintf("%s (overrides %s)", usage, key))
	c.sets = append(c.sets, func(cfg *T) {
		if *v != "" {
			*field(cfg) = *v
		}
	})
}

// Load parses args, loads the file -config names with load and applies the
// overriding flags given. The caller validates the result.
func (c *CommandLine[T]) Load(args []string, load func(path string) (*T, error)) (*T, error) {
	if err := c.fs.Parse(args); err != nil {
		return nil, err
	}
	cfg, err := load(*c.path)
	if err != nil {
		return nil, err
	}
	for _, set := range c.sets {
		set(cfg)
	}
	return cfg, nil
}

// DefaultID is a process's id when the configuration names none:
// "<hostname>-<pid>", unique per process on a host.
func DefaultID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

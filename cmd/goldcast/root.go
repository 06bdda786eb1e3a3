package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/store"
)

// app holds what every command shares: global flags, output streams and
// the logger. Commands get it explicitly; there is no global state.
type app struct {
	dataDir    string
	configPath string
	logLevel   string
	jsonOut    bool
	out        io.Writer
	errOut     io.Writer
	log        *slog.Logger
}

// defaultDataDir is /var/lib/goldcast for root and ./goldcast-data
// otherwise; GOLDCAST_DATA overrides both.
func defaultDataDir() string {
	if d := os.Getenv("GOLDCAST_DATA"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/goldcast"
	}
	return "goldcast-data"
}

func newRootCommand(out, errOut io.Writer) *cobra.Command {
	a := &app{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:   "goldcast",
		Short: "Capture, store, netboot and install machine images",
		Long: `goldcast captures a tuned machine (the golden client) into a file-tree
image, keeps immutable versions of it, and lays those versions onto other
machines: by rsync deltas, as a verified stream, by multicast or BitTorrent.

Commands are noun-verb: "goldcast image import", "goldcast key generate".
Every listing takes --json. The image store lives under --data.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", a.logLevel)
			}
			a.log = slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.dataDir, "data", defaultDataDir(), "data directory holding the image store and state (env GOLDCAST_DATA)")
	pf.StringVar(&a.configPath, "config", "", "cluster configuration file (default DATA/goldcast.yaml)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newImageCommand(a), newKeyCommand(a), newServerCommand(a), newCaptureCommand(a), newDeployCommand(a), newUpdateCommand(a), newOverrideCommand(a), newNodeCommand(a), newGroupCommand(a), newSysconfCommand(a), newStatusCommand(a), newEventsCommand(a), newNetbootCommand(a), newMulticastCommand(a), newTorrentCommand(a), newInstallCommand(a), newFirstBootCommand(a), newDocCommand(root))
	return root
}

// store opens the image store, which also clears staging areas left by
// interrupted imports (and logs that it did).
func (a *app) store() (*store.Store, error) {
	return store.Open(a.dataDir, a.log)
}

// existingStore opens the image store for commands that only read or
// change what is there: a mistyped --data must not quietly yield an
// empty store.
func (a *app) existingStore() (*store.Store, error) {
	if _, err := os.Stat(filepath.Join(a.dataDir, "images")); err != nil {
		return nil, fmt.Errorf("no image store at %q: import an image first, or pass --data (or set GOLDCAST_DATA)", a.dataDir)
	}
	return a.store()
}

// config loads the cluster configuration; a missing default file is an
// empty configuration, a missing explicit one an error.
func (a *app) config() (*config.Config, error) {
	path := a.configPath
	explicit := path != ""
	if !explicit {
		path = filepath.Join(a.dataDir, "goldcast.yaml")
	}
	c, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return config.Default(), nil
	}
	return c, err
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printf writes human output.
func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.out, format, args...)
}

// table prints rows with aligned columns.
func (a *app) table(header []string, rows [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c + strings.Repeat(" ", widths[i]-len(c)+2))
		}
		fmt.Fprintln(a.out, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
}

// addJSONFlag gives a listing or info command its --json flag.
func (a *app) addJSONFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON instead of a table")
}

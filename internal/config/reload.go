package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// OnHangup calls reload each time the process gets SIGHUP, until ctx
// ends, and logs what it did: a daemon's way to reload what it can without
// a restart. (Without it, SIGHUP would end the process.)
func OnHangup(ctx context.Context, log *slog.Logger, reload func() error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reload(); err != nil {
					log.Error("SIGHUP: reload failed; the settings in force are unchanged", "err", err)
				}
			}
		}
	}()
}

// CommandLine lists the flags the command line set (pflag's Changed):
// taken after the flags are parsed and before a file is applied (Apply
// sets flags too, which marks them changed), for a reload to know what
// the file may change.
func CommandLine(fs *pflag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
	return set
}

// ReloadLevel sets level from the config file's log-level (the flag's
// default when the file no longer sets one), unless the command line set
// it, which wins as at start; it reports the level in force.
func ReloadLevel(file string, fs *pflag.FlagSet, commandLine map[string]bool, level *slog.LevelVar) (slog.Level, error) {
	if file == "" || commandLine["log-level"] {
		return level.Level(), nil
	}
	entries, err := Load(file)
	if err != nil {
		return level.Level(), err
	}
	v, ok := Value(entries, "log-level")
	if !ok {
		v = fs.Lookup("log-level").DefValue
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return level.Level(), fmt.Errorf("%s: log-level %q: want debug, info, warn or error", file, v)
	}
	level.Set(l)
	return l, nil
}
